package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// headerApp is an app that records the trace headers it was sent.
type headerApp struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newHeaderApp(t *testing.T) *headerApp {
	t.Helper()
	a := &headerApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.Header.Clone())
		a.mu.Unlock()
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *headerApp) requests() []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]http.Header(nil), a.seen...)
}

// TestBadTraceHeaders: a malformed trace header is ignored and the request
// starts a trace of its own, which reaches Jaeger; a huge one is refused
// with 431 before anything else looks at it, so it reaches neither the app
// nor the telemetry.
func TestBadTraceHeaders(t *testing.T) {
	j := testenv.StartJaeger(t)
	cfg := newConfig(t, nil)
	text := strings.Replace(example(t, "default/jaeger.yaml"), "endpoint: "+jaegerDefaultEndpoint, "endpoint: "+j.CollectorAddr, 1)
	text = strings.Replace(text, "flushInterval: 1s", "flushInterval: 100ms", 1)
	cfg.write(t, "jaeger.yaml", text)
	m := startMixer(t, cfg, "", "")
	app := newHeaderApp(t)
	px := startProxy(t, m.grpc, strings.TrimPrefix(app.URL, "http://"), "--report-interval", "100ms", "--trace-sampling", "1")

	const malformed = "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01"
	if r := get(t, px.url("/hello"), "traceparent", malformed); r.code != http.StatusOK {
		t.Fatalf("malformed traceparent: %d %s", r.code, r.body)
	}
	seen := app.requests()
	if len(seen) != 1 {
		t.Fatalf("the app got %d requests, want 1", len(seen))
	}
	tp := seen[0].Get("traceparent")
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 || strings.Contains(tp, "47zz") {
		t.Fatalf("the app got traceparent %q, want a new, valid one", tp)
	}
	tr := j.WaitTrace(t, parts[1], 1, 15*time.Second)
	if got := tr.Processes[tr.Spans[0].ProcessID].ServiceName; got != "web" {
		t.Errorf("the new trace's span belongs to %q, want web", got)
	}

	huge := "00-" + strings.Repeat("4bf92f3577b34da6", 64) + "-00f067aa0ba902b7-01"
	r := get(t, px.url("/hello"), "traceparent", huge)
	if r.code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a %d-byte traceparent: %d %s, want 431", len(huge), r.code, r.body)
	}
	if n := len(app.requests()); n != 1 {
		t.Errorf("the app got the refused request (%d requests in all)", n)
	}
	// The refusal is counted, without the header: wait until it is, then
	// look for the header anywhere the mixer wrote.
	waitMetric(t, cfg.metricsAddr, "istio_requests_total",
		map[string]string{"destination_workload": "web", "response_code": "431"}, 1, 15*time.Second)
	if strings.Contains(m.Output(), strings.Repeat("4bf92f3577b34da6", 4)) {
		t.Errorf("the huge traceparent reached the mixer's output")
	}
}
