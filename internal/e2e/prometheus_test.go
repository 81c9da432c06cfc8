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
