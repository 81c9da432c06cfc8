package jaeger

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	model "github.com/jaegertracing/jaeger-idl/model/v1"
	api_v2 "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/testenv"
)

// fakeCollector is an in-process api_v2 CollectorService.
type fakeCollector struct {
	api_v2.UnimplementedCollectorServiceServer
	addr string
	srv  *grpc.Server

	mu      sync.Mutex
	batches []model.Batch
	calls   int
	count   int           // spans received
	discard bool          // count spans without keeping them
	fail    codes.Code    // answer PostSpans with this code unless OK
	hold    chan struct{} // when set, PostSpans waits for it
}

func startCollector(t testing.TB, opts ...grpc.ServerOption) *fakeCollector {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeCollector{addr: l.Addr().String()}
	c.srv = grpc.NewServer(append(opts, grpc.ForceServerCodec(gogoCodec{}))...)
	api_v2.RegisterCollectorServiceServer(c.srv, c)
	go c.srv.Serve(l)
	t.Cleanup(c.srv.Stop)
	return c
}

func (c *fakeCollector) PostSpans(ctx context.Context, req *api_v2.PostSpansRequest) (*api_v2.PostSpansResponse, error) {
	c.mu.Lock()
	hold, fail := c.hold, c.fail
	c.calls++
	c.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != codes.OK {
		return nil, status.Error(fail, "refused by the test")
	}
	c.mu.Lock()
	c.count += len(req.Batch.Spans)
	if !c.discard {
		c.batches = append(c.batches, req.Batch)
	}
	c.mu.Unlock()
	return &api_v2.PostSpansResponse{}, nil
}

func (c *fakeCollector) received() []model.Batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]model.Batch(nil), c.batches...)
}

func (c *fakeCollector) spans() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

type testHandler struct {
	*handler
	t   testing.TB
	reg *prometheus.Registry
}

func (h *testHandler) metric(name string, labels ...string) float64 {
	l := map[string]string{"handler": "tracing"}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return metrictest.Value(h.t, h.reg, name, l)
}

