package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// backend is a real HTTP server standing in for one endpoint of a service.
type backend struct {
	*httptest.Server
	name string
	hits atomic.Int64
}

func startBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s\n", name)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) port() string { return b.URL[strings.LastIndexByte(b.URL, ':')+1:] }

// endpoints renders ServiceEntry endpoints for backends, labelled with
// version: their name.
func endpoints(bs ...*backend) string {
	var sb strings.Builder
	for _, b := range bs {
		fmt.Fprintf(&sb, "  - {address: 127.0.0.1, ports: {http: %s}, labels: {version: %s}}\n", b.port(), b.name)
	}
	return sb.String()
}

// serviceYAML is a ServiceEntry "reviews" with the backends and a
// DestinationRule with a subset per backend name.
func serviceYAML(bs ...*backend) string {
	var subsets strings.Builder
	seen := map[string]bool{}
	for _, b := range bs {
		if !seen[b.name] {
			seen[b.name] = true
			fmt.Fprintf(&subsets, "  - {name: %s, labels: {version: %s}}\n", b.name, b.name)
		}
	}
	return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
` + endpoints(bs...) + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
` + subsets.String()
}

func writeRoutes(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// startRouted starts a mixer that allows everything (cached) and an
// outbound proxy routing by the given files.
func startRouted(t *testing.T, files map[string]string, tweak func(*proxy.Config)) (*proxy.Proxy, *fakemixer.Server, string) {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		writeRoutes(t, dir, n, c)
	}
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Minute, 1<<30, fakemixer.Ref(attribute.DestinationServiceHost))
	})
	cfg := proxy.Config{
		Service: "productpage", Namespace: "shop",
		Outbound: "127.0.0.1:0",
		Admin:    "127.0.0.1:0",
		Routes:   dir,
		Mixer:    m.Addr(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return startProxy(t, cfg), m, dir
}

var keepAlive = &http.Client{
	Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64},
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// call sends one request to the proxy's outbound side with Host reviews.
func call(t testing.TB, p *proxy.Proxy, method, path string, hdr map[string]string, body string) (int, http.Header, string, time.Duration) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+p.OutboundAddr()+path, rd)
	if err != nil {
		t.Error(err)
		return 0, nil, "", 0
	}
	req.Host = "reviews:9080"
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := keepAlive.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil, "", 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), time.Since(start)
}

// parallel runs n calls over 8 workers and counts the answers by status
// and X-Backend.
func parallel(t *testing.T, n int, f func(i int) (int, http.Header)) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				code, h := f(i)
				mu.Lock()
				counts[strconv.Itoa(code)+" "+h.Get("X-Backend")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counts
}

func flags(bags []*attribute.Bag) map[string]int {
	out := map[string]int{}
	for _, b := range bags {
		v, _ := b.String(attribute.ContextProxyErrorCode)
		out[v]++
	}
	return out
}

const vsCanary = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: canary
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
`

// TestRoutesWeighted: 90/10 over 2,000 requests lands within ±3 points;
// end-user: jason always reaches v2; reports name the version.
func TestRoutesWeighted(t *testing.T) {
	v1, v2 := startBackend(t, "v1", nil), startBackend(t, "v2", nil)
	p, m, _ := startRouted(t, map[string]string{"svc.yaml": serviceYAML(v1, v2), "vs.yaml": vsCanary}, nil)
	m.DiscardReports()

	const n = 2000
	counts := parallel(t, n, func(int) (int, http.Header) {
		code, h, _, _ := call(t, p, "GET", "/reviews/1", nil, "")
		return code, h
	})
	if counts["200 v1"]+counts["200 v2"] != n {
		t.Fatalf("answers %v", counts)
	}
	if share := 100 * float64(counts["200 v2"]) / n; share < 7 || share > 13 {
		t.Errorf("v2 got %.1f%% of %d requests, want 10%% ±3", share, n)
	}
	counts = parallel(t, 200, func(int) (int, http.Header) {
		code, h, _, _ := call(t, p, "GET", "/reviews/1", map[string]string{"end-user": "jason"}, "")
		return code, h
	})
	if counts["200 v2"] != 200 {
		t.Errorf("jason's answers %v, want all from v2", counts)
	}
	if v1.hits.Load()+v2.hits.Load() != n+200 {
		t.Errorf("backends saw %d+%d requests", v1.hits.Load(), v2.hits.Load())
	}
}

func TestRoutesReportAttributes(t *testing.T) {
	v1, v2 := startBackend(t, "v1", nil), startBackend(t, "v2", nil)
	p, m, _ := startRouted(t, map[string]string{"svc.yaml": serviceYAML(v1, v2), "vs.yaml": vsCanary}, nil)
	if code, _, _, _ := call(t, p, "GET", "/r", map[string]string{"end-user": "jason"}, ""); code != 200 {
		t.Fatalf("status %d", code)
	}
	if code, _, body, _ := call(t, p, "GET", "/r", map[string]string{"host": "ratings"}, ""); code != 503 || !strings.Contains(body, "no route") {
		t.Fatalf("unknown host: %d %q", code, body)
	}
	bags := m.WaitReported(t, 2, 5*time.Second)
	b := bags[0]
	if v, _ := b.MapValue(attribute.DestinationLabels, "version"); v != "v2" {
		t.Errorf("destination.labels[version] = %q", v)
	}
	if got := str(t, b, attribute.DestinationServiceHost); got != "reviews.shop.svc.cluster.local" {
		t.Errorf("destination.service.host = %q", got)
	}
	if got := num(t, b, attribute.DestinationPort); strconv.FormatInt(got, 10) != v2.port() {
		t.Errorf("destination.port = %d, want v2's %s", got, v2.port())
	}
	if f := str(t, bags[1], attribute.ContextProxyErrorCode); f != "NR" {
		t.Errorf("unknown host flag %q", f)
	}
}

// TestRoutesExample serves examples/routes: its fault rule answers without
// any backend, flagged FI.
func TestRoutesExample(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse { return fakemixer.Allow(time.Minute, 1<<30) })
	p := startProxy(t, proxy.Config{Service: "productpage", Namespace: "shop", Outbound: "127.0.0.1:0",
		Routes: "../examples/routes", Mixer: m.Addr()})
	code, _, body, _ := call(t, p, "GET", "/ratings/1", map[string]string{"host": "ratings.shop", "x-chaos": "abort"}, "")
	if code != 503 || body != "fault filter abort\n" {
		t.Fatalf("%d %q", code, body)
	}
	if f := flags(m.WaitReported(t, 1, 5*time.Second)); f["FI"] != 1 {
		t.Errorf("flags %v", f)
	}
}

// TestRoutesFailPolicy: --check-fail-policy may name a routed service;
// with the mixer down its requests are forwarded, the others refused.
func TestRoutesFailPolicy(t *testing.T) {
	v1 := startBackend(t, "v1", nil)
	dir := t.TempDir()
	writeRoutes(t, dir, "svc.yaml", serviceYAML(v1)+`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: details}
