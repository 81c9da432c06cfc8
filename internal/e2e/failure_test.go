package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// TestMixerUnreachable: with no mixer, a sidecar with fail policy closed
// answers 503 within its check timeout and the app never sees the request;
// with fail policy open it forwards.
func TestMixerUnreachable(t *testing.T) {
	nowhere := testenv.FreeAddr(t) // nothing listens here
	a := newApp(t)

	closed := startProxy(t, nowhere, a.addr(), "--check-fail-policy", "closed", "--check-timeout", "300ms")
	start := time.Now()
	r := get(t, closed.url("/hello"))
	took := time.Since(start)
	if r.code != 503 {
		t.Errorf("fail policy closed, mixer down: GET /hello = %d %q, want 503", r.code, r.body)
	}
	// The check timeout bounds the wait; allow for process and race
	// detector overhead on a small machine.
	if took > 300*time.Millisecond+1500*time.Millisecond {
		t.Errorf("fail policy closed answered after %v, want within the 300ms check timeout", took)
	}
	if a.hits.Load() != 0 {
		t.Errorf("fail policy closed let %d requests reach the app", a.hits.Load())
	}

	open := startProxy(t, nowhere, a.addr(), "--check-fail-policy", "open", "--check-timeout", "300ms")
	start = time.Now()
	r = get(t, open.url("/hello"))
	took = time.Since(start)
	if r.code != 200 || !strings.Contains(r.body, "hello from the app") {
		t.Errorf("fail policy open, mixer down: GET /hello = %d %q, want 200 from the app", r.code, r.body)
	}
	if took > 300*time.Millisecond+1500*time.Millisecond {
		t.Errorf("fail policy open answered after %v, want within the 300ms check timeout", took)
	}
	if a.hits.Load() != 1 {
		t.Errorf("app hits = %d, want 1", a.hits.Load())
	}
}

// TestReportsBufferedWhileMixerDown: reports of requests served while the
// mixer is down are delivered once it is back on the same address.
func TestReportsBufferedWhileMixerDown(t *testing.T) {
	const during = 7
	cfg := newConfig(t, nil)
	grpc, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	m := startMixer(t, cfg, grpc, admin)
	a := newApp(t)
	px := startProxy(t, grpc, a.addr(), "--check-fail-policy", "open", "--check-timeout", "200ms",
		"--report-interval", "200ms")

	web := map[string]string{"destination_workload": "web", "reporter": "destination", "response_code": "200"}
	if r := get(t, px.url("/before")); r.code != 200 {
		t.Fatalf("GET /before = %d", r.code)
	}
	waitMetric(t, cfg.metricsAddr, "istio_requests_total", web, 1, 10*time.Second)
	if err := m.Stop(15 * time.Second); err != nil {
		t.Fatalf("stopping the mixer: %v", err)
	}

	for range during {
		if r := get(t, px.url("/during")); r.code != 200 {
			t.Fatalf("mixer down, fail open: GET /during = %d %q", r.code, r.body)
		}
	}
	// Let the sidecar try (and fail) to deliver a few times.
	time.Sleep(time.Second)

	// The new mixer's metrics start at zero: it must count exactly the
	// requests served while it was down.
	startMixer(t, cfg, grpc, admin)
	waitMetric(t, cfg.metricsAddr, "istio_requests_total", web, during, 30*time.Second)
	if a.hits.Load() != 1+during {
		t.Errorf("app hits = %d, want %d", a.hits.Load(), 1+during)
	}
}
