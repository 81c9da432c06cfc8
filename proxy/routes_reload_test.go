package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRoutesHotReload: a new endpoint takes effect without dropping the
// request in flight; an invalid change leaves the old routes serving.
func TestRoutesHotReload(t *testing.T) {
	release := make(chan struct{})
	v1 := startBackend(t, "v1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "v1\n")
	})
	v2 := startBackend(t, "v2", nil)
	p, _, dir := startRouted(t, map[string]string{"svc.yaml": serviceYAML(v1)}, nil)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, _, body, _ := call(t, p, "GET", "/slow", nil, "")
		if code != 200 || body != "v1\n" {
			t.Errorf("in-flight request across the reload: %d %q", code, body)
		}
	}()
	for v1.hits.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}

	// v2 joins; then only v2 should get traffic from a VirtualService.
	writeRoutes(t, dir, "svc.yaml", serviceYAML(v1, v2))
	writeRoutes(t, dir, "vs.yaml", `apiVersion: networking.sidemix.dev/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
`)
	waitBackend(t, p, "v2")
	close(release)
	wg.Wait()

	// An invalid change (unknown subset) is refused: v2 keeps serving.
	writeRoutes(t, dir, "vs.yaml", `apiVersion: networking.sidemix.dev/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v9}}]
`)
	time.Sleep(600 * time.Millisecond) // longer than the watch's debounce
	for i := range 20 {
		if code, h, _, _ := call(t, p, "GET", "/r", nil, ""); code != 200 || h.Get("X-Backend") != "v2" {
			t.Fatalf("request %d after an invalid change: %d from %q", i, code, h.Get("X-Backend"))
		}
	}
	// Removing the VirtualService goes back to the default route over both.
	writeRoutes(t, dir, "vs.yaml", "")
	waitBackend(t, p, "v1")
}

func waitBackend(t *testing.T, p interface{ OutboundAddr() string }, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+p.OutboundAddr()+"/r", nil)
		req.Host = "reviews"
		resp, err := keepAlive.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Header.Get("X-Backend") == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered after the reload", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRoutesRewriteRedirectHeadersMirror covers the per-route request
// changes.
func TestRoutesRewriteRedirectHeadersMirror(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	var bodies []string
	record := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Clone(r.Context()))
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.Header().Set("X-Drop", "1")
		io.WriteString(w, "ok\n")
	}
	v1 := startBackend(t, "v1", record)
	v2 := startBackend(t, "v2", record)
	p, _, _ := startRouted(t, map[string]string{
		"svc.yaml": serviceYAML(v1, v2),
		"vs.yaml": `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 308}
  - match: [{uri: {prefix: /api/v1/}}]
    rewrite: {uri: /v1/, authority: reviews.internal}
    headers:
      request: {set: {x-route: api}, add: {x-multi: a}, remove: [x-secret]}
      response: {set: {x-served-by: sidemix}, remove: [x-drop]}
    route:
    - destination: {host: reviews, subset: v1}
      headers: {request: {set: {x-subset: v1}}}
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 100}
`,
	}, nil)
	code, h, _, _ := call(t, p, "GET", "/old/page?q=1", nil, "")
	if code != 308 || h.Get("Location") != "http://reviews:9080/new?q=1" {
		t.Errorf("redirect: %d to %q", code, h.Get("Location"))
	}
	code, h, body, _ := call(t, p, "POST", "/api/v1/items?id=7", map[string]string{"x-secret": "s", "x-multi": "z"}, "payload")
	if code != 200 || body != "ok\n" || h.Get("X-Served-By") != "sidemix" || h.Get("X-Drop") != "" {
		t.Fatalf("rewritten: %d %q headers %v", code, body, h)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror never arrived (%d requests seen)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var primary, shadow *http.Request
	var shadowBody string
	for i, r := range seen {
		if strings.HasSuffix(strings.Split(r.Host, ":")[0], "-shadow") {
			shadow, shadowBody = r, bodies[i]
		} else {
			primary = r
		}
	}
	if primary == nil || shadow == nil {
		t.Fatalf("requests seen: %d primary %v shadow %v", len(seen), primary != nil, shadow != nil)
	}
	if primary.URL.Path != "/v1/items" || primary.URL.RawQuery != "id=7" || primary.Host != "reviews.internal" ||
		primary.Header.Get("X-Route") != "api" || primary.Header.Get("X-Subset") != "v1" ||
		primary.Header.Get("X-Secret") != "" || strings.Join(primary.Header.Values("X-Multi"), ",") != "z,a" {
		t.Errorf("primary saw %s %s Host %s headers %v", primary.Method, primary.URL, primary.Host, primary.Header)
	}
	if shadow.Host != "reviews-shadow:9080" || shadow.URL.Path != "/v1/items" || shadowBody != "payload" || shadow.Method != "POST" {
		t.Errorf("shadow saw %s %s Host %s body %q", shadow.Method, shadow.URL, shadow.Host, shadowBody)
	}
	if v2.hits.Load() != 1 || v1.hits.Load() != 1 {
		t.Errorf("v1 %d, v2 %d hits", v1.hits.Load(), v2.hits.Load())
	}
}
