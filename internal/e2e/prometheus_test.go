package e2e

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// TestPrometheusSeesTheMesh runs checkouts through the demo chain product →
// invoice → notification, each behind a sidecar, and reads the Istio metrics
// back from a real Prometheus server scraping the mixer's prometheus
// handler: the request rate at invoice, and per-edge request counts equal to
// the requests sent.
func TestPrometheusSeesTheMesh(t *testing.T) {
	cfg := newConfig(t, nil)
	prom := testenv.StartPrometheus(t, cfg.metricsAddr)
	m := startMixer(t, cfg, "", "")
	shop := startShopChain(t, m.grpc)
	prom.WaitTargetsUp(t, 30*time.Second)

	// Two rounds: rate() needs the counter to grow between two scrapes,
	// and a series scraped for the first time only starts it.
	const first, second = 7, 5
	for range first {
		shop.checkout(t)
	}
	waitEdges(t, prom, first)
	for range second {
		shop.checkout(t)
	}
	waitEdges(t, prom, first+second)

	const rateAtInvoice = `sum(rate(istio_requests_total{destination_workload="invoice"}[1m])) > 0`
	v := prom.Query(t, rateAtInvoice)
	if len(v) != 1 || !(v[0].Value > 0) {
		t.Errorf("%s = %v, want one positive sample", rateAtInvoice, v)
	}
	// The callers' sidecars report each hop too (reporter="source"). They
	// know the callee's service, not its workload (destination_workload
	// is "unknown" there), so their edges go by destination service name.
	bySource := byEdge(t, prom, "destination_service_name",
		`sum by (source_workload, destination_service_name) (istio_requests_total{reporter="source"})`)
	want := map[string]float64{"product → invoice": first + second, "invoice → notification": first + second}
	if !maps.Equal(bySource, want) {
		t.Errorf("reporter=source edges = %v, want %v", bySource, want)
	}
	total := prom.Query(t, `sum(istio_requests_total)`)
	if len(total) != 1 || total[0].Value != 5*(first+second) {
		t.Errorf("sum(istio_requests_total) = %v, want %d: 3 destination and 2 source reports per checkout", total, 5*(first+second))
	}
	// The duration histogram counted every request too.
	dur := byEdge(t, prom, "destination_workload", `sum by (source_workload, destination_workload) (istio_request_duration_milliseconds_count{reporter="destination",response_code="201"})`)
	if dur["product → invoice"] != first+second {
		t.Errorf("duration count of product → invoice with 201 = %v, want %d (all: %v)", dur["product → invoice"], first+second, dur)
	}
}

// waitEdges waits until Prometheus has scraped n requests on every edge of
// the chain as reported by the callees' sidecars.
func waitEdges(t *testing.T, prom *testenv.Prometheus, n float64) {
	t.Helper()
	const q = `sum by (source_workload, destination_workload) (istio_requests_total{reporter="destination"})`
	want := map[string]float64{"unknown → product": n, "product → invoice": n, "invoice → notification": n}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		v, err := prom.TryQuery(q)
		if err != nil {
			return false, err.Error()
		}
		got := edges(v, "destination_workload")
		return maps.Equal(got, want), fmt.Sprintf("%s = %v, want %v", q, got, want)
	})
}

func byEdge(t *testing.T, prom *testenv.Prometheus, dest, q string) map[string]float64 {
	t.Helper()
	return edges(prom.Query(t, q), dest)
}

// edges keys a vector by "source_workload → <the dest label>".
func edges(v []testenv.Sample, dest string) map[string]float64 {
	out := make(map[string]float64, len(v))
	for _, s := range v {
		out[s.Metric["source_workload"]+" → "+s.Metric[dest]] += s.Value
	}
	return out
}

// TestPrometheusSeriesCapAndExpiry runs the real mixer with a metric
// labelled by request path (unbounded in real life), capped at 3 series
// that expire after 4s without an update, and watches a real Prometheus and
// the mixer's self metrics: the cap holds, refusals are counted, and stale
// series leave the endpoint without any scrape of it, making room again.
func TestPrometheusSeriesCapAndExpiry(t *testing.T) {
	metricsAddr := testenv.FreeAddr(t)
	cfg := newBareConfig(t, map[string]string{"paths.yaml": fmt.Sprintf(`
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: prom}
spec:
  adapter: prometheus
  params:
    addr: %s
    namespace: mesh
    constLabels: {cluster: test}
    maxSeries: 3
    metricsExpirationPolicy: {metricsExpiryDuration: 4s, expiryCheckIntervalDuration: 100ms}
    metrics:
    - {instanceName: hits, name: path_requests_total, kind: COUNTER, labelNames: [path]}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: hits}
spec:
  template: metric
  params:
    value: "1"
    dimensions:
      path: default(request.path, "/")
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: hits}
spec:
  actions:
  - {handler: prom, instances: [hits]}
`, metricsAddr)})
	prom := testenv.StartPrometheus(t, metricsAddr)
	m := startMixer(t, cfg, "", "")
	a := newApp(t)
	px := startProxy(t, m.grpc, a.addr())
	prom.WaitTargetsUp(t, 30*time.Second)

	selfMetric := func(name string) float64 {
		text, err := scrape(m.admin)
		if err != nil {
			t.Fatal(err)
		}
		return sample(text, name, map[string]string{"handler": "prom", "metric": "mesh_path_requests_total"})
	}
	waitSelf := func(name string, want float64) {
		t.Helper()
		testenv.Eventually(t, 15*time.Second, func() (bool, string) {
			got := selfMetric(name)
			return got == want, fmt.Sprintf("%s = %v, want %v", name, got, want)
		})
	}

	// Five paths, three series: the first three reported win.
	for _, p := range []string{"/a", "/b", "/c"} {
		get(t, px.url(p))
	}
	waitSelf("sidemix_prometheus_series", 3)
	for _, p := range []string{"/d", "/e", "/a"} {
		get(t, px.url(p))
	}
	waitSelf("sidemix_prometheus_series_refused_total", 2)

	// Prometheus scrapes them before they expire.
	const q = `sum by (path, cluster) (mesh_path_requests_total)`
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		v, err := prom.TryQuery(q)
		if err != nil {
			return false, err.Error()
		}
		got := map[string]float64{}
		for _, s := range v {
			got[s.Metric["cluster"]+s.Metric["path"]] = s.Value
		}
		want := map[string]float64{"test/a": 2, "test/b": 1, "test/c": 1}
		return maps.Equal(got, want), fmt.Sprintf("%s = %v, want %v", q, got, want)
	})

	// Four quiet seconds later the sweep has removed all three; Prometheus
	// marks them stale at its next scrape, so they leave the query.
	waitSelf("sidemix_prometheus_series", 0)
	if got := selfMetric("sidemix_prometheus_series_expired_total"); got != 3 {
		t.Errorf("series_expired_total = %v, want 3", got)
	}
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		v, err := prom.TryQuery(q)
		return err == nil && len(v) == 0, fmt.Sprintf("%s = %v (%v), want nothing", q, v, err)
	})

	// And a path refused before gets in now.
	get(t, px.url("/e"))
	waitSelf("sidemix_prometheus_series", 1)
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		v, err := prom.TryQuery(`mesh_path_requests_total{path="/e"}`)
		return err == nil && len(v) == 1 && v[0].Value == 1, fmt.Sprintf("%v (%v)", v, err)
	})
}
