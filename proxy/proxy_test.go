package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// app is a real HTTP server standing in for the service beside the proxy.
type app struct {
	*httptest.Server
	hits atomic.Int32
	mu   sync.Mutex
	last *http.Request
	body string
}

func startApp(t *testing.T, name string) *app {
	t.Helper()
	a := &app{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.last = r.Clone(context.Background())
		a.body = string(b)
		a.mu.Unlock()
		w.Header().Set("X-App", name)
		if r.URL.Path == "/teapot" {
			w.WriteHeader(http.StatusTeapot)
		}
		fmt.Fprintf(w, "hello from %s\n", name)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *app) lastRequest() *http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func (a *app) hostPort() string { return strings.TrimPrefix(a.URL, "http://") }

// startProxy starts a proxy for service "reviews" in namespace "shop" and
// stops it when the test ends.
func startProxy(t *testing.T, cfg proxy.Config) *proxy.Proxy {
	t.Helper()
	if cfg.Service == "" {
		cfg.Service, cfg.Namespace = "reviews", "shop"
	}
	if cfg.Inbound == "" && cfg.App != "" {
		cfg.Inbound = "127.0.0.1:0"
	}
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = 20 * time.Millisecond
	}
	cfg.UID = "kubernetes://" + cfg.Service + "-1." + cfg.Namespace
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Bounded: against a dead mixer the flush waits it out.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

var client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}

