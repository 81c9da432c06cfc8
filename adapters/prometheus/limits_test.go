package prometheus_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/template"
)

// clock is a fake clock that moves only when told.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func hit(code string) *template.Metric   { return hitN(code, 1) }
func hitN(code string, n int64) *template.Metric {
	return &template.Metric{Name: "requestcount", Value: n, Dimensions: template.FieldsOf(map[string]any{"code": code})}
}

// self reads one of the handler's self metrics.
func self(t *testing.T, reg *prom.Registry, name, handler, metric string) float64 {
	t.Helper()
	return metrictest.Value(t, reg, name, map[string]string{"handler": handler, "metric": metric})
}

// waitFor polls cond (which must not scrape the endpoint) for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSeriesCap(t *testing.T) {
	addr := freeAddr(t)
	reg := prom.NewRegistry()
	h := mustCreate(t, adapters.Settings{Name: "prom", Registerer: reg}, `
addr: %s
maxSeries: 2
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: [code]}
- {instanceName: requestcount, name: requests_one_total, kind: COUNTER, labelNames: [code], maxSeries: 1}
- {instanceName: requestcount, name: requests_any_total, kind: COUNTER, labelNames: [code], maxSeries: 0}
- instanceName: requestcount
  name: requests_hist
  kind: DISTRIBUTION
  labelNames: [code]
  buckets: {explicitBuckets: {bounds: [1, 2, 3]}}
`, addr)
	report(t, h, hit("200"), hit("404"), hit("500"), hit("503"), hit("200"))
	samples := scrape(t, addr)
	expectSamples(t, samples, "requests_total",
		`requests_total{code="200"} 2`, // an existing series still counts at the cap
		`requests_total{code="404"} 1`,
	)
	expectSamples(t, samples, "requests_one_total", `requests_one_total{code="200"} 2`)
	expectSamples(t, samples, "requests_any_total",
		`requests_any_total{code="200"} 2`,
		`requests_any_total{code="404"} 1`,
		`requests_any_total{code="500"} 1`,
		`requests_any_total{code="503"} 1`,
	)
	// A histogram's series is a label combination, its buckets included.
	expectSamples(t, samples, "requests_hist_count",
		`requests_hist_count{code="200"} 2`,
		`requests_hist_count{code="404"} 1`,
	)
	for metric, want := range map[string][2]float64{ // refused, series
		"requests_total":     {2, 2},
		"requests_one_total": {3, 1},
		"requests_any_total": {0, 4},
		"requests_hist":      {2, 2},
	} {
		if got := self(t, reg, "sidemix_prometheus_series_refused_total", "prom", metric); got != want[0] {
			t.Errorf("series_refused_total{metric=%q} = %v, want %v", metric, got, want[0])
		}
		if got := self(t, reg, "sidemix_prometheus_series", "prom", metric); got != want[1] {
			t.Errorf("series{metric=%q} = %v, want %v", metric, got, want[1])
		}
	}
	// Refusals are not drops: the instance was recorded elsewhere.
	if got := metrictest.Value(t, reg, "sidemix_prometheus_dropped_total", map[string]string{"handler": "prom"}); got != 0 {
		t.Errorf("dropped_total = %v, want 0", got)
	}
}

const expiring = `
addr: %s
maxSeries: 2
metricsExpirationPolicy:
  metricsExpiryDuration: 1m
  expiryCheckIntervalDuration: 2ms
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: [code]}
`