// syncBuffer is a bytes.Buffer safe for the handler's goroutine and the
// test.
type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func newTestHandler(t testing.TB, params string) (*testHandler, *syncBuffer) {
	t.Helper()
	cfg := NewConfig()
	if err := yaml.Unmarshal([]byte(params), cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	h, err := newHandler(context.Background(), adapters.Settings{
		Name:       "tracing",
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Registerer: reg,
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return &testHandler{handler: h.(*handler), t: t, reg: reg}, logs
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func span(trace, id, parent, kind, src, dst string) *template.TraceSpan {
	return &template.TraceSpan{
		Name: "span", TraceID: trace, SpanID: id, ParentSpanID: parent,
		SpanName: "GET /invoice", StartTime: t0, EndTime: t0.Add(1500 * time.Microsecond),
		SpanKind: kind, Status: template.SpanStatusUnset, HTTPStatusCode: 200,
		SourceName: src, DestinationName: dst,
		SpanTags: []template.SpanTag{{Key: "http.request.method", Value: "GET"},
			{Key: "http.response.status_code", Value: int64(200)}, {Key: "url.path", Value: "/invoice"}},
	}
}

const traceA = "4bf92f3577b34da6a3ce929d0e0e4736"

func insts(spans ...*template.TraceSpan) []template.Instance {
	out := make([]template.Instance, len(spans))
	for i, s := range spans {
		out[i] = s
	}
	return out
}

func TestBatchPerServiceWithProcessAndTags(t *testing.T) {
	c := startCollector(t)
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 20ms\nprocessTags: {mesh: demo}", c.addr))

	client := span(traceA, "00f067aa0ba902b7", "", template.SpanKindClient, "product", "invoice")
	server := span(traceA, "00f067aa0ba902b8", "00f067aa0ba902b7", template.SpanKindServer, "product", "invoice")
	server.Status = template.SpanStatusError
	server.HTTPStatusCode = 503
	server.TraceState = "vendor=1"
	if err := h.Report(context.Background(), insts(client, server)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return c.spans() == 2, fmt.Sprintf("collector has %d spans", c.spans())
	})
	byService := map[string]model.Batch{}
	for _, b := range c.received() {
		byService[b.Process.ServiceName] = b
	}
	if len(byService) != 2 {
		t.Fatalf("want one batch each for product and invoice, got %v", byService)
	}
	p := byService["product"]
	if got := p.Process.Tags; len(got) != 1 || got[0].Key != "mesh" || got[0].VStr != "demo" {
		t.Errorf("process tags = %v", got)
	}
	cs := p.Spans[0]
	if cs.TraceID.String() != traceA || cs.SpanID.String() != "f067aa0ba902b7" && cs.SpanID != 0x00f067aa0ba902b7 {
		t.Errorf("client ids = %s %s", cs.TraceID, cs.SpanID)
	}
	if len(cs.References) != 0 {
		t.Errorf("root span has references %v", cs.References)
	}
	if cs.OperationName != "GET /invoice" || cs.Duration != 1500*time.Microsecond || !cs.StartTime.Equal(t0) {
		t.Errorf("client span = %q %v %v", cs.OperationName, cs.StartTime, cs.Duration)
	}
	if !cs.Flags.IsSampled() {
		t.Error("span not flagged sampled")
	}
	tags := tagMap(cs.Tags)
	if tags["span.kind"] != "client" || tags["http.request.method"] != "GET" || tags["http.response.status_code"] != int64(200) || tags["http.status_code"] != int64(200) {
		t.Errorf("client tags = %v", tags)
	}
	ss := byService["invoice"].Spans[0]
	if len(ss.References) != 1 || ss.References[0].RefType != model.ChildOf || ss.References[0].SpanID != 0x00f067aa0ba902b7 || ss.References[0].TraceID != cs.TraceID {
		t.Errorf("server references = %v", ss.References)
	}
	tags = tagMap(ss.Tags)
	if tags["span.kind"] != "server" || tags["error"] != true || tags["otel.status_code"] != "ERROR" || tags["http.status_code"] != int64(503) || tags["w3c.tracestate"] != "vendor=1" {
		t.Errorf("server tags = %v", tags)
	}
	if got := h.metric("sidemix_jaeger_spans_sent_total"); got != 2 {
		t.Errorf("sent = %v, want 2", got)
	}
}

func tagMap(kvs []model.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value()
	}
	return m
}

func TestBatchesBySizeAndFlushesOnClose(t *testing.T) {
	c := startCollector(t)
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 1h\nmaxBatchSize: 3", c.addr))
	var spans []*template.TraceSpan
	for i := range 7 {
		spans = append(spans, span(traceA, fmt.Sprintf("%016x", i+1), "", template.SpanKindServer, "a", "b"))
	}
	for _, s := range spans {
		if err := h.Report(context.Background(), insts(s)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return c.spans() == 6, fmt.Sprintf("collector has %d spans, want the 2 full batches", c.spans())
	})
	for _, b := range c.received() {
		if len(b.Spans) != 3 {
			t.Errorf("batch of %d spans, want 3", len(b.Spans))
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := c.spans(); n != 6 {
		t.Fatalf("the partial batch went out before the flush interval: %d spans", n)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := c.spans(); n != 7 {
		t.Errorf("after Close the collector has %d spans, want 7", n)
	}
	if got := h.metric("sidemix_jaeger_spans_sent_total"); got != 7 {
		t.Errorf("sent = %v, want 7", got)
	}
}

func TestUnreachableCollectorCountsAndWarnsOnce(t *testing.T) {
	addr := testenv.FreeAddr(t) // nobody listens
	h, logs := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\ntimeout: 200ms\nretry: {enabled: false}", addr))
	start := time.Now()
	for i := range 20 {
		s := span(traceA, fmt.Sprintf("%016x", i+1), "", template.SpanKindServer, "a", "b")
		if err := h.Report(context.Background(), insts(s)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Report waited for the collector: 20 reports took %v", took)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		f := h.metric("sidemix_jaeger_spans_failed_total")
		return f == 20, fmt.Sprintf("failed = %v, want 20", f)
	})
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for one outage, want 1:\n%s", n, logs)
	}
	if got := h.metric("sidemix_jaeger_spans_sent_total"); got != 0 {
		t.Errorf("sent = %v", got)
	}
}

func TestRecoversWhenCollectorComesBack(t *testing.T) {
	c := startCollector(t)
	c.mu.Lock()
	c.fail = codes.Unavailable
	c.mu.Unlock()
	h, logs := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\nretry: {enabled: false}", c.addr))
	h.Report(context.Background(), insts(span(traceA, "0000000000000001", "", template.SpanKindServer, "a", "b")))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		f := h.metric("sidemix_jaeger_spans_failed_total")
		return f == 1, fmt.Sprintf("failed = %v", f)
	})
	c.mu.Lock()
	c.fail = codes.OK
	c.mu.Unlock()
	h.Report(context.Background(), insts(span(traceA, "0000000000000002", "", template.SpanKindServer, "a", "b")))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return c.spans() == 1, fmt.Sprintf("collector has %d spans", c.spans())
	})
	testenv.Eventually(t, time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "collector accepts spans again"), logs.String()
	})
}