func do(t *testing.T, method, url string, hdr map[string]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func str(t *testing.T, b *attribute.Bag, name string) string {
	t.Helper()
	s, ok := b.String(name)
	if !ok {
		t.Fatalf("%s missing in\n%s", name, b.Dump())
	}
	return s
}

func num(t *testing.T, b *attribute.Bag, name string) int64 {
	t.Helper()
	n, ok := b.Int64(name)
	if !ok {
		t.Fatalf("%s missing in\n%s", name, b.Dump())
	}
	return n
}

func TestAllowedRequestReachesApp(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		r := fakemixer.Allow(time.Minute, 100, fakemixer.Ref(attribute.RequestPath))
		r.Precondition.RouteDirective = &mixerv1.RouteDirective{
			RequestHeaderOperations:  []*mixerv1.HeaderOperation{{Name: "x-checked-by", Value: "sidemix"}, {Name: "x-drop-me", Operation: mixerv1.HeaderOperation_REMOVE}},
			ResponseHeaderOperations: []*mixerv1.HeaderOperation{{Name: "x-policy", Value: "ok", Operation: mixerv1.HeaderOperation_APPEND}},
		}
		return r
	})
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr()})

	resp, body := do(t, "GET", "http://"+p.InboundAddr()+"/hello?x=1&y=2", map[string]string{
		"X-User":                    "alice",
		"X-Drop-Me":                 "1",
		"User-Agent":                "test-agent",
		proxy.HeaderSourceWorkload:  "frontend",
		proxy.HeaderSourceNamespace: "web",
		proxy.HeaderSourcePrincipal: "cluster.local/ns/web/sa/frontend",
		"host":                      "reviews.shop",
	}, nil)
	if resp.StatusCode != 200 || body != "hello from reviews\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("X-App") != "reviews" || resp.Header.Get("X-Policy") != "ok" {
		t.Errorf("response headers %v: want X-App and X-Policy", resp.Header)
	}
	got := a.lastRequest()
	if got.Header.Get("X-User") != "alice" || got.Header.Get("X-Checked-By") != "sidemix" || got.Header.Get("X-Drop-Me") != "" {
		t.Errorf("app saw headers %v", got.Header)
	}
	for _, h := range []string{proxy.HeaderSourceWorkload, proxy.HeaderSourceNamespace, proxy.HeaderSourcePrincipal} {
		if got.Header.Get(h) != "" {
			t.Errorf("app saw %s", h)
		}
	}
	if got.Host != "reviews.shop" {
		t.Errorf("app saw Host %q", got.Host)
	}
	rid := got.Header.Get("X-Request-Id")
	if len(rid) != 36 {
		t.Errorf("x-request-id %q not generated", rid)
	}
	if got.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got.Header.Get("X-Forwarded-For"))
	}

	bags := m.WaitReported(t, 1, 5*time.Second)
	b := bags[0]
	for name, want := range map[string]string{
		attribute.ContextReporterKind:          "inbound",
		attribute.ContextProtocol:              "http",
		attribute.ContextProxyErrorCode:        "-",
		attribute.DestinationWorkloadName:      "reviews",
		attribute.DestinationWorkloadNamespace: "shop",
		attribute.DestinationServiceName:       "reviews",
		attribute.DestinationServiceHost:       "reviews.shop.svc.cluster.local",
		attribute.DestinationUID:               "kubernetes://reviews-1.shop",
		attribute.SourceWorkloadName:           "frontend",
		attribute.SourceWorkloadNamespace:      "web",
		attribute.SourcePrincipal:              "cluster.local/ns/web/sa/frontend",
		attribute.RequestPath:                  "/hello?x=1&y=2",
		attribute.RequestURLPath:               "/hello",
		attribute.RequestMethod:                "GET",
		attribute.RequestHost:                  "reviews.shop",
		attribute.RequestScheme:                "http",
		attribute.RequestUserAgent:             "test-agent",
		attribute.RequestID:                    rid,
	} {
		if got := str(t, b, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if c := num(t, b, attribute.ResponseCode); c != 200 {
		t.Errorf("response.code = %d", c)
	}
	if s := num(t, b, attribute.ResponseSize); s != int64(len(body)) {
		t.Errorf("response.size = %d, want %d", s, len(body))
	}
	if ts := num(t, b, attribute.ResponseTotalSize); ts <= int64(len(body)) {
		t.Errorf("response.total_size = %d", ts)
	}
	if ts := num(t, b, attribute.RequestTotalSize); ts <= 0 {
		t.Errorf("request.total_size = %d", ts)
	}
	if s := num(t, b, attribute.RequestSize); s != 0 {
		t.Errorf("request.size = %d", s)
	}
	if d, ok := b.Duration(attribute.ResponseDuration); !ok || d <= 0 {
		t.Errorf("response.duration = %v, %v", d, ok)
	}
	rt, _ := b.Time(attribute.RequestTime)
	st, _ := b.Time(attribute.ResponseTime)
	if rt.IsZero() || st.Before(rt) {
		t.Errorf("request.time %v, response.time %v", rt, st)
	}
	if v, _ := b.MapValue(attribute.RequestHeaders, "x-user"); v != "alice" {
		t.Errorf("request.headers[x-user] = %q", v)
	}
	if _, ok := b.MapValue(attribute.RequestHeaders, "x-sidemix-source-workload"); ok {
		t.Error("identity headers in request.headers")
	}
	if v, _ := b.MapValue(attribute.RequestQueryParams, "y"); v != "2" {
		t.Errorf("request.query_params[y] = %q", v)
	}
	if v, _ := b.MapValue(attribute.ResponseHeaders, "x-app"); v != "reviews" {
		t.Errorf("response.headers[x-app] = %q", v)
	}
	if ip, ok := b.IP(attribute.SourceIP); !ok || ip.String() != "127.0.0.1" {
		t.Errorf("source.ip = %v", ip)
	}
	_, port, _ := net.SplitHostPort(p.InboundAddr())
	if dp := num(t, b, attribute.DestinationPort); strconv.FormatInt(dp, 10) != port {
		t.Errorf("destination.port = %d, want %s", dp, port)
	}
	// The check saw the same request.
	if c := m.Checked(); len(c) != 1 || str(t, c[0], attribute.RequestPath) != "/hello?x=1&y=2" {
		t.Errorf("checked %v", c)
	}
}

func TestRequestBodyCounted(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr()})
	// A reader of unknown length makes a chunked request.
	body := io.MultiReader(strings.NewReader(strings.Repeat("a", 1000)), strings.NewReader(strings.Repeat("b", 234)))
	resp, _ := do(t, "POST", "http://"+p.InboundAddr()+"/upload", nil, body)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if n := len(a.body); n != 1234 {
		t.Fatalf("app got %d bytes", n)
	}
	b := m.WaitReported(t, 1, 5*time.Second)[0]
	if s := num(t, b, attribute.RequestSize); s != 1234 {
		t.Errorf("request.size = %d, want 1234", s)
	}
	if _, ok := m.Checked()[0].Int64(attribute.RequestSize); ok {
		t.Error("check carried a request.size it could not know")
	}
}

