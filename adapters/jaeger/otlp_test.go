package jaeger

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/testenv"
)

type fakeOTLP struct {
	ptraceotlp.UnimplementedGRPCServer
	listen  string
	discard bool // count spans without keeping them

	mu     sync.Mutex
	traces []ptrace.Traces
	count  int
}

func startOTLP(t testing.TB) *fakeOTLP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	f := &fakeOTLP{listen: l.Addr().String()}
	ptraceotlp.RegisterGRPCServer(srv, f)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeOTLP) addr() string { return f.listen }

func (f *fakeOTLP) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count += req.Traces().SpanCount()
	if !f.discard {
		td := ptrace.NewTraces()
		req.Traces().CopyTo(td)
		f.traces = append(f.traces, td)
	}
	return ptraceotlp.NewExportResponse(), nil
}

func (f *fakeOTLP) spans() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

func TestOTLPProtocol(t *testing.T) {
	f := startOTLP(t)
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nprotocol: otlp\nflushInterval: 10ms\nprocessTags: {mesh: demo}", f.addr()))
	h.Report(context.Background(), insts(
		span(traceA, "00f067aa0ba902b7", "", template.SpanKindClient, "product", "invoice"),
		span(traceA, "00f067aa0ba902b8", "00f067aa0ba902b7", template.SpanKindServer, "product", "invoice"),
	))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return f.spans() == 2, fmt.Sprintf("OTLP server has %d spans", f.spans())
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	services := map[string]ptrace.Span{}
	for _, td := range f.traces {
		for i := range td.ResourceSpans().Len() {
			rs := td.ResourceSpans().At(i)
			name, _ := rs.Resource().Attributes().Get("service.name")
			mesh, _ := rs.Resource().Attributes().Get("mesh")
			if mesh.Str() != "demo" {
				t.Errorf("resource %s lacks the process tag: %v", name.Str(), rs.Resource().Attributes().AsRaw())
			}
			services[name.Str()] = rs.ScopeSpans().At(0).Spans().At(0)
		}
	}
	server := services["invoice"]
	if server.ParentSpanID().String() != "00f067aa0ba902b7" || server.Kind() != ptrace.SpanKindServer || server.TraceID().String() != traceA {
		t.Errorf("server span: parent %s kind %v trace %s", server.ParentSpanID(), server.Kind(), server.TraceID())
	}
	if c := services["product"]; c.Kind() != ptrace.SpanKindClient {
		t.Errorf("product span kind %v", c.Kind())
	}
	if got := h.metric("sidemix_jaeger_spans_sent_total"); got != 2 {
		t.Errorf("sent = %v", got)
	}
}