func TestExpiryWithoutScrapes(t *testing.T) {
	addr := freeAddr(t)
	reg := prom.NewRegistry()
	clk := newClock()
	h := mustCreate(t, adapters.Settings{Name: "prom", Registerer: reg, Now: clk.Now}, expiring, addr)
	series := func() float64 { return self(t, reg, "sidemix_prometheus_series", "prom", "requests_total") }
	expired := func() float64 {
		return self(t, reg, "sidemix_prometheus_series_expired_total", "prom", "requests_total")
	}

	report(t, h, hit("200"), hit("404"))
	report(t, h, hit("500")) // over the cap
	if got := self(t, reg, "sidemix_prometheus_series_refused_total", "prom", "requests_total"); got != 1 {
		t.Fatalf("refused = %v, want 1", got)
	}
	clk.Advance(40 * time.Second)
	report(t, h, hit("200")) // keeps 200 alive
	time.Sleep(20 * time.Millisecond)
	if got := series(); got != 2 {
		t.Fatalf("series after 40s = %v, want 2: nothing is a minute old yet", got)
	}

	// 404 is now 70s old, 200 30s. Nobody scrapes: the sweep alone
	// removes it.
	clk.Advance(30 * time.Second)
	waitFor(t, "404 to expire", func() bool { return series() == 1 })
	if got := expired(); got != 1 {
		t.Errorf("expired_total = %v, want 1", got)
	}

	// The removed series freed its place under the cap.
	report(t, h, hit("500"))
	samples := scrape(t, addr)
	expectSamples(t, samples, "requests_total",
		`requests_total{code="200"} 2`,
		`requests_total{code="500"} 1`,
	)

	// A series that comes back after expiring starts from zero, as it
	// would after a restart; rate() treats it as a counter reset.
	clk.Advance(2 * time.Minute)
	waitFor(t, "everything to expire", func() bool { return series() == 0 })
	report(t, h, hit("200"))
	expectSamples(t, scrape(t, addr), "requests_total", `requests_total{code="200"} 1`)
	if got := expired(); got != 3 {
		t.Errorf("expired_total = %v, want 3", got)
	}
}

func TestNoExpiryByDefault(t *testing.T) {
	addr := freeAddr(t)
	clk := newClock()
	h := mustCreate(t, adapters.Settings{Name: "prom", Now: clk.Now}, counterOnly, addr)
	report(t, h, hit("200"))
	clk.Advance(1000 * time.Hour)
	time.Sleep(10 * time.Millisecond)
	expectSamples(t, scrape(t, addr), "requests_total", `requests_total{code="200"} 1`)
}

// A reload keeps counts while its new cap and expiry apply.
func TestReloadAppliesNewLimits(t *testing.T) {
	addr := freeAddr(t)
	ctx := context.Background()
	reg := prom.NewRegistry()
	clk := newClock()
	set := adapters.Settings{Name: "prom", Registerer: reg, Now: clk.Now}
	series := func() float64 { return self(t, reg, "sidemix_prometheus_series", "prom", "requests_total") }

	old := mustCreate(t, set, `
addr: %s
maxSeries: 1
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: [code]}
`, addr)
	report(t, old, hitN("200", 5), hit("404"))
	if got := series(); got != 1 {
		t.Fatalf("series = %v, want 1", got)
	}

	cur := mustCreate(t, set, `
addr: %s
maxSeries: 3
metricsExpirationPolicy: {metricsExpiryDuration: 1m, expiryCheckIntervalDuration: 2ms}
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: [code]}
`, addr)
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	report(t, cur, hit("200"), hit("404"), hit("500"), hit("503"))
	expectSamples(t, scrape(t, addr), "requests_total",
		`requests_total{code="200"} 6`,
		`requests_total{code="404"} 1`,
		`requests_total{code="500"} 1`,
	)
	if got := series(); got != 3 {
		t.Fatalf("series after reload = %v, want 3 (the old handler's close must not drop the gauge)", got)
	}
	if got := self(t, reg, "sidemix_prometheus_series_refused_total", "prom", "requests_total"); got != 2 {
		t.Errorf("refused = %v, want 2 (404 before the reload, 503 after)", got)
	}

	// Expiry applies to series the predecessor created.
	clk.Advance(90 * time.Second)
	waitFor(t, "old series to expire", func() bool { return series() == 0 })
	report(t, cur, hit("503"))
	expectSamples(t, scrape(t, addr), "requests_total", `requests_total{code="503"} 1`)

	// Closing the last handler removes its series gauge.
	if err := cur.Close(ctx); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == "sidemix_prometheus_series" && len(mf.GetMetric()) > 0 {
			t.Errorf("sidemix_prometheus_series still has %d series after Close", len(mf.GetMetric()))
		}
	}
}

