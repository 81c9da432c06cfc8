package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// spanOf is the request.trace.* of a report.
type spanOf struct {
	trace, id, parent, state string
	sampled, hasParent       bool
}

func reportedSpan(t *testing.T, b *attribute.Bag) spanOf {
	t.Helper()
	var s spanOf
	s.trace = str(t, b, attribute.RequestTraceID)
	s.id = str(t, b, attribute.RequestSpanID)
	s.parent, s.hasParent = b.String(attribute.RequestParentSpanID)
	s.state, _ = b.String(attribute.RequestTraceState)
	var ok bool
	if s.sampled, ok = b.Bool(attribute.RequestTraceSampled); !ok {
		t.Fatalf("request.trace.sampled missing in\n%s", b.Dump())
	}
	if len(s.trace) != 32 || len(s.id) != 16 || (s.hasParent && len(s.parent) != 16) {
		t.Fatalf("span ids %+v", s)
	}
	return s
}

// traceparentOf splits a traceparent the app saw.
func traceparentOf(t *testing.T, h http.Header) (trace, span, flags string) {
	t.Helper()
	parts := strings.Split(h.Get("Traceparent"), "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("traceparent %q", h.Get("Traceparent"))
	}
	return parts[1], parts[2], parts[3]
}

func TestTraceW3CRoundTrip(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), Admin: "127.0.0.1:0"})
	resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/r", map[string]string{
		"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01",
		"tracestate":  "congo=t61rcWkgMzE",
	}, nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	got := a.lastRequest().Header
	trace, span, flags := traceparentOf(t, got)
	if trace != callerTrace || span == callerSpan || flags != "01" || got.Get("Tracestate") != "congo=t61rcWkgMzE" {
		t.Errorf("app saw traceparent %q tracestate %q", got.Get("Traceparent"), got.Get("Tracestate"))
	}
	if got.Get("X-B3-TraceId") != callerTrace || got.Get("X-B3-SpanId") != span ||
		got.Get("X-B3-ParentSpanId") != callerSpan || got.Get("X-B3-Sampled") != "1" {
		t.Errorf("app saw B3 %v", got)
	}
	sp := reportedSpan(t, m.WaitReported(t, 1, 5*time.Second)[0])
	want := spanOf{trace: callerTrace, id: span, parent: callerSpan, hasParent: true, sampled: true, state: "congo=t61rcWkgMzE"}
	if sp != want {
		t.Errorf("reported %+v, want %+v", sp, want)
	}
	if !strings.Contains(scrape(t, p), `sidemix_proxy_traces_total{direction="inbound",origin="continued"} 1`) {
		t.Error("continued trace not counted")
	}
}

func TestTraceB3RoundTrip(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), TraceSampling: 1})
	for i, h := range []map[string]string{
		{"X-B3-TraceId": callerTrace, "X-B3-SpanId": callerSpan, "X-B3-Sampled": "0"},
		{"b3": callerTrace + "-" + callerSpan + "-0"},
	} {
		if resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/r", h, nil); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		got := a.lastRequest().Header
		trace, span, flags := traceparentOf(t, got)
		// Not sampled by the caller: the ratio of 1 for new traces does
		// not override the caller's decision.
		if trace != callerTrace || flags != "00" || got.Get("X-B3-Sampled") != "0" || got.Get("X-B3-ParentSpanId") != callerSpan ||
			got.Get("B3") != "" {
			t.Errorf("%d: app saw %v", i, got)
		}
		sp := reportedSpan(t, m.WaitReported(t, i+1, 5*time.Second)[i])
		if sp.trace != callerTrace || sp.id != span || sp.parent != callerSpan || sp.sampled {
			t.Errorf("%d: reported %+v", i, sp)
		}
	}
}

