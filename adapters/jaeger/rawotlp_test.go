package jaeger

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/testenv"
)

// resource is an otlp instance as the mixer's OTLP ingest builds one: one
// resource of service with a span per id (each the child of the one
// before, the first of parent), its Release counted in released.
func resource(t testing.TB, trace pcommon.TraceID, service string, parent byte, ids []byte, released *atomic.Int32) *template.OTLP {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	start := time.Now().Add(-time.Second)
	for _, id := range ids {
		s := ss.AppendEmpty()
		s.SetTraceID(trace)
		s.SetSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, id})
		if parent != 0 {
			s.SetParentSpanID(pcommon.SpanID{0, 0, 0, 0, 0, 0, 0, parent})
		}
		parent = id
		s.SetName(fmt.Sprintf("op%d", id))
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Millisecond)))
	}
	// A TracesData of one resource is that resource's field 1 entry.
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	in := &template.OTLP{Name: "appspans", Signal: template.SignalTraces, Data: b, Items: len(ids), ServiceName: service}
	if released != nil {
		in.Release = func() { released.Add(1) }
	}
	return in
}

func rawInsts(ins ...*template.OTLP) []template.Instance {
	out := make([]template.Instance, len(ins))
	for i, in := range ins {
		out[i] = in
	}
	return out
}

// TestRawOTLPRealJaeger: otlp instances reach a real Jaeger as sent,
// batched by maxBatchSize spans, each released exactly once.
func TestRawOTLPRealJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nprotocol: otlp\nmaxBatchSize: 3\nflushInterval: 20ms\nprocessTags: {mesh: demo}", j.OTLPGRPCAddr))
	trace := pcommon.TraceID{0x5b, 0x8e, 0xfd, 0xf5, 0x4e, 0x6a, 0x4d, 0x1b, 0x9e, 0x21, 0x7c, 0x60, 0x3b, 0x0d, 0x11, 0x01}
	var released [3]atomic.Int32
	ins := []*template.OTLP{
		resource(t, trace, "checkout", 0, []byte{1, 2}, &released[0]),
		resource(t, trace, "payments", 2, []byte{3, 4}, &released[1]), // 2+2 is over 3: a batch of its own
		resource(t, trace, "ledger", 4, []byte{5}, &released[2]),
	}
	if err := h.Report(context.Background(), rawInsts(ins[:2]...)); err != nil {
		t.Fatal(err)
	}
	if err := h.Report(context.Background(), rawInsts(ins[2])); err != nil {
		t.Fatal(err)
	}
	tr := j.WaitTrace(t, trace.String(), 5, 10*time.Second)
	if len(tr.Spans) != 5 {
		t.Fatalf("trace has %d spans, want 5", len(tr.Spans))
	}
	want := map[string]struct{ parent, service string }{
		"0000000000000001": {"", "checkout"},
		"0000000000000002": {"0000000000000001", "checkout"},
		"0000000000000003": {"0000000000000002", "payments"},
		"0000000000000004": {"0000000000000003", "payments"},
		"0000000000000005": {"0000000000000004", "ledger"},
	}
	for _, s := range tr.Spans {
		if w := want[s.SpanID]; s.Parent() != w.parent || tr.Service(s) != w.service {
			t.Errorf("span %s: parent %q service %q, want %+v", s.SpanID, s.Parent(), tr.Service(s), w)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := h.metric("sidemix_jaeger_spans_sent_total")
		return got == 5, fmt.Sprintf("sent = %v, want 5", got)
	})
	for i := range released {
		if n := released[i].Load(); n != 1 {
			t.Errorf("resource %d released %d times, want once", i, n)
		}
	}
}

// TestRawOTLPFailureReleases: with the collector down, the spans count as
// failed and every resource is still released once.
func TestRawOTLPFailureReleases(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nprotocol: otlp\nflushInterval: 10ms\ntimeout: 200ms\nretry: {enabled: false}", down))
	var released atomic.Int32
	trace := pcommon.TraceID{1}
	h.Report(context.Background(), rawInsts(
		resource(t, trace, "a", 0, []byte{1, 2}, &released),
		resource(t, trace, "b", 0, []byte{3}, &released),
	))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := h.metric("sidemix_jaeger_spans_failed_total")
		return got == 3, fmt.Sprintf("failed = %v, want 3", got)
	})
	if n := released.Load(); n != 2 {
		t.Errorf("%d releases, want 2", n)
	}
	if got := h.metric("sidemix_jaeger_spans_sent_total"); got != 0 {
		t.Errorf("sent = %v", got)
	}
}

