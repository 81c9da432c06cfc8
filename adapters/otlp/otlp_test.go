package otlp_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // the receiver takes gzip
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/otlp"
	"github.com/sidemix/sidemix/adapters/template"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, otlp.Factory(), []configtest.Case{
		{File: "grpc.yaml"},
		{File: "http.yaml"},
		{File: "noretry.yaml"},
		{File: "missing.bad.yaml", Want: "endpoint: required (host:port of the OTLP/gRPC receiver)"},
		{File: "protocol.bad.yaml", Want: `protocol: unknown protocol "thrift" (want grpc or http)`},
		{File: "httpurl.bad.yaml", Want: `endpoint: "127.0.0.1:4318" is not an http:// or https:// URL`},
		{File: "httptls.bad.yaml", Want: "tls.enabled: TLS over http needs an https:// endpoint\n" +
			"tls: certFile and keyFile go together (one is missing)"},
		{File: "values.bad.yaml", Want: `endpoint: "collector" is not host:port` + "\n" +
			`headers: "bad name" is not a header name` + "\n" +
			"timeout: must be positive, got 0s\n" +
			`compression: unknown compression "zstd" (want gzip or none)` + "\n" +
			"maxBatchSize: must be positive, got 0\n" +
			"flushInterval: must be positive, got -1s\n" +
			"maxQueueSize: -1 is less than maxBatchSize 0\n" +
			"retry.initialInterval: must be positive, got 0s\n" +
			"retry.maxElapsedTime: must be positive, got 0s"},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 2: field batchSize not found in type otlp.Config"},
	})
}

func TestRedactedHidesHeaders(t *testing.T) {
	cfg, err := configtest.Load(otlp.Factory(), "testdata/http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, ok := cfg.(adapters.Redactor)
	if !ok {
		t.Fatal("params are not a Redactor")
	}
	if got := r.Redacted().(*otlp.Config).Headers["x-api-key"]; got != "xxxxx" {
		t.Errorf("redacted header %q", got)
	}
	if got := cfg.(*otlp.Config).Headers["x-api-key"]; got != "s3cr3t" {
		t.Errorf("Redacted changed the params: %q", got)
	}
}

// ---- an in-process OTLP receiver ----

type receiver struct {
	mu      sync.Mutex
	spans   []ptrace.Span
	svcs    map[string]string // span id → service.name
	logs    []plog.LogRecord
	headers []string // x-api-key of every request
	// fail answers this many requests with failCode (gRPC) or failHTTP.
	fail     int
	failCode codes.Code
	failHTTP int
	// reject reports this many items of every request as rejected.
	reject   int
	requests int
}

func (r *receiver) takeTraces(td ptrace.Traces, key string) (rejected int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.headers = append(r.headers, key)
	if r.fail > 0 {
		r.fail--
		return 0, status.Error(r.failCode, "not now")
	}
	if r.svcs == nil {
		r.svcs = map[string]string{}
	}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		svc, _ := rss.At(i).Resource().Attributes().Get("service.name")
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			for k := 0; k < sss.At(j).Spans().Len(); k++ {
				sp := sss.At(j).Spans().At(k)
				r.spans = append(r.spans, sp)
				r.svcs[sp.SpanID().String()] = svc.AsString()
			}
		}
	}
	return r.reject, nil
}

func (r *receiver) takeLogs(ld plog.Logs, key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.headers = append(r.headers, key)
	if r.fail > 0 {
		r.fail--
		return status.Error(r.failCode, "not now")
	}
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			for k := 0; k < sls.At(j).LogRecords().Len(); k++ {
				r.logs = append(r.logs, sls.At(j).LogRecords().At(k))
			}
		}
	}
	return nil
}

func (r *receiver) counts() (spans, logs, requests int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.spans), len(r.logs), r.requests
}

type traceSrv struct {
	ptraceotlp.UnimplementedGRPCServer
	r *receiver
}

func apiKey(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	return strings.Join(md.Get("x-api-key"), ",")
}

func (s *traceSrv) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	rejected, err := s.r.takeTraces(req.Traces(), apiKey(ctx))
	resp := ptraceotlp.NewExportResponse()
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedSpans(int64(rejected))
		resp.PartialSuccess().SetErrorMessage("no thanks")
	}
	return resp, err
}

type logSrv struct {
	plogotlp.UnimplementedGRPCServer
	r *receiver
}

func (s *logSrv) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	return plogotlp.NewExportResponse(), s.r.takeLogs(req.Logs(), apiKey(ctx))
}