func TestQueueFullAndInvalidAreDropped(t *testing.T) {
	c := startCollector(t)
	hold := make(chan struct{})
	c.mu.Lock()
	c.hold = hold
	c.mu.Unlock()
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\nmaxBatchSize: 2\nmaxQueueSize: 4", c.addr))
	bad := []*template.TraceSpan{
		span("nothex", "0000000000000001", "", "server", "a", "b"),
		span(traceA, "0000000000000000", "", "server", "a", "b"),
		span(traceA, "0000000000000001", "xyz", "server", "a", "b"),
		span("00000000000000000000000000000000", "0000000000000001", "", "server", "a", "b"),
	}
	h.Report(context.Background(), append(insts(bad...), &template.Metric{Name: "m"}))
	if got := h.metric("sidemix_jaeger_spans_dropped_total", "reason", "invalid"); got != 4 {
		t.Errorf("dropped invalid = %v, want 4", got)
	}
	if got := h.metric("sidemix_jaeger_spans_dropped_total", "reason", "template"); got != 1 {
		t.Errorf("dropped template = %v, want 1", got)
	}
	// The first batch (2 spans) is held at the collector; 4 more fill the
	// queue, the rest is dropped.
	h.Report(context.Background(), insts(span(traceA, "0000000000000001", "", "server", "a", "b"), span(traceA, "0000000000000002", "", "server", "a", "b")))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return h.metric("sidemix_jaeger_queue_spans") == 0, "first batch not taken"
	})
	for i := range 10 {
		h.Report(context.Background(), insts(span(traceA, fmt.Sprintf("%016x", i+10), "", "server", "a", "b")))
	}
	if got := h.metric("sidemix_jaeger_spans_dropped_total", "reason", "queue_full"); got != 6 {
		t.Errorf("dropped queue_full = %v, want 6", got)
	}
	if got := h.metric("sidemix_jaeger_queue_spans"); got != 4 {
		t.Errorf("queued = %v, want 4", got)
	}
	close(hold)
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return c.spans() == 6, fmt.Sprintf("collector has %d spans, want 6", c.spans())
	})
}

