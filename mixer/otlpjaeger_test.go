package mixer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/sidemix/sidemix/adapters/jaeger"
	"github.com/sidemix/sidemix/internal/testenv"
)

// TestOTLPForwardToJaeger: an app's OTLP export, sent to the mixer over
// OTLP/gRPC, goes through a rule with an otlp instance to a jaeger handler
// with protocol otlp, which sends the resources as they came to a real
// Jaeger's OTLP endpoint; the trace read back from Jaeger's query API has
// every span, its parent links and the app's own service names, and
// nothing of the resource the rule leaves out.
func TestOTLPForwardToJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	cfg := fmt.Sprintf(`
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: jaeger}
spec:
  adapter: jaeger
  params:
    endpoint: %s
    protocol: otlp
    flushInterval: 20ms
    processTags: {mesh: demo}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: appspans}
spec: {template: otlp, params: {signal: traces}}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: shop-traces}
spec:
  match: context.protocol == "otlp" && source.workload.namespace == "shop"
  actions:
  - {handler: jaeger, instances: [appspans]}
`, j.OTLPGRPCAddr)
	dir := writeConfig(t, map[string]string{"jaeger.yaml": cfg})
	e := start(t, dir, Config{OTLPGRPCAddr: "127.0.0.1:0", Adapters: testRegistry(t, jaeger.Factory())})

	// checkout's server span calls payments, whose server span queries
	// the ledger; a resource of namespace other is in the same export.
	trace := pcommon.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	td := ptrace.NewTraces()
	type sp struct {
		id, parent byte
		name       string
		kind       ptrace.SpanKind
	}
	add := func(service, namespace string, spans ...sp) {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", service)
		rs.Resource().Attributes().PutStr("service.namespace", namespace)
		ss := rs.ScopeSpans().AppendEmpty().Spans()
		start := time.Now().Add(-time.Second)
		for _, s := range spans {
			x := ss.AppendEmpty()
			x.SetTraceID(trace)
			x.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, s.id})
			if s.parent != 0 {
				x.SetParentSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, s.parent})
			}
			x.SetName(s.name)
			x.SetKind(s.kind)
			x.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
			x.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(10 * time.Millisecond)))
		}
	}
	add("checkout", "shop",
		sp{1, 0, "POST /checkout", ptrace.SpanKindServer},
		sp{2, 1, "POST /pay", ptrace.SpanKindClient})
	add("payments", "shop",
		sp{3, 2, "POST /pay", ptrace.SpanKindServer},
		sp{4, 3, "INSERT ledger", ptrace.SpanKindClient})
	add("crawler", "other", sp{9, 1, "GET /", ptrace.SpanKindClient})

	conn := otlpConn(t, e.srv.OTLPGRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	if err != nil || resp.PartialSuccess().RejectedSpans() != 0 {
		t.Fatalf("export: %v (rejected %d)", err, resp.PartialSuccess().RejectedSpans())
	}

	tr := j.WaitTrace(t, trace.String(), 4, 15*time.Second)
	want := map[string]struct{ parent, service, name string }{
		"0000000000000001": {"", "checkout", "POST /checkout"},
		"0000000000000002": {"0000000000000001", "checkout", "POST /pay"},
		"0000000000000003": {"0000000000000002", "payments", "POST /pay"},
		"0000000000000004": {"0000000000000003", "payments", "INSERT ledger"},
	}
	if len(tr.Spans) != len(want) {
		t.Errorf("trace has %d spans, want %d (the crawler's is not forwarded)", len(tr.Spans), len(want))
	}
	for _, s := range tr.Spans {
		w, ok := want[s.SpanID]
		if !ok {
			t.Errorf("unexpected span %s (%s)", s.SpanID, tr.Service(s))
			continue
		}
		if s.Parent() != w.parent || tr.Service(s) != w.service || s.OperationName != w.name {
			t.Errorf("span %s: parent %q service %q operation %q, want %+v", s.SpanID, s.Parent(), tr.Service(s), s.OperationName, w)
		}
	}
	for _, p := range tr.Processes {
		for _, kv := range p.Tags {
			if kv.Key == "mesh" {
				t.Errorf("process %s has processTags' mesh: a raw resource keeps the app's own attributes", p.ServiceName)
			}
		}
	}
	eventually(t, 5*time.Second, "4 spans counted sent", func() bool {
		return metric(t, e.srv.Registry(), "sidemix_jaeger_spans_sent_total", "handler", "jaeger") == 4
	})
	if got := metric(t, e.srv.Registry(), "sidemix_jaeger_queue_spans", "handler", "jaeger"); got != 0 {
		t.Errorf("queue_spans = %v after the send, want 0", got)
	}
}