func TestTraceMalformedStartsNewTrace(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), Admin: "127.0.0.1:0", TraceSampling: 1})
	resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/r", map[string]string{
		"traceparent":  "00-" + callerTrace + "-0000000000000000-01",
		"X-B3-TraceId": "not-hex",
		"X-Request-Id": "req-1",
	}, nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	got := a.lastRequest().Header
	trace, span, flags := traceparentOf(t, got)
	if trace == callerTrace || flags != "01" || got.Get("X-B3-ParentSpanId") != "" || got.Get("X-Request-Id") != "req-1" {
		t.Errorf("app saw %v", got)
	}
	b := m.WaitReported(t, 1, 5*time.Second)[0]
	sp := reportedSpan(t, b)
	if sp.trace != trace || sp.id != span || sp.hasParent || !sp.sampled {
		t.Errorf("reported %+v", sp)
	}
	// The report keeps what the caller sent.
	if v, _ := b.MapValue(attribute.RequestHeaders, "x-b3-traceid"); v != "not-hex" {
		t.Errorf("request.headers[x-b3-traceid] = %q", v)
	}
	metrics := scrape(t, p)
	for _, want := range []string{
		`sidemix_proxy_trace_headers_malformed_total{direction="inbound",header="traceparent"} 1`,
		`sidemix_proxy_trace_headers_malformed_total{direction="inbound",header="x-b3"} 1`,
		`sidemix_proxy_traces_total{direction="inbound",origin="started"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestTraceSamplingRatio: new traces follow the ratio, continued ones
// their caller's flag.
func TestTraceSamplingRatio(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), TraceSampling: 0})
	do(t, "GET", "http://"+p.InboundAddr()+"/new", nil, nil)
	do(t, "GET", "http://"+p.InboundAddr()+"/continued", map[string]string{"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01"}, nil)
	do(t, "GET", "http://"+p.InboundAddr()+"/deferred", map[string]string{"b3": callerTrace + "-" + callerSpan}, nil)
	bags := m.WaitReported(t, 3, 5*time.Second)
	for i, want := range []bool{false, true, false} {
		if sp := reportedSpan(t, bags[i]); sp.sampled != want {
			t.Errorf("%s: sampled %v, want %v", str(t, bags[i], attribute.RequestURLPath), sp.sampled, want)
		}
	}
}

func TestTraceHeaderTooLarge(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), Admin: "127.0.0.1:0", MaxRequestHeaderBytes: 8 << 10})
	huge := "00-" + callerTrace + "-" + callerSpan + "-01-" + strings.Repeat("x", 600)
	cases := []struct {
		name string
		h    map[string]string
		body string
	}{
		{"traceparent", map[string]string{"traceparent": huge, "X-User": "alice"}, "trace header traceparent too large\n"},
		{"tracestate", map[string]string{"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01", "tracestate": strings.Repeat("k=v,", 2100)},
			"trace header tracestate too large\n"},
		{"b3", map[string]string{"b3": strings.Repeat("1", 513)}, "trace header b3 too large\n"},
		// Over the total, within net/http's slack: the handler refuses.
		{"total", map[string]string{"X-Big": strings.Repeat("b", 9<<10)}, "request headers too large\n"},
	}
	for _, c := range cases {
		resp, body := do(t, "GET", "http://"+p.InboundAddr()+"/r", c.h, nil)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || body != c.body {
			t.Errorf("%s: %d %q", c.name, resp.StatusCode, body)
		}
	}
	// Far over: net/http refuses before the handler, with 431 too.
	resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/r", map[string]string{"X-Big": strings.Repeat("b", 64<<10)}, nil)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("far over: %d", resp.StatusCode)
	}
	if n := a.hits.Load(); n != 0 {
		t.Fatalf("app saw %d refused requests", n)
	}
	if n := m.CheckCalls(); n != 0 {
		t.Errorf("mixer saw %d checks", n)
	}
	// Reported without the headers that were too large and without a span.
	bags := m.WaitReported(t, len(cases), 5*time.Second)
	for i, b := range bags {
		if c := num(t, b, attribute.ResponseCode); c != 431 {
			t.Errorf("%s: response.code %d", cases[i].name, c)
		}
		if _, ok := b.String(attribute.RequestTraceID); ok {
			t.Errorf("%s: refused request has a span", cases[i].name)
		}
		hs, _ := b.StringMap(attribute.RequestHeaders)
		for k, v := range hs {
			if len(v) > 512 || k == "traceparent" || k == "tracestate" || k == "b3" {
				t.Errorf("%s: request.headers[%s] reported (%d bytes)", cases[i].name, k, len(v))
			}
		}
	}
	if v, _ := bags[0].MapValue(attribute.RequestHeaders, "x-user"); v != "alice" {
		t.Errorf("other headers dropped: %v", bags[0].Dump())
	}
	metrics := scrape(t, p)
	for _, want := range []string{
		`sidemix_proxy_headers_too_large_total{direction="inbound",header="traceparent"} 1`,
		`sidemix_proxy_headers_too_large_total{direction="inbound",header="total"} 1`,
		`sidemix_proxy_requests_total{code="431",direction="inbound"} 4`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// forwardingApp calls invoice through its proxy's outbound listener,
// forwarding the given trace headers of the request it got.
func forwardingApp(t *testing.T, outbound func() string, forward ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest("GET", "http://"+outbound()+"/invoices", nil)
		req.Host = "invoice"
		for _, h := range forward {
			if v := r.Header.Get(h); v != "" {
				req.Header.Set(h, v)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "product got %q", b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestTraceParentLinks: client → product's proxy → product → product's
// proxy (outbound) → invoice's proxy → invoice. The server span of
// product is the parent of its client span, which is the parent of
// invoice's server span, whether the app forwards W3C or B3 headers; an
// app that forwards nothing breaks the trace in two.
func TestTraceParentLinks(t *testing.T) {
	for _, c := range []struct {
		name    string
		forward []string
	}{
		{"w3c", []string{"Traceparent", "Tracestate"}},
		{"b3", []string{"X-B3-TraceId", "X-B3-SpanId", "X-B3-ParentSpanId", "X-B3-Sampled", "X-B3-Flags"}},
		{"none", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := fakemixer.Start(t, "127.0.0.1:0")
			invoiceApp := startApp(t, "invoice")
			invoice := startProxy(t, proxy.Config{Service: "invoice", Namespace: "shop", App: invoiceApp.hostPort(),
				Mixer: m.Addr(), TraceSampling: 1})
			var product *proxy.Proxy
			productApp := forwardingApp(t, func() string { return product.OutboundAddr() }, c.forward...)
			product = startProxy(t, proxy.Config{Service: "product", Namespace: "shop",
				App: strings.TrimPrefix(productApp.URL, "http://"), Outbound: "127.0.0.1:0",
				Upstreams: map[string]string{"invoice": invoice.InboundAddr()}, Mixer: m.Addr(), TraceSampling: 1})

			resp, body := do(t, "GET", "http://"+product.InboundAddr()+"/buy", map[string]string{
				"traceparent": "00-" + callerTrace + "-" + callerSpan + "-01", "tracestate": "k=v"}, nil)
			if resp.StatusCode != 200 || !strings.Contains(body, "hello from invoice") {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			spans := map[string]spanOf{}
			for _, b := range m.WaitReported(t, 3, 5*time.Second) {
				key := str(t, b, attribute.ContextReporterKind) + " " + str(t, b, attribute.ContextReporterUID)
				spans[key] = reportedSpan(t, b)
			}
			server := spans["inbound kubernetes://product-1.shop"]
			client := spans["outbound kubernetes://product-1.shop"]
			callee := spans["inbound kubernetes://invoice-1.shop"]
			if len(spans) != 3 || server.id == "" || client.id == "" || callee.id == "" {
				t.Fatalf("spans %+v", spans)
			}
			if server.trace != callerTrace || server.parent != callerSpan || server.state != "k=v" {
				t.Errorf("product server span %+v", server)
			}
			if callee.trace != client.trace || callee.parent != client.id || !callee.sampled {
				t.Errorf("invoice server span %+v is not the child of product's client span %+v", callee, client)
			}
			if c.forward == nil {
				if client.trace == callerTrace || client.hasParent {
					t.Errorf("client span %+v continued a trace the app did not forward", client)
				}
				return
			}
			if client.trace != callerTrace || client.parent != server.id || !client.sampled {
				t.Errorf("product client span %+v is not the child of its server span %+v", client, server)
			}
			if c.name == "w3c" && (client.state != "k=v" || callee.state != "k=v") {
				t.Errorf("tracestate lost: %q %q", client.state, callee.state)
			}
			// Every span is distinct.
			if server.id == client.id || client.id == callee.id {
				t.Errorf("span ids repeat: %+v", spans)
			}
		})
	}
}