spec:
  hosts: [details.shop.svc.cluster.local]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: `+v1.port()+`}}]
`)
	p := startProxy(t, proxy.Config{Service: "productpage", Namespace: "shop", Outbound: "127.0.0.1:0",
		Routes: dir, Mixer: deadAddr(t), CheckTimeout: 200 * time.Millisecond,
		CheckFailOpenFor: map[string]bool{"reviews": true}})
	if code, h, _, _ := call(t, p, "GET", "/r", nil, ""); code != 200 || h.Get("X-Backend") != "v1" {
		t.Errorf("reviews (fail open): %d from %q", code, h.Get("X-Backend"))
	}
	if code, _, _, _ := call(t, p, "GET", "/r", map[string]string{"host": "details"}, ""); code != 503 {
		t.Errorf("details (fail closed): %d", code)
	}
}

// TestRoutesReportRouteName: a routed request's report names its route
// (http[].name, else VIRTUALSERVICE.INDEX, else the ServiceEntry host) and
// the chosen subset's version in destination.labels.
func TestRoutesReportRouteName(t *testing.T) {
	v1, v2 := startBackend(t, "v1", nil), startBackend(t, "v2", nil)
	vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - route: [{destination: {host: reviews, subset: v1}}]
`
	p, m, _ := startRouted(t, map[string]string{"svc.yaml": serviceYAML(v1, v2), "vs.yaml": vs}, nil)
	steps := []struct {
		hdr            map[string]string
		path           string
		code           int
		route, version string
	}{
		{map[string]string{"end-user": "jason"}, "/r", 200, "jason", "v2"},
		{nil, "/r", 200, "reviews.2", "v1"},
		{nil, "/old/x", 301, "reviews.1", ""},
		{map[string]string{"host": "reviews.shop.svc.cluster.local:9080"}, "/r", 200, "reviews.2", "v1"},
	}
	for i, st := range steps {
		if code, _, _, _ := call(t, p, "GET", st.path, st.hdr, ""); code != st.code {
			t.Fatalf("step %d: status %d, want %d", i, code, st.code)
		}
		b := m.WaitReported(t, i+1, 5*time.Second)[i]
		if got := str(t, b, attribute.RouteName); got != st.route {
			t.Errorf("step %d: route.name = %q, want %q", i, got, st.route)
		}
		v, _ := b.MapValue(attribute.DestinationLabels, "version")
		if v != st.version {
			t.Errorf("step %d: destination.labels[version] = %q, want %q", i, v, st.version)
		}
	}
}

// TestRoutesPassthrough: a PASSTHROUGH cluster sends each request to the
// Host it names (its port, else the service port), whatever the endpoints.
func TestRoutesPassthrough(t *testing.T) {
	b := startBackend(t, "direct", nil)
	svc := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local}
spec:
  hosts: [localhost]
  ports: [{number: ` + b.port() + `, name: http, protocol: HTTP}]
  resolution: NONE
  endpoints: [{address: 127.0.0.1, ports: {http: 1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: local}
spec:
  host: localhost
  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
`
	p, m, _ := startRouted(t, map[string]string{"svc.yaml": svc}, nil)
	for i, host := range []string{"localhost:" + b.port(), "localhost"} {
		code, h, body, _ := call(t, p, "GET", "/pt", map[string]string{"host": host}, "")
		if code != 200 || h.Get("X-Backend") != "direct" {
			t.Errorf("Host %s: %d %q from %q, want 200 from the Host's own address", host, code, body, h.Get("X-Backend"))
		}
		bag := m.WaitReported(t, i+1, 5*time.Second)[i]
		if f := str(t, bag, attribute.ContextProxyErrorCode); f != "-" {
			t.Errorf("Host %s: flag %q", host, f)
		}
		if got := num(t, bag, attribute.DestinationPort); strconv.FormatInt(got, 10) != b.port() {
			t.Errorf("Host %s: destination.port = %d, want %s", host, got, b.port())
		}
	}
	if b.hits.Load() != 2 {
		t.Errorf("backend hits %d, want 2", b.hits.Load())
	}
}