func TestCloseGivesUpWhenContextEnds(t *testing.T) {
	c := startCollector(t)
	c.mu.Lock()
	c.hold = make(chan struct{}) // never answers
	c.mu.Unlock()
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\ntimeout: 1m\nmaxBatchSize: 1", c.addr))
	h.Report(context.Background(), insts(span(traceA, "0000000000000001", "", "server", "a", "b"), span(traceA, "0000000000000002", "", "server", "a", "b")))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	h.Close(ctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v with a 200ms context", took)
	}
	failed := h.metric("sidemix_jaeger_spans_failed_total")
	dropped := h.metric("sidemix_jaeger_spans_dropped_total", "reason", "shutdown")
	if failed+dropped != 2 {
		t.Errorf("failed %v + dropped %v, want 2 spans accounted for", failed, dropped)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, serverCert := selfSigned(t, dir, "collector.test")
	c := startCollector(t, grpc.Creds(credentials.NewServerTLSFromCert(&serverCert)))
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\ntls: {enabled: true, caFile: %s, serverName: collector.test}", c.addr, ca))
	h.Report(context.Background(), insts(span(traceA, "0000000000000001", "", "server", "a", "b")))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return c.spans() == 1, fmt.Sprintf("collector has %d spans", c.spans())
	})
	// Without the CA the server is not trusted.
	h2, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\nretry: {enabled: false}\ntls: {enabled: true, serverName: collector.test}", c.addr))
	h2.Report(context.Background(), insts(span(traceA, "0000000000000002", "", "server", "a", "b")))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		f := h2.metric("sidemix_jaeger_spans_failed_total")
		return f == 1, fmt.Sprintf("failed = %v", f)
	})
}

func TestRetriesUntilTheCollectorTakesTheSpans(t *testing.T) {
	c := startCollector(t)
	c.setFail(codes.Unavailable)
	h, logs := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\nretry: {enabled: true, initialInterval: 20ms, maxInterval: 50ms, maxElapsedTime: 10s}", c.addr))
	h.Report(context.Background(), insts(span(traceA, "0000000000000001", "", template.SpanKindServer, "a", "b")))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.calls >= 3, fmt.Sprintf("%d calls", c.calls)
	})
	c.setFail(codes.OK)
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return c.spans() == 1, fmt.Sprintf("collector has %d spans", c.spans())
	})
	if f := h.metric("sidemix_jaeger_spans_failed_total"); f != 0 {
		t.Errorf("failed = %v, want 0: the span was retried until sent", f)
	}
	testenv.Eventually(t, time.Second, func() (bool, string) {
		r := h.metric("sidemix_jaeger_send_retries_total")
		return r >= 2, fmt.Sprintf("retries = %v", r)
	})
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a batch that went through after retries was logged as failed:\n%s", logs)
	}
}

func TestRefusedSpansAreNotRetried(t *testing.T) {
	c := startCollector(t)
	c.setFail(codes.InvalidArgument)
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\nretry: {enabled: true, initialInterval: 10ms, maxInterval: 10ms, maxElapsedTime: 10s}", c.addr))
	h.Report(context.Background(), insts(span(traceA, "0000000000000001", "", template.SpanKindServer, "a", "b")))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		f := h.metric("sidemix_jaeger_spans_failed_total")
		return f == 1, fmt.Sprintf("failed = %v", f)
	})
	if r := h.metric("sidemix_jaeger_send_retries_total"); r != 0 {
		t.Errorf("retries = %v, want 0 for a refusal", r)
	}
}

func (c *fakeCollector) setFail(code codes.Code) {
	c.mu.Lock()
	c.fail = code
	c.mu.Unlock()
}

func TestCloseDoesNotWaitForAFailingCollector(t *testing.T) {
	addr := testenv.FreeAddr(t) // nobody listens
	h, _ := newTestHandler(t, fmt.Sprintf("endpoint: %s\nflushInterval: 10ms\nretry: {enabled: true, initialInterval: 1s, maxInterval: 5s, maxElapsedTime: 1m}", addr))
	h.Report(context.Background(), insts(span(traceA, "0000000000000001", "", "server", "a", "b")))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return h.lastFailed.Load(), "no failed attempt yet"
	})
	h.Report(context.Background(), insts(span(traceA, "0000000000000002", "", "server", "a", "b")))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	h.Close(ctx)
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with the collector down", took)
	}
	failed := h.metric("sidemix_jaeger_spans_failed_total")
	dropped := h.metric("sidemix_jaeger_spans_dropped_total", "reason", "shutdown")
	if failed+dropped != 2 {
		t.Errorf("failed %v + dropped %v, want 2 spans accounted for", failed, dropped)
	}
}
