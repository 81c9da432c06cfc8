package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// jaegerDefaultEndpoint is the collector address of
// examples/default/jaeger.yaml.
const jaegerDefaultEndpoint = "127.0.0.1:14250"

// startTracedShop starts a real Jaeger, a mixer with examples/default whose
// jaeger handler sends there (flushing every 100ms), and the demo chain
// product → invoice → notification, every sidecar sampling every new
// trace.
func startTracedShop(t *testing.T) (*testenv.Jaeger, *shopChain) {
	t.Helper()
	j := testenv.StartJaeger(t)
	cfg := newConfig(t, nil)
	text := example(t, "default/jaeger.yaml")
	if !strings.Contains(text, "endpoint: "+jaegerDefaultEndpoint) {
		t.Fatalf("examples/default/jaeger.yaml no longer sends to %s", jaegerDefaultEndpoint)
	}
	text = strings.Replace(text, "endpoint: "+jaegerDefaultEndpoint, "endpoint: "+j.CollectorAddr, 1)
	text = strings.Replace(text, "flushInterval: 1s", "flushInterval: 100ms", 1)
	cfg.write(t, "jaeger.yaml", text)
	m := startMixer(t, cfg, "", "")
	shop := startShopChain(t, m.grpc, "--report-interval", "100ms", "--trace-sampling", "1")
	return j, shop
}

