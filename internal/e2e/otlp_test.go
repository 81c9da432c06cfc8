package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sidemix/sidemix/internal/testenv"
)

// otlpSpanInstance is examples/default's span instance, with the span.*
// attributes of spans received over OTLP taking precedence, so an app's
// span keeps its own name, kind and status.
const otlpSpanInstance = `apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: span}
spec:
  template: tracespan
  params:
    traceId: request.trace.id
    spanId: request.trace.span_id
    parentSpanId: default(request.trace.parent_span_id, "")
    traceState: default(request.trace.state, "")
    spanName: default(span.name, default(request.method, "GET") + " " + default(request.url_path, "/"))
    startTime: request.time
    endTime: response.time
    spanKind: default(span.kind, conditional(context.reporter.kind == "outbound", "client", "server"))
    status: default(span.status, conditional(default(response.code, 200) >= 500, "error", "unset"))
    httpStatusCode: default(response.code, 0)
    sourceName: default(source.workload.name, "unknown")
    destinationName: default(destination.workload.name, "unknown")
    spanTags:
      http.request.method: default(request.method, "")
      url.path: default(request.url_path, "")
      app.step: default(span.attributes["app.step"], "")
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: tracing}
spec:
  match: default(request.trace.sampled, false)
  actions:
  - handler: traces
    instances: [span]
`

// TestOTLPAppSpanJoinsTheProxyTraceInJaeger: a request goes through web's
// sidecar into the app, which makes a span of its own under the span the
// sidecar put in its traceparent and sends it to the mixer over OTLP. In
// Jaeger, that span is in the same trace as the sidecar's server span, its
// child, under the app's service name. Spans reach Jaeger through the
// jaeger adapter, and through the otlp adapter to Jaeger's OTLP receiver.
func TestOTLPAppSpanJoinsTheProxyTraceInJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	for _, c := range []struct{ name, handler string }{
		{"jaeger adapter", "adapter: jaeger\n  params: {endpoint: \"" + j.CollectorAddr + "\", flushInterval: 100ms}"},
		{"otlp adapter", "adapter: otlp\n  params: {endpoint: \"" + j.OTLPGRPCAddr + "\", flushInterval: 100ms}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := newBareConfig(t, map[string]string{
				"handler.yaml": "apiVersion: sidemix.dev/v1\nkind: Handler\nmetadata: {name: traces}\nspec:\n  " + c.handler + "\n",
				"tracing.yaml": otlpSpanInstance,
			})
			otlpAddr := testenv.FreeAddr(t)
			m := startMixer(t, cfg, "", "", "--otlp-grpc", otlpAddr)
			testenv.WaitTCP(t, otlpAddr, 5*time.Second)
			checkAppSpanInTrace(t, j, m, otlpAddr)
		})
	}
}

func checkAppSpanInTrace(t *testing.T, j *testenv.Jaeger, m *mixer, otlpAddr string) {
	t.Helper()
	var mu sync.Mutex
	var parents []string // the traceparent headers the app got
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parents = append(parents, r.Header.Get("traceparent"))
		mu.Unlock()
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(a.Close)
	px := startProxy(t, m.grpc, strings.TrimPrefix(a.URL, "http://"))

	traceID := randomHex(16)
	callerSpan := randomHex(8)
	if r := get(t, px.url("/invoices/7"), "traceparent", "00-"+traceID+"-"+callerSpan+"-01"); r.code != http.StatusOK {
		t.Fatalf("GET through the sidecar: %d %s", r.code, r.body)
	}
	mu.Lock()
	got := append([]string(nil), parents...)
	mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("app got %d requests", len(got))
	}
	// 00-<trace>-<the sidecar's server span>-01
	f := strings.Split(got[0], "-")
	if len(f) != 4 || f[1] != traceID {
		t.Fatalf("traceparent at the app %q, want trace %s", got[0], traceID)
	}
	proxySpan := f[2]

	// The app's own span, a child of the sidecar's, sent as an SDK would.
	appSpan := randomHex(8)
	var tid pcommon.TraceID
	var sid, pid pcommon.SpanID
	for _, x := range []struct {
		dst []byte
		hex string
	}{{tid[:], traceID}, {sid[:], appSpan}, {pid[:], proxySpan}} {
		if _, err := hex.Decode(x.dst, []byte(x.hex)); err != nil {
			t.Fatalf("id %q: %v", x.hex, err)
		}
	}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "web-app")
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(tid)
	sp.SetSpanID(sid)
	sp.SetParentSpanID(pid)
	sp.SetName("render invoice")
	sp.SetKind(ptrace.SpanKindInternal)
	now := time.Now()
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-2 * time.Millisecond)))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	sp.Attributes().PutStr("app.step", "render")
	conn, err := grpc.NewClient(otlpAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	if err != nil {
		t.Fatalf("OTLP export to the mixer: %v", err)
	}
	if n := resp.PartialSuccess().RejectedSpans(); n != 0 {
		t.Fatalf("mixer rejected %d spans: %s", n, resp.PartialSuccess().ErrorMessage())
	}

	tr := j.WaitTrace(t, traceID, 2, 30*time.Second)
	var proxyFound, appFound bool
	for _, s := range tr.Spans {
		switch s.SpanID {
		case proxySpan:
			proxyFound = true
			if s.Parent() != callerSpan || tr.Service(s) != "web" {
				t.Errorf("sidecar span: parent %q service %q, want %s and web", s.Parent(), tr.Service(s), callerSpan)
			}
		case appSpan:
			appFound = true
			if s.Parent() != proxySpan || tr.Service(s) != "web-app" || s.OperationName != "render invoice" {
				t.Errorf("app span: parent %q service %q name %q, want %s, web-app, render invoice",
					s.Parent(), tr.Service(s), s.OperationName, proxySpan)
			}
			if v := s.Tag("app.step"); v != "render" {
				t.Errorf("app span tag app.step = %v", v)
			}
		}
	}
	if !proxyFound || !appFound {
		t.Errorf("trace %s: sidecar span %s found %v, app span %s found %v; spans %+v", traceID, proxySpan, proxyFound, appSpan, appFound, tr.Spans)
	}
}

// randomHex is n random bytes in lowercase hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
