package jaeger

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/testenv"
)

// These tests send to a real Jaeger v2 (testenv.StartJaeger) and read the
// trace back from its query API.

func TestRealJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	for _, tc := range []struct {
		protocol, endpoint, trace string
	}{
		{ProtocolGRPC, j.CollectorAddr, "0af7651916cd43dd8448eb211c80319c"},
		{ProtocolOTLP, j.OTLPGRPCAddr, "0af7651916cd43dd8448eb211c80319d"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nprotocol: %s\nflushInterval: 50ms\nprocessTags: {mesh: demo}", tc.endpoint, tc.protocol))
			// product → invoice: the product proxy's client span, then
			// invoice's server span, its client span to notification and
			// notification's server span.
			spans := []*template.TraceSpan{
				span(tc.trace, "1000000000000001", "", template.SpanKindServer, "loadgen", "product"),
				span(tc.trace, "1000000000000002", "1000000000000001", template.SpanKindClient, "product", "invoice"),
				span(tc.trace, "1000000000000003", "1000000000000002", template.SpanKindServer, "product", "invoice"),
				span(tc.trace, "1000000000000004", "1000000000000003", template.SpanKindClient, "invoice", "notification"),
				span(tc.trace, "1000000000000005", "1000000000000004", template.SpanKindServer, "invoice", "notification"),
			}
			spans[4].Status = template.SpanStatusError
			spans[4].HTTPStatusCode = 503
			if err := h.Report(context.Background(), insts(spans...)); err != nil {
				t.Fatal(err)
			}
			tr := j.WaitTrace(t, tc.trace, len(spans), 10*time.Second)
			if len(tr.Spans) != len(spans) {
				t.Fatalf("trace has %d spans, want %d", len(tr.Spans), len(spans))
			}
			want := map[string]struct{ parent, service, kind string }{}
			for _, s := range spans {
				want[s.SpanID] = struct{ parent, service, kind string }{s.ParentSpanID, s.ServiceName(), s.SpanKind}
			}
			for _, s := range tr.Spans {
				w, ok := want[s.SpanID]
				if !ok {
					t.Errorf("unexpected span %s", s.SpanID)
					continue
				}
				if s.Parent() != w.parent || tr.Service(s) != w.service || s.Tag("span.kind") != w.kind {
					t.Errorf("span %s: parent %q service %q kind %v, want %+v", s.SpanID, s.Parent(), tr.Service(s), s.Tag("span.kind"), w)
				}
				if s.OperationName != "GET /invoice" || s.Duration != 1500 {
					t.Errorf("span %s: operation %q duration %dµs", s.SpanID, s.OperationName, s.Duration)
				}
			}
			last := tr.Spans[slices.IndexFunc(tr.Spans, func(s testenv.JaegerSpan) bool { return s.SpanID == "1000000000000005" })]
			if last.Tag("error") != true {
				t.Errorf("error span lacks error=true: %v", last.Tags)
			}
			for _, p := range tr.Processes {
				if !slices.ContainsFunc(p.Tags, func(kv testenv.JaegerKeyValue) bool { return kv.Key == "mesh" && kv.Value == "demo" }) {
					t.Errorf("process %s lacks the process tag: %v", p.ServiceName, p.Tags)
				}
			}
			services, err := j.Services()
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"product", "invoice", "notification"} {
				if !slices.Contains(services, s) {
					t.Errorf("/api/services = %v, lacks %s", services, s)
				}
			}
			if got := h.metric("sidemix_jaeger_spans_sent_total"); got != 5 {
				t.Errorf("sent = %v, want 5", got)
			}
		})
	}
}