// TestDemoChainIsOneTraceInJaeger: one checkout through the demo chain,
// each service behind its sidecar and forwarding the trace headers it got,
// is one trace in Jaeger: a server span per hop and a client span per hop
// between sidecars (5 spans), each child of the span that caused it, each
// under the service name of the workload whose sidecar made it.
func TestDemoChainIsOneTraceInJaeger(t *testing.T) {
	j, shop := startTracedShop(t)

	t.Run("new trace", func(t *testing.T) {
		shop.checkout(t)
		var traces []testenv.JaegerTrace
		testenv.Eventually(t, 15*time.Second, func() (bool, string) {
			var err error
			traces, err = j.FindTraces("product", 10)
			if err != nil {
				return false, err.Error()
			}
			return len(traces) == 1 && len(traces[0].Spans) >= 5, fmt.Sprintf("%d traces of product: %s", len(traces), describe(traces))
		})
		// Spans that arrive late would show as a second trace or extra
		// spans: give them a moment.
		time.Sleep(500 * time.Millisecond)
		tr := j.WaitTrace(t, traces[0].TraceID, 5, 5*time.Second)
		checkChain(t, tr, "")
		if all, err := j.FindTraces("notification", 10); err != nil || len(all) != 1 {
			t.Errorf("traces of notification: %d (%v), want 1", len(all), err)
		}
	})

	t.Run("caller's trace", func(t *testing.T) {
		const traceID, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		r := get(t, shop.product.sidecar.url("/checkout?item=tea"), "traceparent", "00-"+traceID+"-"+caller+"-01")
		if r.code != 201 {
			t.Fatalf("checkout: %d %s", r.code, r.body)
		}
		j.WaitTrace(t, traceID, 5, 15*time.Second)
		time.Sleep(300 * time.Millisecond) // for spans that would arrive late
		tr := j.WaitTrace(t, traceID, 5, 5*time.Second)
		checkChain(t, tr, caller)
	})

	t.Run("not sampled", func(t *testing.T) {
		const traceID = "5bf92f3577b34da6a3ce929d0e0e4737"
		r := get(t, shop.product.sidecar.url("/checkout?item=tea"), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-00")
		if r.code != 201 {
			t.Fatalf("checkout: %d %s", r.code, r.body)
		}
		// A sampled trace sent after it arrives; the unsampled one must
		// not have.
		const marker = "6bf92f3577b34da6a3ce929d0e0e4738"
		get(t, shop.product.sidecar.url("/products"), "traceparent", "00-"+marker+"-00f067aa0ba902b7-01")
		j.WaitTrace(t, marker, 1, 15*time.Second)
		if tr, err := j.Trace(traceID); !testenv.IsNotFound(err) {
			t.Errorf("the unsampled trace is in Jaeger (%v): %s", err, describe([]testenv.JaegerTrace{*tr}))
		}
	})
}

// checkChain checks the 5 spans of one checkout: product's server span
// (child of caller, or the root when caller is ""), product's client span
// to invoice, invoice's server span, invoice's client span to notification
// and notification's server span, each the child of the one before.
func checkChain(t *testing.T, tr *testenv.JaegerTrace, caller string) {
	t.Helper()
	if len(tr.Spans) != 5 {
		t.Fatalf("trace %s has %d spans, want 5: %s", tr.TraceID, len(tr.Spans), describe([]testenv.JaegerTrace{*tr}))
	}
	want := []struct{ service, kind, op string }{
		{"product", "server", "GET /checkout"},
		{"product", "client", "POST /invoices"},
		{"invoice", "server", "POST /invoices"},
		{"invoice", "client", "POST /notify"},
		{"notification", "server", "POST /notify"},
	}
	spans := slices.Clone(tr.Spans)
	parent := caller
	for i, w := range want {
		k := slices.IndexFunc(spans, func(s testenv.JaegerSpan) bool { return s.Parent() == parent })
		if k < 0 {
			t.Fatalf("hop %d (%s %s): no span whose parent is %q: %s", i, w.service, w.kind, parent, describe([]testenv.JaegerTrace{*tr}))
		}
		s := spans[k]
		spans = slices.Delete(spans, k, k+1)
		if got := tr.Service(s); got != w.service {
			t.Errorf("hop %d: service %q, want %q", i, got, w.service)
		}
		if got := s.Tag("span.kind"); got != w.kind {
			t.Errorf("hop %d (%s): span.kind %v, want %s", i, w.service, got, w.kind)
		}
		if s.OperationName != w.op {
			t.Errorf("hop %d (%s %s): operation %q, want %q", i, w.service, w.kind, s.OperationName, w.op)
		}
		if s.TraceID != tr.TraceID {
			t.Errorf("hop %d: span of trace %s in trace %s", i, s.TraceID, tr.TraceID)
		}
		parent = s.SpanID
	}
	// Timing: each span lies within its parent.
	byID := map[string]testenv.JaegerSpan{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
	}
	for _, s := range tr.Spans {
		p, ok := byID[s.Parent()]
		if !ok {
			continue
		}
		// The sidecars share this machine's clock; allow 1ms of rounding.
		if s.StartTime+1000 < p.StartTime || s.StartTime+s.Duration > p.StartTime+p.Duration+1000 {
			t.Errorf("span %s (%s) [%d +%d] is not within its parent %s (%s) [%d +%d]",
				s.SpanID, tr.Service(s), s.StartTime, s.Duration, p.SpanID, tr.Service(p), p.StartTime, p.Duration)
		}
	}
}

// describe lists traces' spans for failure messages.
func describe(traces []testenv.JaegerTrace) string {
	var b strings.Builder
	for _, tr := range traces {
		fmt.Fprintf(&b, "\ntrace %s:", tr.TraceID)
		for _, s := range tr.Spans {
			fmt.Fprintf(&b, "\n  %s parent=%s %s %v %q", s.SpanID, s.Parent(), tr.Service(s), s.Tag("span.kind"), s.OperationName)
		}
	}
	return b.String()
}

// TestUnreachableJaegerIsHarmless: with examples/default's jaeger handler
// pointing where no collector listens, requests go through, the spans wait
// in the handler's buffer (retried, visible as sidemix_jaeger_queue_spans),
// the mixer logs no more than one warning about it, and SIGTERM stops it at
// once instead of waiting for the collector.
func TestUnreachableJaegerIsHarmless(t *testing.T) {
	cfg := newConfig(t, nil)
	nowhere := testenv.FreeAddr(t)
	text := strings.Replace(example(t, "default/jaeger.yaml"), "endpoint: "+jaegerDefaultEndpoint, "endpoint: "+nowhere, 1)
	cfg.write(t, "jaeger.yaml", strings.Replace(text, "flushInterval: 1s", "flushInterval: 50ms", 1))
	m := startMixer(t, cfg, "", "")
	a := newApp(t)
	px := startProxy(t, m.grpc, a.addr(), "--report-interval", "50ms", "--trace-sampling", "1")
	sent := 0
	send := func() {
		if r := get(t, px.url("/")); r.code != 200 {
			t.Fatalf("GET /: %d %s", r.code, r.body)
		}
		sent++
	}
	for range 50 {
		send()
	}
	// The batch being retried is out of the buffer; the newer spans wait.
	// Requests keep coming, so that some arrive after the handler took
	// whatever was buffered when its flush timer fired.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		send()
		text, err := scrape(m.admin)
		if err != nil {
			return false, err.Error()
		}
		q := sample(text, "sidemix_jaeger_queue_spans", map[string]string{"handler": "jaeger"})
		return q > 0 && q < float64(sent), fmt.Sprintf("sidemix_jaeger_queue_spans = %v, want some of the %d spans, the rest being retried", q, sent)
	})
	start := time.Now()
	if err := m.Stop(10 * time.Second); err != nil {
		t.Errorf("mixer: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the mixer took %v to stop with Jaeger unreachable", took)
	}
	if w := strings.Count(m.Output(), "sending spans failed"); w > 1 {
		t.Errorf("%d warnings about the unreachable collector, want at most 1:\n%s", w, m.Output())
	}
}
