package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestDenyAdminScenario is the foundation's documented scenario, verbatim:
// examples/default plus the deny-admin example, a mixer and a sidecar for
// service web in namespace shop.
func TestDenyAdminScenario(t *testing.T) {
	cfg := newConfig(t, map[string]string{"deny-admin.yaml": example(t, "policies/deny-admin.yaml")})
	m := startMixer(t, cfg, "", "")
	a := newApp(t)
	px := startProxy(t, m.grpc, a.addr())

	r := get(t, px.url("/hello"))
	if r.code != 200 || !strings.Contains(r.body, "hello from the app: GET /hello") {
		t.Fatalf("GET /hello: %d %q, want 200 from the app", r.code, r.body)
	}
	if got := a.hits.Load(); got != 1 {
		t.Fatalf("app hits after /hello = %d, want 1", got)
	}

	r = get(t, px.url("/admin/users"))
	if r.code != 403 {
		t.Fatalf("GET /admin/users: %d %q, want 403", r.code, r.body)
	}
	if !strings.Contains(r.body, "admin is closed") {
		t.Errorf("GET /admin/users body %q does not contain %q", r.body, "admin is closed")
	}
	if got := a.hits.Load(); got != 1 {
		t.Errorf("app hits after /admin/users = %d, want still 1: a denied request reached the app", got)
	}

	labels := map[string]string{
		"destination_workload":           "web",
		"destination_workload_namespace": "shop",
		"reporter":                       "destination",
	}
	ok := with(labels, "response_code", "200")
	denied := with(labels, "response_code", "403")
	waitMetric(t, cfg.metricsAddr, "istio_requests_total", ok, 1, 10*time.Second)
	text := waitMetric(t, cfg.metricsAddr, "istio_requests_total", denied, 1, 10*time.Second)

	// Every Istio label is there, with a value.
	for _, l := range []string{"reporter", "source_workload", "source_workload_namespace", "source_principal",
		"destination_workload", "destination_workload_namespace", "destination_service",
		"destination_service_name", "destination_service_namespace", "request_protocol",
		"response_code", "grpc_response_status", "response_flags", "connection_security_policy"} {
		if !strings.Contains(grepLines(text, "istio_requests_total{"), l+"=") {
			t.Errorf("istio_requests_total has no label %s:\n%s", l, grepLines(text, "istio_requests_total{"))
		}
	}
	// The histograms count both requests too.
	for _, h := range []string{"istio_request_duration_milliseconds_count", "istio_request_bytes_count", "istio_response_bytes_count"} {
		waitMetric(t, cfg.metricsAddr, h, labels, 2, 5*time.Second)
	}

	// The access log rule writes one JSON line per request to the mixer's
	// stdout.
	m.WaitOutput(t, "/admin/users", 5*time.Second)

	// SIGTERM: both stop cleanly.
	if err := px.Stop(15 * time.Second); err != nil {
		t.Errorf("proxy did not stop cleanly on SIGTERM: %v", err)
	}
	if err := m.Stop(15 * time.Second); err != nil {
		t.Errorf("mixer did not stop cleanly on SIGTERM: %v", err)
	}
}

// with returns a copy of m with k=v added.
func with(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}