func TestDenied(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(b *attribute.Bag) *mixerv1.CheckResponse {
		path, _ := b.String(attribute.RequestURLPath)
		refs := fakemixer.Ref(attribute.RequestURLPath)
		switch path {
		case "/admin":
			return fakemixer.Answer(codes.PermissionDenied, "admin is closed", time.Minute, 100, refs)
		case "/login":
			return fakemixer.Answer(codes.Unauthenticated, "who are you", time.Minute, 100, refs)
		case "/broken":
			return fakemixer.Answer(codes.Internal, "adapter failed", time.Minute, 100, refs)
		case "/limited":
			return fakemixer.WithQuota(fakemixer.Allow(time.Minute, 1, refs), "requestcount", 0, 2500*time.Millisecond)
		}
		return fakemixer.Allow(time.Minute, 100, refs)
	})
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr()})
	base := "http://" + p.InboundAddr()

	cases := []struct {
		path, body, retryAfter string
		code                   int
	}{
		{"/admin", "admin is closed\n", "", 403},
		{"/admin", "admin is closed\n", "", 403}, // from the cache
		{"/login", "who are you\n", "", 401},
		{"/broken", "adapter failed\n", "", 503},
		{"/limited", "quota exhausted\n", "3", 429},
	}
	for _, c := range cases {
		resp, body := do(t, "GET", base+c.path, nil, nil)
		if resp.StatusCode != c.code || body != c.body || resp.Header.Get("Retry-After") != c.retryAfter {
			t.Errorf("%s: got %d %q Retry-After %q, want %d %q %q", c.path, resp.StatusCode, body, resp.Header.Get("Retry-After"), c.code, c.body, c.retryAfter)
		}
	}
	if n := a.hits.Load(); n != 0 {
		t.Fatalf("app saw %d denied requests", n)
	}
	if n := m.CheckCalls(); n != 4 {
		t.Errorf("mixer saw %d checks, want 4", n)
	}
	bags := m.WaitReported(t, len(cases), 5*time.Second)
	for i, c := range cases {
		if got := num(t, bags[i], attribute.ResponseCode); got != int64(c.code) {
			t.Errorf("report %d: response.code %d, want %d", i, got, c.code)
		}
		if f := str(t, bags[i], attribute.ContextProxyErrorCode); f != "UAEX" {
			t.Errorf("report %d: proxy_error_code %q", i, f)
		}
	}
	// Allowed again for another path.
	if resp, body := do(t, "GET", base+"/ok", nil, nil); resp.StatusCode != 200 || body != "hello from reviews\n" {
		t.Errorf("/ok: %d %q", resp.StatusCode, body)
	}
}

func TestDirectResponse(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		r := fakemixer.Allow(time.Minute, 100)
		r.Precondition.RouteDirective = &mixerv1.RouteDirective{DirectResponseCode: 302, DirectResponseBody: "moved",
			ResponseHeaderOperations: []*mixerv1.HeaderOperation{{Name: "Location", Value: "/elsewhere"}}}
		return r
	})
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr()})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("http://" + p.InboundAddr() + "/old")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 302 || string(b) != "moved" || resp.Header.Get("Location") != "/elsewhere" {
		t.Fatalf("got %d %q %v", resp.StatusCode, b, resp.Header)
	}
	if a.hits.Load() != 0 {
		t.Fatal("app reached")
	}
}