// partialOTLP is an OTLP endpoint that takes a request but rejects some
// of its spans (a partial success), which Jaeger itself never answers.
type partialOTLP struct {
	ptraceotlp.UnimplementedGRPCServer
	reject int64
	calls  atomic.Int32
}

func (p *partialOTLP) Export(_ context.Context, _ ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	p.calls.Add(1)
	resp := ptraceotlp.NewExportResponse()
	resp.PartialSuccess().SetRejectedSpans(p.reject)
	resp.PartialSuccess().SetErrorMessage("span too old")
	return resp, nil
}

// TestRawOTLPPartialSuccess: rejected spans count as failed, the rest as
// sent, and the batch is not resent.
func TestRawOTLPPartialSuccess(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	p := &partialOTLP{reject: 1}
	ptraceotlp.RegisterGRPCServer(srv, p)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	h, logs := newTestHandler(t, fmt.Sprintf("endpoint: %s\nprotocol: otlp\nflushInterval: 10ms", l.Addr()))
	var released atomic.Int32
	h.Report(context.Background(), rawInsts(resource(t, pcommon.TraceID{2}, "a", 0, []byte{1, 2, 3}, &released)))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		f, s := h.metric("sidemix_jaeger_spans_failed_total"), h.metric("sidemix_jaeger_spans_sent_total")
		return f == 1 && s == 2, fmt.Sprintf("failed %v sent %v, want 1 and 2", f, s)
	})
	if n := p.calls.Load(); n != 1 {
		t.Errorf("%d exports, want 1 (no resend after a partial success)", n)
	}
	if n := released.Load(); n != 1 {
		t.Errorf("%d releases, want 1", n)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "1 spans rejected: span too old"), logs.String()
	})
}

// TestRawOTLPNotTaken: otlp instances of logs, or any given to a handler
// with protocol grpc (which config loading prevents), are released and
// not sent; the spans of the latter count as dropped (template).
func TestRawOTLPNotTaken(t *testing.T) {
	h, _ := newTestHandler(t, "endpoint: 127.0.0.1:14250\nflushInterval: 10ms")
	var released atomic.Int32
	in := resource(t, pcommon.TraceID{3}, "a", 0, []byte{1, 2}, &released)
	logs := &template.OTLP{Name: "applogs", Signal: template.SignalLogs, Data: []byte{0x0a, 0}, Items: 1, Release: in.Release}
	h.Report(context.Background(), rawInsts(in, logs))
	if n := released.Load(); n != 2 {
		t.Errorf("%d releases, want 2", n)
	}
	if got := h.metric("sidemix_jaeger_spans_dropped_total", "reason", reasonTemplate); got != 2 {
		t.Errorf("dropped{template} = %v, want 2", got)
	}
}

// BenchmarkRawVsTraceSpan measures spans per second to an in-process OTLP
// endpoint, side by side: the same 100 spans a Report as tracespans
// (converted by the handler) and as one otlp instance (a resource,
// forwarded as is).
func BenchmarkRawVsTraceSpan(b *testing.B) {
	const per = 100
	ids := make([]byte, per)
	for i := range ids {
		ids[i] = byte(i + 1)
	}
	for _, kind := range []string{"tracespan", "otlp"} {
		b.Run(kind, func(b *testing.B) {
			f := startOTLP(b)
			f.discard = true
			h, _ := newTestHandler(b, fmt.Sprintf("endpoint: %s\nprotocol: otlp\nflushInterval: 10ms\nmaxBatchSize: 1000\nmaxQueueSize: 100000", f.addr()))
			var batch []template.Instance
			if kind == "otlp" {
				batch = rawInsts(resource(b, pcommon.TraceID{7}, "invoice", 0, ids, nil))
			} else {
				for i := range per {
					batch = append(batch, span(traceA, fmt.Sprintf("%016x", i+1), fmt.Sprintf("%016x", i+1000), template.SpanKindServer, "caller", "invoice"))
				}
			}
			reportPaced(b, h, batch, per, f)
		})
	}
}