func startGRPC(t *testing.T, r *receiver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	ptraceotlp.RegisterGRPCServer(srv, &traceSrv{r: r})
	plogotlp.RegisterGRPCServer(srv, &logSrv{r: r})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func startHTTP(t *testing.T, r *receiver) string {
	t.Helper()
	read := func(w http.ResponseWriter, req *http.Request) ([]byte, bool) {
		if req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "content type", http.StatusUnsupportedMediaType)
			return nil, false
		}
		var src io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return nil, false
			}
			src = zr
		}
		b, err := io.ReadAll(src)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return nil, false
		}
		r.mu.Lock()
		fail := r.fail > 0
		if fail {
			r.fail--
			r.requests++
		}
		r.mu.Unlock()
		if fail {
			http.Error(w, "not now", r.failHTTP)
			return nil, false
		}
		return b, true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
		b, ok := read(w, req)
		if !ok {
			return
		}
		er := ptraceotlp.NewExportRequest()
		if err := er.UnmarshalProto(b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rejected, _ := r.takeTraces(er.Traces(), req.Header.Get("x-api-key"))
		resp := ptraceotlp.NewExportResponse()
		if rejected > 0 {
			resp.PartialSuccess().SetRejectedSpans(int64(rejected))
		}
		out, _ := resp.MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})
	mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, req *http.Request) {
		b, ok := read(w, req)
		if !ok {
			return
		}
		er := plogotlp.NewExportRequest()
		if err := er.UnmarshalProto(b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.takeLogs(er.Logs(), req.Header.Get("x-api-key"))
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := plogotlp.NewExportResponse().MarshalProto()
		w.Write(out)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// ---- tests ----

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func span(id, parent, kind, src, dst string) *template.TraceSpan {
	return &template.TraceSpan{
		Name: "span", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: id, ParentSpanID: parent,
		SpanName: "GET /invoices", StartTime: t0, EndTime: t0.Add(5 * time.Millisecond),
		SpanKind: kind, Status: template.SpanStatusUnset, HTTPStatusCode: 200,
		SourceName: src, DestinationName: dst,
		SpanTags: []template.SpanTag{{Key: "url.path", Value: "/invoices"}},
	}
}

func instances() []template.Instance {
	return []template.Instance{
		span("00f067aa0ba902b7", "", template.SpanKindClient, "product", "invoice"),
		span("53995c3f42cd8ad8", "00f067aa0ba902b7", template.SpanKindServer, "product", "invoice"),
		span("not-hex", "", template.SpanKindServer, "product", "invoice"),
		&template.LogEntry{Name: "accesslog", Severity: "warning", Timestamp: t0, Variables: template.FieldsOf(map[string]any{"method": "GET", "url": "/x"})},
		&template.Metric{Name: "not for otlp"},
	}
}

func newReporter(t *testing.T, reg prometheus.Registerer, params string) adapters.Reporter {
	t.Helper()
	h := configtest.Create(t, otlp.Factory(), adapters.Settings{Name: "otel", Registerer: reg}, []byte(params))
	return h.(adapters.Reporter)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func checkReceived(t *testing.T, r *receiver, reg *prometheus.Registry) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var got []string
	for _, sp := range r.spans {
		got = append(got, fmt.Sprintf("%s %s %s %s %s", r.svcs[sp.SpanID().String()], sp.SpanID(), sp.ParentSpanID(), sp.Kind(), sp.Name()))
	}
	sort.Strings(got)
	want := []string{
		"invoice 53995c3f42cd8ad8 00f067aa0ba902b7 Server GET /invoices",
		"product 00f067aa0ba902b7  Client GET /invoices",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("spans\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(r.logs) != 1 || r.logs[0].SeverityNumber() != plog.SeverityNumberWarn || r.logs[0].Body().Str() != "accesslog GET /x" {
		t.Errorf("logs %d", len(r.logs))
	}
	for _, h := range r.headers {
		if h != "s3cr3t" {
			t.Errorf("x-api-key %q", h)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sidemix_otlp_sent_total", []string{"signal", "traces"}, 2},
		{"sidemix_otlp_sent_total", []string{"signal", "logs"}, 1},
		{"sidemix_otlp_dropped_total", []string{"reason", "invalid"}, 1},
		{"sidemix_otlp_dropped_total", []string{"reason", "wrong_template"}, 1},
	} {
		if got := value(t, reg, c.name, append([]string{"handler", "otel"}, c.labels...)...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestExport(t *testing.T) {
	for _, c := range []struct{ name, params string }{
		{"grpc", "endpoint: %s\nheaders: {x-api-key: s3cr3t}\nflushInterval: 10ms"},
		{"grpc uncompressed", "endpoint: %s\nheaders: {x-api-key: s3cr3t}\nflushInterval: 10ms\ncompression: none"},
		{"http", "endpoint: %s\nprotocol: http\nheaders: {x-api-key: s3cr3t}\nflushInterval: 10ms"},
		{"http uncompressed", "endpoint: %s/\nprotocol: http\nheaders: {x-api-key: s3cr3t}\nflushInterval: 10ms\ncompression: none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &receiver{}
			addr := ""
			if strings.HasPrefix(c.name, "http") {
				addr = startHTTP(t, r)
			} else {
				addr = startGRPC(t, r)
			}
			reg := prometheus.NewRegistry()
			h := newReporter(t, reg, fmt.Sprintf(c.params, addr))
			if err := h.Report(context.Background(), instances()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "2 spans and 1 log record", func() bool { s, l, _ := r.counts(); return s == 2 && l == 1 })
			waitFor(t, "sent counted", func() bool {
				return value(t, reg, "sidemix_otlp_sent_total", "handler", "otel") == 3
			})
			checkReceived(t, r, reg)
		})
	}
}

func TestCloseFlushes(t *testing.T) {
	r := &receiver{}
	reg := prometheus.NewRegistry()
	h := newReporter(t, reg, "endpoint: "+startGRPC(t, r)+"\nheaders: {x-api-key: s3cr3t}\nflushInterval: 1h")
	h.Report(context.Background(), instances())
	if s, l, _ := r.counts(); s+l != 0 {
		t.Fatalf("sent before a flush: %d spans %d logs", s, l)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, r, reg)
}

func TestRetriesUntilAccepted(t *testing.T) {
	for _, proto := range []string{"grpc", "http"} {
		t.Run(proto, func(t *testing.T) {
			r := &receiver{fail: 2, failCode: codes.Unavailable, failHTTP: http.StatusServiceUnavailable}
			addr := startGRPC(t, r)
			if proto == "http" {
				addr = startHTTP(t, r)
			}
			reg := prometheus.NewRegistry()
			h := newReporter(t, reg, "endpoint: "+addr+"\nprotocol: "+proto+
				"\nflushInterval: 10ms\nretry: {enabled: true, initialInterval: 5ms, maxInterval: 10ms, maxElapsedTime: 5s}")
			h.Report(context.Background(), []template.Instance{span("00f067aa0ba902b7", "", template.SpanKindClient, "a", "b")})
			waitFor(t, "the span", func() bool { s, _, _ := r.counts(); return s == 1 })
			waitFor(t, "sent counted", func() bool {
				return value(t, reg, "sidemix_otlp_sent_total", "handler", "otel", "signal", "traces") == 1
			})
			if got := value(t, reg, "sidemix_otlp_retries_total", "handler", "otel"); got != 2 {
				t.Errorf("retries = %v, want 2", got)
			}
			if got := value(t, reg, "sidemix_otlp_failed_total", "handler", "otel"); got != 0 {
				t.Errorf("failed = %v", got)
			}
		})
	}
}

func TestPermanentFailuresAreNotRetried(t *testing.T) {
	for _, proto := range []string{"grpc", "http"} {
		t.Run(proto, func(t *testing.T) {
			r := &receiver{fail: 1, failCode: codes.InvalidArgument, failHTTP: http.StatusBadRequest}
			addr := startGRPC(t, r)
			if proto == "http" {
				addr = startHTTP(t, r)
			}
			reg := prometheus.NewRegistry()
			h := newReporter(t, reg, "endpoint: "+addr+"\nprotocol: "+proto+
				"\nflushInterval: 10ms\nretry: {enabled: true, initialInterval: 5ms, maxInterval: 10ms, maxElapsedTime: 5s}")
			h.Report(context.Background(), []template.Instance{span("00f067aa0ba902b7", "", template.SpanKindClient, "a", "b")})
			waitFor(t, "failed counted", func() bool {
				return value(t, reg, "sidemix_otlp_failed_total", "handler", "otel", "signal", "traces") == 1
			})
			if _, _, n := r.counts(); n != 1 {
				t.Errorf("%d requests, want 1 (no retry)", n)
			}
		})
	}
}

func TestPartialSuccessCountsRejected(t *testing.T) {
	r := &receiver{reject: 1}
	reg := prometheus.NewRegistry()
	h := newReporter(t, reg, "endpoint: "+startGRPC(t, r)+"\nflushInterval: 10ms")
	h.Report(context.Background(), []template.Instance{
		span("00f067aa0ba902b7", "", template.SpanKindClient, "a", "b"),
		span("53995c3f42cd8ad8", "", template.SpanKindClient, "a", "b"),
	})
	waitFor(t, "outcome counted", func() bool {
		return value(t, reg, "sidemix_otlp_failed_total", "handler", "otel") == 1
	})
	if got := value(t, reg, "sidemix_otlp_sent_total", "handler", "otel"); got != 1 {
		t.Errorf("sent = %v, want 1", got)
	}
	if _, _, n := r.counts(); n != 1 {
		t.Errorf("%d requests, want 1: a partial success is not resent", n)
	}
}

func TestQueueFullDrops(t *testing.T) {
	// An endpoint nobody listens on: sends fail and retry while the
	// buffer fills.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	reg := prometheus.NewRegistry()
	h := newReporter(t, reg, "endpoint: "+addr+"\ntimeout: 50ms\nmaxBatchSize: 1\nmaxQueueSize: 2\nflushInterval: 1h"+
		"\nretry: {enabled: true, initialInterval: 1h, maxInterval: 1h, maxElapsedTime: 2h}")
	var insts []template.Instance
	for i := range 10 {
		insts = append(insts, span(fmt.Sprintf("%016x", i+1), "", template.SpanKindClient, "a", "b"))
	}
	h.Report(context.Background(), insts)
	if got := value(t, reg, "sidemix_otlp_dropped_total", "handler", "otel", "reason", "queue_full"); got != 8 {
		t.Errorf("dropped{queue_full} = %v, want 8", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	h.Close(ctx)
	lost := value(t, reg, "sidemix_otlp_dropped_total", "handler", "otel", "reason", "shutdown") +
		value(t, reg, "sidemix_otlp_failed_total", "handler", "otel")
	if lost != 2 {
		t.Errorf("dropped at shutdown + failed = %v, want 2", lost)
	}
}

// value sums the series of metric name whose labels include the given
// name, value pairs.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// forwarded is an otlp instance as the mixer's OTLP ingest builds one: a
// resource of two spans as an app exported it.
func forwarded(t *testing.T) *template.OTLP {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "app")
	for i, name := range []string{"GET /a", "SELECT a"} {
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		sp.SetSpanID(pcommon.SpanID{1, 1, 1, 1, 1, 1, 1, byte(i + 1)})
		sp.SetName(name)
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return &template.OTLP{Name: "asreceived", Signal: template.SignalTraces, Data: b, Items: 2, ServiceName: "app"}
}

// TestExportOTLPInstances: otlp instances go to the endpoint as they
// came, over gRPC and HTTP, counted in spans; rejected spans are counted
// failed.
func TestExportOTLPInstances(t *testing.T) {
	for _, c := range []struct{ name, params string }{
		{"grpc", "endpoint: %s\nheaders: {x-api-key: s3cr3t}"},
		{"http", "endpoint: %s\nprotocol: http\nheaders: {x-api-key: s3cr3t}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &receiver{}
			addr := ""
			if c.name == "http" {
				addr = startHTTP(t, r)
			} else {
				addr = startGRPC(t, r)
			}
			reg := prometheus.NewRegistry()
			h := newReporter(t, reg, fmt.Sprintf(c.params, addr))
			var released atomic.Int32
			first, second := forwarded(t), forwarded(t)
			first.Release = func() { released.Add(1) }
			second.Release = first.Release
			if err := h.Report(context.Background(), []template.Instance{first, second}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "4 spans", func() bool { s, _, _ := r.counts(); return s == 4 })
			waitFor(t, "both resources released", func() bool { return released.Load() == 2 })
			waitFor(t, "sent counted", func() bool {
				return value(t, reg, "sidemix_otlp_sent_total", "handler", "otel", "signal", "traces") == 4
			})
			r.mu.Lock()
			svc, name, key := r.svcs[r.spans[0].SpanID().String()], r.spans[0].Name(), r.headers[0]
			r.mu.Unlock()
			if svc != "app" || name != "GET /a" || key != "s3cr3t" {
				t.Errorf("received service %q span %q key %q", svc, name, key)
			}

			r.mu.Lock()
			r.reject = 1
			r.mu.Unlock()
			third := forwarded(t)
			third.Release = first.Release
			if err := h.Report(context.Background(), []template.Instance{third}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the rejected span counted", func() bool {
				return value(t, reg, "sidemix_otlp_failed_total", "handler", "otel", "signal", "traces") == 1
			})
			if n := released.Load(); n != 3 {
				t.Errorf("%d releases, want 3: every resource once, the rejected one too", n)
			}
			if got := value(t, reg, "sidemix_otlp_sent_total", "handler", "otel", "signal", "traces"); got != 5 {
				t.Errorf("sent = %v, want 5", got)
			}
		})
	}
}