// A reload that redefines a metric shows the new family's count once the
// predecessor is gone.
func TestSeriesGaugeFollowsARedefinedMetric(t *testing.T) {
	addr := freeAddr(t)
	ctx := context.Background()
	reg := prom.NewRegistry()
	set := adapters.Settings{Name: "prom", Registerer: reg}
	old := mustCreate(t, set, counterOnly, addr)
	report(t, old, hit("200"), hit("404"))
	cur := mustCreate(t, set, `
addr: %s
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: [code, method]}
`, addr)
	report(t, old, hit("500")) // into the replaced family
	report(t, cur, hit("200"))
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := self(t, reg, "sidemix_prometheus_series", "prom", "requests_total"); got != 1 {
		t.Errorf("series = %v, want 1", got)
	}
}

func TestNamespaceAndConstLabels(t *testing.T) {
	addr := freeAddr(t)
	ctx := context.Background()
	params := `
addr: %s
namespace: istio
constLabels: {mesh: prod, cluster: eu-1}
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: [code]}
- instanceName: requestcount
  name: request_sizes
  kind: DISTRIBUTION
  buckets: {explicitBuckets: {bounds: [1]}}
`
	h := mustCreate(t, adapters.Settings{Name: "prom"}, params, addr)
	report(t, h, hit("200"))
	samples := scrape(t, addr)
	expectSamples(t, samples, "istio_requests_total", `istio_requests_total{cluster="eu-1",code="200",mesh="prod"} 1`)
	expectSamples(t, samples, "istio_request_sizes_count", `istio_request_sizes_count{cluster="eu-1",mesh="prod"} 1`)

	// Changing a const label is a new definition: the series start afresh
	// under the new labels, never mixed with the old.
	next := mustCreate(t, adapters.Settings{Name: "prom"}, `
addr: %s
namespace: istio
constLabels: {mesh: staging}
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: [code]}
`, addr)
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	report(t, next, hit("200"))
	samples = scrape(t, addr)
	expectSamples(t, samples, "istio_requests_total", `istio_requests_total{code="200",mesh="staging"} 1`)
	expectSamples(t, samples, "istio_request_sizes")
}

// Reports, sweeps, scrapes and reloads at once, for -race.
func TestConcurrentReportsAndSweeps(t *testing.T) {
	addr := freeAddr(t)
	ctx := context.Background()
	clk := newClock()
	params := `
addr: %s
maxSeries: 50
metricsExpirationPolicy: {metricsExpiryDuration: 1s, expiryCheckIntervalDuration: 1ms}
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: [code]}
`
	h := mustCreate(t, adapters.Settings{Name: "prom", Now: clk.Now}, params, addr)
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // the clock races ahead, expiring series all the time
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				clk.Advance(300 * time.Millisecond)
			}
		}
	})
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				scrape(t, addr)
			}
		}
	})
	bg.Go(func() { // reloads come and go beside h
		for {
			select {
			case <-stop:
				return
			default:
				r, err := create(t, ctx, adapters.Settings{Name: "prom", Now: clk.Now}, params, addr)
				if err != nil {
					t.Error(err)
					return
				}
				r.Report(ctx, []template.Instance{hit("reload")})
				r.Close(ctx)
			}
		}
	})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 500 {
				h.Report(ctx, []template.Instance{hit(fmt.Sprint("c", i))})
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	// Whatever is left is at most one series per code.
	samples := having(scrape(t, addr), "requests_total")
	if len(samples) > 9 {
		t.Errorf("%d series, want at most 9:\n%v", len(samples), samples)
	}
}