func TestOutboundRouting(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Minute, 100, fakemixer.Ref(attribute.DestinationServiceHost))
	})
	ratings := startApp(t, "ratings")
	details := startApp(t, "details")
	p := startProxy(t, proxy.Config{
		Service: "productpage", Namespace: "shop",
		Outbound:  "127.0.0.1:0",
		Admin:     "127.0.0.1:0",
		Upstreams: map[string]string{"ratings": ratings.hostPort(), "details.books": details.hostPort()},
		Mixer:     m.Addr(),
	})
	out := "http://" + p.OutboundAddr()

	resp, body := do(t, "GET", out+"/ratings/1", map[string]string{"host": "ratings:9080", proxy.HeaderSourceWorkload: "spoofed"}, nil)
	if resp.StatusCode != 200 || body != "hello from ratings\n" {
		t.Fatalf("ratings: %d %q", resp.StatusCode, body)
	}
	got := ratings.lastRequest()
	if got.Header.Get(proxy.HeaderSourceWorkload) != "productpage" || got.Header.Get(proxy.HeaderSourceNamespace) != "shop" ||
		got.Header.Get(proxy.HeaderSourcePrincipal) != "cluster.local/ns/shop/sa/productpage" {
		t.Errorf("callee saw identity %v", got.Header)
	}
	if got.Host != "ratings:9080" {
		t.Errorf("callee saw Host %q", got.Host)
	}
	resp, body = do(t, "GET", out+"/d", map[string]string{"host": "details.books"}, nil)
	if resp.StatusCode != 200 || body != "hello from details\n" {
		t.Fatalf("details: %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", out+"/x", map[string]string{"host": "nowhere"}, nil)
	if resp.StatusCode != 503 || !strings.Contains(body, "no route") {
		t.Fatalf("unknown upstream: %d %q", resp.StatusCode, body)
	}
	if n := m.CheckCalls(); n != 2 {
		t.Errorf("mixer saw %d checks, want 2 (no check without a route)", n)
	}

	bags := m.WaitReported(t, 3, 5*time.Second)
	want := []map[string]string{
		{attribute.DestinationServiceName: "ratings", attribute.DestinationServiceNamespace: "shop", attribute.DestinationServiceHost: "ratings.shop.svc.cluster.local", attribute.ContextProxyErrorCode: "-"},
		{attribute.DestinationServiceName: "details", attribute.DestinationServiceNamespace: "books", attribute.DestinationServiceHost: "details.books.svc.cluster.local"},
		{attribute.DestinationServiceHost: "nowhere", attribute.ContextProxyErrorCode: "NR"},
	}
	for i, w := range want {
		b := bags[i]
		w[attribute.ContextReporterKind] = "outbound"
		w[attribute.SourceWorkloadName] = "productpage"
		w[attribute.SourceWorkloadNamespace] = "shop"
		for name, v := range w {
			if got := str(t, b, name); got != v {
				t.Errorf("report %d: %s = %q, want %q", i, name, got, v)
			}
		}
	}
	if c := num(t, bags[2], attribute.ResponseCode); c != 503 {
		t.Errorf("NR report code %d", c)
	}
	_, port, _ := net.SplitHostPort(ratings.hostPort())
	if dp := num(t, bags[0], attribute.DestinationPort); strconv.FormatInt(dp, 10) != port {
		t.Errorf("destination.port %d, want %s", dp, port)
	}
	if _, ok := bags[0].MapValue(attribute.RequestHeaders, "x-sidemix-source-workload"); ok {
		t.Error("spoofed identity header reported")
	}

	metrics := scrape(t, p)
	for _, want := range []string{
		`sidemix_proxy_requests_total{code="503",direction="outbound"} 1`,
		`sidemix_proxy_requests_total{code="200",direction="outbound"} 2`,
		`sidemix_proxy_response_flags_total{direction="outbound",flag="NR"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Two proxies in a row: the callee's inbound knows the caller's identity.
func TestChainedProxies(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	ratings := startApp(t, "ratings")
	callee := startProxy(t, proxy.Config{Service: "ratings", Namespace: "shop", App: ratings.hostPort(), Mixer: m.Addr(),
		Labels: map[string]string{"version": "v2", "app": "ratings"}})
	caller := startProxy(t, proxy.Config{
		Service: "productpage", Namespace: "shop", Outbound: "127.0.0.1:0", Labels: map[string]string{"version": "v1"},
		Upstreams: map[string]string{"ratings": callee.InboundAddr()}, Mixer: m.Addr(),
	})
	resp, body := do(t, "GET", "http://"+caller.OutboundAddr()+"/r", map[string]string{"host": "ratings", "X-Request-Id": "trace-1"}, nil)
	if resp.StatusCode != 200 || body != "hello from ratings\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if h := ratings.lastRequest().Header; h.Get(proxy.HeaderSourceWorkload) != "" || h.Get(proxy.HeaderSourceLabels) != "" {
		t.Error("app saw the identity headers")
	}
	if resp.Header.Get(proxy.HeaderPeerWorkload) != "" || resp.Header.Get(proxy.HeaderPeerLabels) != "" {
		t.Error("the app saw the callee's peer headers")
	}
	bags := m.WaitReported(t, 2, 5*time.Second)
	var in, out *attribute.Bag
	for _, b := range bags {
		switch k, _ := b.String(attribute.ContextReporterKind); k {
		case "inbound":
			in = b
		case "outbound":
			out = b
		}
		if id := str(t, b, attribute.RequestID); id != "trace-1" {
			t.Errorf("request.id %q, want trace-1", id)
		}
	}
	if in == nil {
		t.Fatal("no inbound report")
	}
	if w := str(t, in, attribute.SourceWorkloadName); w != "productpage" {
		t.Errorf("inbound source.workload.name %q", w)
	}
	if pr := str(t, in, attribute.SourcePrincipal); pr != "cluster.local/ns/shop/sa/productpage" {
		t.Errorf("inbound source.principal %q", pr)
	}
	if u := str(t, in, attribute.SourceUID); u != "kubernetes://productpage-1.shop" {
		t.Errorf("inbound source.uid %q", u)
	}
	// Each side's labels: its own, and its peer's from the headers.
	for _, c := range []struct {
		side string
		b    *attribute.Bag
		name string
		want string
	}{
		{"inbound", in, attribute.DestinationLabels, "map[app:ratings version:v2]"},
		{"inbound", in, attribute.SourceLabels, "map[version:v1]"},
		{"outbound", out, attribute.SourceLabels, "map[version:v1]"},
		{"outbound", out, attribute.DestinationLabels, "map[app:ratings version:v2]"},
	} {
		if c.b == nil {
			continue
		}
		l, _ := c.b.StringMap(c.name)
		if got := fmt.Sprint(l); got != c.want {
			t.Errorf("%s %s = %s, want %s", c.side, c.name, got, c.want)
		}
	}
	// The callee's proxy named itself in its answer: the caller's report
	// knows the destination workload, not only the service.
	if out == nil {
		t.Fatal("no outbound report")
	}
	for name, want := range map[string]string{
		attribute.DestinationWorkloadName:      "ratings",
		attribute.DestinationWorkloadNamespace: "shop",
		attribute.DestinationPrincipal:         "cluster.local/ns/shop/sa/ratings",
		attribute.DestinationWorkloadUID:       "kubernetes://ratings-1.shop",
	} {
		if got, _ := out.String(name); got != want {
			t.Errorf("outbound %s = %q, want %q", name, got, want)
		}
	}
}

func TestUpstreamConnectFailure(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	p := startProxy(t, proxy.Config{App: deadAddr(t), Mixer: m.Addr()})
	resp, body := do(t, "GET", "http://"+p.InboundAddr()+"/", nil, nil)
	if resp.StatusCode != 503 || body != "upstream connect error\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	b := m.WaitReported(t, 1, 5*time.Second)[0]
	if f := str(t, b, attribute.ContextProxyErrorCode); f != "UF" {
		t.Errorf("proxy_error_code %q, want UF", f)
	}
}

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestMixerDown(t *testing.T) {
	const timeout = 300 * time.Millisecond
	t.Run("closed", func(t *testing.T) {
		a := startApp(t, "reviews")
		p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: deadAddr(t), CheckTimeout: timeout})
		start := time.Now()
		resp, body := do(t, "GET", "http://"+p.InboundAddr()+"/", nil, nil)
		if took := time.Since(start); took > timeout+500*time.Millisecond {
			t.Errorf("answer took %v, check timeout %v", took, timeout)
		}
		if resp.StatusCode != 503 || body != "mixer unavailable\n" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if a.hits.Load() != 0 {
			t.Fatal("app reached with the mixer down, fail closed")
		}
	})
	t.Run("closed-slow", func(t *testing.T) {
		m := fakemixer.Start(t, "127.0.0.1:0")
		m.SetDelay(10 * time.Second)
		a := startApp(t, "reviews")
		p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), CheckTimeout: timeout})
		start := time.Now()
		resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/", nil, nil)
		if took := time.Since(start); took > timeout+500*time.Millisecond {
			t.Errorf("answer took %v, check timeout %v", took, timeout)
		}
		if resp.StatusCode != 503 {
			t.Fatalf("%d", resp.StatusCode)
		}
	})
	t.Run("open", func(t *testing.T) {
		a := startApp(t, "reviews")
		p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: deadAddr(t), CheckTimeout: timeout, CheckFailOpen: true, Admin: "127.0.0.1:0"})
		resp, body := do(t, "GET", "http://"+p.InboundAddr()+"/", nil, nil)
		if resp.StatusCode != 200 || body != "hello from reviews\n" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if !strings.Contains(scrape(t, p), `sidemix_proxy_check_failures_total{policy="open"} 1`) {
			t.Error("fail-open not counted")
		}
	})
}

func TestShutdownFlushesReports(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p, err := proxy.New(proxy.Config{Service: "reviews", Inbound: "127.0.0.1:0", App: a.hostPort(), Mixer: m.Addr(), ReportInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get("http://" + p.InboundAddr() + "/" + strconv.Itoa(i))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if got := len(m.Reported()); got != 0 {
		t.Fatalf("%d reported before shutdown with an hour's interval", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(m.Reported()); got != n {
		t.Fatalf("%d reported at shutdown, want %d", got, n)
	}
	if _, err := client.Get("http://" + p.InboundAddr() + "/"); err == nil {
		t.Error("inbound still serving after Shutdown")
	}
}

func scrape(t *testing.T, p *proxy.Proxy) string {
	t.Helper()
	resp, body := do(t, "GET", "http://"+p.AdminAddr()+"/metrics", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return body
}

func TestAdmin(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), Admin: "127.0.0.1:0"})
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp, _ := do(t, "GET", "http://"+p.AdminAddr()+path, nil, nil); resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	do(t, "GET", "http://"+p.InboundAddr()+"/teapot", nil, nil)
	do(t, "GET", "http://"+p.InboundAddr()+"/teapot", nil, nil)
	metrics := scrape(t, p)
	for _, want := range []string{
		`sidemix_proxy_requests_total{code="418",direction="inbound"} 2`,
		`sidemix_proxy_request_duration_seconds_count{direction="inbound"} 2`,
		`sidemix_proxy_check_requests_total{result="cache_hit"} 1`,
		`sidemix_proxy_check_requests_total{result="cache_miss"} 1`,
		`sidemix_proxy_report_buffer_length`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// A disabled admin listener has no address.
func TestAdminDisabled(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr()})
	if p.AdminAddr() != "" {
		t.Fatalf("admin at %q", p.AdminAddr())
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := proxy.New(proxy.Config{Inbound: "nope", Upstreams: map[string]string{"a": "b"}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"service: required", "mixer: required", `inbound: "nope" is not host:port`, "app: required with inbound", `upstreams.a: "b" is not host:port`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// gRPC passes through (h2c on both hops); a denial reaches the gRPC client
// as its status.
func TestGRPCPassThrough(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(b *attribute.Bag) *mixerv1.CheckResponse {
		if v, _ := b.MapValue(attribute.RequestHeaders, "x-user"); v == "mallory" {
			return fakemixer.Answer(codes.PermissionDenied, "mallory may not", time.Minute, 100, fakemixer.KeyRef(attribute.RequestHeaders, "x-user", true))
		}
		return fakemixer.Allow(time.Minute, 100, fakemixer.KeyRef(attribute.RequestHeaders, "x-user", true))
	})
	// The app is a gRPC server: another fake mixer serves nicely.
	grpcApp := fakemixer.Start(t, "127.0.0.1:0")
	grpcApp.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Answer(codes.OK, "from the app", time.Second, 1)
	})
	p := startProxy(t, proxy.Config{App: grpcApp.Addr(), Mixer: m.Addr()})

	conn, err := grpc.NewClient(p.InboundAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := mixerv1.NewMixerClient(conn)
	enc := attribute.NewEncoder(attribute.DefaultDictionary())
	req := &mixerv1.CheckRequest{Attributes: enc.Encode(attribute.NewBuilder(1).SetString(attribute.RequestPath, "/x").Build()), GlobalWordCount: enc.GlobalWordCount()}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(metadataCtx(ctx, "alice"), req)
	if err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	if msg := resp.GetPrecondition().GetStatus().GetMessage(); msg != "from the app" {
		t.Fatalf("answer %q", msg)
	}
	if grpcApp.CheckCalls() != 1 {
		t.Fatal("app not reached")
	}

	_, err = c.Check(metadataCtx(ctx, "mallory"), req)
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || st.Message() != "mallory may not" {
		t.Fatalf("denied call: %v", err)
	}
	if grpcApp.CheckCalls() != 1 {
		t.Fatal("app reached by a denied call")
	}

	bags := m.WaitReported(t, 2, 5*time.Second)
	for i, want := range []string{"0", "7"} {
		b := bags[i]
		if p := str(t, b, attribute.ContextProtocol); p != "grpc" {
			t.Errorf("report %d: context.protocol %q", i, p)
		}
		if gs := str(t, b, attribute.ResponseGRPCStatus); gs != want {
			t.Errorf("report %d: response.grpc_status %q, want %q", i, gs, want)
		}
		if path := str(t, b, attribute.RequestPath); path != "/sidemix.mixer.v1.Mixer/Check" {
			t.Errorf("report %d: request.path %q", i, path)
		}
	}
	if s := num(t, bags[0], attribute.ResponseSize); s <= 0 {
		t.Errorf("response.size %d", s)
	}
}

func metadataCtx(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-user", user)
}

// A request that outlasts the shutdown deadline is cut, and the reports of
// the others are still flushed within the deadline.
func TestShutdownCutsSlowRequests(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	inSlow := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inSlow <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(w, "ok\n")
	}))
	defer slow.Close()
	p, err := proxy.New(proxy.Config{Service: "reviews", Inbound: "127.0.0.1:0", App: slow.Listener.Addr().String(), Mixer: m.Addr(), ReportInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/fast", nil, nil); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	go func() {
		resp, err := client.Get("http://" + p.InboundAddr() + "/slow")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-inSlow
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Shutdown(ctx); err == nil {
		t.Error("Shutdown reported no error with a request cut")
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("Shutdown took %v with a 1s deadline", took)
	}
	found := false
	for _, b := range m.Reported() {
		if p, _ := b.String(attribute.RequestPath); p == "/fast" {
			found = true
		}
	}
	if !found {
		t.Error("the finished request was not reported at shutdown")
	}
}

// TestHeaderNotUTF8: header values may carry bytes that are not UTF-8
// (obs-text); the request is checked, forwarded and reported all the same,
// with each invalid sequence replaced by U+FFFD in its attributes.
func TestHeaderNotUTF8(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr()})
	resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/", map[string]string{
		"User-Agent": "bot\xff/1",
		"X-Note":     "caf\xe9",
	}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
	if got := a.lastRequest().Header.Get("X-Note"); got != "caf\xe9" {
		t.Errorf("app saw X-Note %q, want the bytes as sent", got)
	}
	b := m.WaitReported(t, 1, 5*time.Second)[0]
	if got := str(t, b, attribute.RequestUserAgent); got != "bot\uFFFD/1" {
		t.Errorf("request.useragent = %q", got)
	}
	if v, _ := b.MapValue(attribute.RequestHeaders, "x-note"); v != "caf\uFFFD" {
		t.Errorf("request.headers[x-note] = %q", v)
	}
	if c := m.Checked(); len(c) != 1 || str(t, c[0], attribute.RequestUserAgent) != "bot\uFFFD/1" {
		t.Errorf("checked %v", c)
	}
}
