package prometheus_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/prometheus"
	"github.com/sidemix/sidemix/adapters/template"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// create makes a handler from params, in which %s stands for addr.
func create(t testing.TB, ctx context.Context, set adapters.Settings, params, addr string) (adapters.Reporter, error) {
	t.Helper()
	f := prometheus.Factory()
	cfg, err := configtest.Decode(f, fmt.Appendf(nil, params, addr))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := f.Create(ctx, set, cfg)
	if err != nil {
		return nil, err
	}
	return h.(adapters.Reporter), nil
}

func mustCreate(t testing.TB, set adapters.Settings, params, addr string) adapters.Reporter {
	t.Helper()
	h, err := create(t, context.Background(), set, params, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func report(t testing.TB, h adapters.Reporter, insts ...template.Instance) {
	t.Helper()
	if err := h.Report(context.Background(), insts); err != nil {
		t.Fatal(err)
	}
}

// scrape returns the sample lines served at addr, without comments.
func scrape(t testing.TB, addr string) []string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	var samples []string
	for sc := bufio.NewScanner(strings.NewReader(string(body))); sc.Scan(); {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			samples = append(samples, l)
		}
	}
	return samples
}

// having returns the samples whose line starts with prefix.
func having(samples []string, prefix string) []string {
	var out []string
	for _, s := range samples {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func expectSamples(t testing.TB, samples []string, prefix string, want ...string) {
	t.Helper()
	got := having(samples, prefix)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("samples %s*:\n got: %s\nwant: %s", prefix, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

const telemetry = `
addr: %s
namespace: istio
metrics:
- instanceName: requestcount
  name: requests_total
  description: Requests served.
  kind: COUNTER
  labelNames: [source_workload, destination_workload, response_code]
- instanceName: requestduration
  name: request_duration_milliseconds
  kind: DISTRIBUTION
  labelNames: [destination_workload]
  buckets:
    explicitBuckets: {bounds: [1, 5, 10]}
- instanceName: requestsize
  name: request_bytes
  kind: DISTRIBUTION
  buckets:
    exponentialBuckets: {numFiniteBuckets: 3, scale: 1, growthFactor: 10}
- instanceName: queuelength
  name: queue_length
  kind: GAUGE
  labelNames: [queue]
- instanceName: requestcount
  name: requests_by_code_total
  kind: COUNTER
  labelNames: [response_code]
`

func TestReportAndScrape(t *testing.T) {
	addr := freeAddr(t)
	h := mustCreate(t, adapters.Settings{Name: "prom"}, telemetry, addr)
	report(t, h,
		&template.Metric{Name: "requestcount", Value: int64(1), Dimensions: template.FieldsOf(map[string]any{
			"source_workload": "productpage", "destination_workload": "reviews", "response_code": int64(200),
			"ignored": "not a label",
		})},
		&template.Metric{Name: "requestcount", Value: int64(2), Dimensions: template.FieldsOf(map[string]any{
			"destination_workload": "reviews", "response_code": int64(200),
		})},
		&template.Metric{Name: "requestcount", Value: 0.5, Dimensions: template.FieldsOf(map[string]any{
			"source_workload": "productpage", "destination_workload": "reviews", "response_code": int64(200),
		})},
		&template.Metric{Name: "requestduration", Value: 4 * time.Millisecond, Dimensions: template.FieldsOf(map[string]any{"destination_workload": "reviews"})},
		&template.Metric{Name: "requestduration", Value: 7500 * time.Microsecond, Dimensions: template.FieldsOf(map[string]any{"destination_workload": "reviews"})},
		&template.Metric{Name: "requestduration", Value: time.Second, Dimensions: template.FieldsOf(map[string]any{"destination_workload": "reviews"})},
		&template.Metric{Name: "requestsize", Value: int64(50)},
		&template.Metric{Name: "requestsize", Value: "1e6"},
		&template.Metric{Name: "queuelength", Value: int64(7), Dimensions: template.FieldsOf(map[string]any{"queue": "a"})},
		&template.Metric{Name: "queuelength", Value: int64(3), Dimensions: template.FieldsOf(map[string]any{"queue": "a"})},
	)
	samples := scrape(t, addr)
	expectSamples(t, samples, "istio_requests_total",
		`istio_requests_total{destination_workload="reviews",response_code="200",source_workload="productpage"} 1.5`,
		`istio_requests_total{destination_workload="reviews",response_code="200",source_workload="unknown"} 2`,
	)
	expectSamples(t, samples, "istio_requests_by_code_total",
		`istio_requests_by_code_total{response_code="200"} 3.5`,
	)
	// Durations count in milliseconds.
	expectSamples(t, samples, "istio_request_duration_milliseconds",
		`istio_request_duration_milliseconds_bucket{destination_workload="reviews",le="1"} 0`,
		`istio_request_duration_milliseconds_bucket{destination_workload="reviews",le="5"} 1`,
		`istio_request_duration_milliseconds_bucket{destination_workload="reviews",le="10"} 2`,
		`istio_request_duration_milliseconds_bucket{destination_workload="reviews",le="+Inf"} 3`,
		`istio_request_duration_milliseconds_sum{destination_workload="reviews"} 1011.5`,
		`istio_request_duration_milliseconds_count{destination_workload="reviews"} 3`,
	)
	// Three finite buckets have four bounds, as in Istio.
	expectSamples(t, samples, "istio_request_bytes_bucket",
		`istio_request_bytes_bucket{le="1"} 0`,
		`istio_request_bytes_bucket{le="10"} 0`,
		`istio_request_bytes_bucket{le="100"} 1`,
		`istio_request_bytes_bucket{le="1000"} 1`,
		`istio_request_bytes_bucket{le="+Inf"} 2`,
	)
	expectSamples(t, samples, "istio_queue_length", `istio_queue_length{queue="a"} 3`)
}

func TestReportSkipsWhatItCannotRecord(t *testing.T) {
	addr := freeAddr(t)
	reg := prom.NewRegistry()
	h := mustCreate(t, adapters.Settings{Name: "prom", Registerer: reg}, telemetry, addr)
	good := &template.Metric{Name: "requestcount", Value: int64(1), Dimensions: template.FieldsOf(map[string]any{"response_code": int64(503)})}
	report(t, h,
		&template.Metric{Name: "nosuchinstance", Value: int64(1)},
		&template.LogEntry{Name: "requestcount"},
		nil,
		&template.Metric{Name: "requestcount", Value: "many"},
		&template.Metric{Name: "requestcount", Value: true},
		&template.Metric{Name: "requestcount", Value: int64(-1)},
		&template.Metric{Name: "queuelength", Value: int64(1), Dimensions: template.FieldsOf(map[string]any{"queue": "\xff"})},
		good,
	)
	expectSamples(t, scrape(t, addr), "istio_requests_total",
		`istio_requests_total{destination_workload="unknown",response_code="503",source_workload="unknown"} 1`)
	for reason, want := range map[string]float64{
		"unknown_instance": 1,
		"wrong_template":   2,
		"bad_value":        4, // two values that are not numbers, each fed to two counters
		"bad_labels":       1,
	} {
		got := metrictest.Value(t, reg, "sidemix_prometheus_dropped_total", map[string]string{"handler": "prom", "reason": reason})
		if got != want {
			t.Errorf("dropped{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

const counterOnly = `
addr: %s
metrics:
- instanceName: requestcount
  name: requests_total
  kind: COUNTER
  labelNames: [code]
`

func TestReloadKeepsCountsAndListener(t *testing.T) {
	addr := freeAddr(t)
	ctx := context.Background()
	inst := &template.Metric{Name: "requestcount", Value: int64(5), Dimensions: template.FieldsOf(map[string]any{"code": int64(200)})}

	old := mustCreate(t, adapters.Settings{Name: "prom"}, counterOnly, addr)
	report(t, old, inst)
	// Keep one connection open: it must survive the reload, proving the
	// listener did.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	get := func() {
		t.Helper()
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get()

	// The mixer creates the next snapshot's handler, then closes the old.
	cur := mustCreate(t, adapters.Settings{Name: "prom"}, counterOnly, addr)
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	report(t, cur, inst)
	get()
	expectSamples(t, scrape(t, addr), "requests_total", `requests_total{code="200"} 10`)

	// A reload that redefines the metric starts it afresh.
	next := mustCreate(t, adapters.Settings{Name: "prom"}, `
addr: %s
metrics:
- instanceName: requestcount
  name: requests_total
  kind: COUNTER
  labelNames: [code, method]
`, addr)
	if err := cur.Close(ctx); err != nil {
		t.Fatal(err)
	}
	report(t, next, inst)
	expectSamples(t, scrape(t, addr), "requests_total", `requests_total{code="200",method="unknown"} 5`)
	get()
}

func TestHandlersShareAnAddr(t *testing.T) {
	addr := freeAddr(t)
	ctx := context.Background()
	a := mustCreate(t, adapters.Settings{Name: "a"}, counterOnly, addr)
	b := mustCreate(t, adapters.Settings{Name: "b"}, `
addr: %s
metrics:
- {instanceName: connections, kind: GAUGE}
`, addr)
	report(t, a, &template.Metric{Name: "requestcount", Value: int64(1), Dimensions: template.FieldsOf(map[string]any{"code": "200"})})
	report(t, b, &template.Metric{Name: "connections", Value: int64(4)})
	samples := scrape(t, addr)
	expectSamples(t, samples, "requests_total", `requests_total{code="200"} 1`)
	expectSamples(t, samples, "connections", `connections 4`)

	// Another handler may not redefine a's metric on the same endpoint.
	_, err := create(t, ctx, adapters.Settings{Name: "c"}, `
addr: %s
metrics:
- {instanceName: x, name: requests_total, kind: GAUGE}
- {instanceName: y, name: fresh, kind: GAUGE}
`, addr)
	want := fmt.Sprintf(`prometheus: metric requests_total is already served at %s by handler "a" with another definition`, addr)
	if err == nil || err.Error() != want {
		t.Fatalf("Create = %v, want %s", err, want)
	}

	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	samples = scrape(t, addr)
	expectSamples(t, samples, "requests_total")
	expectSamples(t, samples, "fresh") // the failed Create left nothing behind
	expectSamples(t, samples, "connections", `connections 4`)
}

func TestClosingTheLastHandlerFreesThePort(t *testing.T) {
	addr := freeAddr(t)
	ctx := context.Background()
	h, err := create(t, ctx, adapters.Settings{Name: "prom"}, counterOnly, addr)
	if err != nil {
		t.Fatal(err)
	}
	scrape(t, addr)
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held after Close: %v", err)
	}
	ln.Close()
}

func TestCreateWaitsForABusyPort(t *testing.T) {
	addr := freeAddr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	released := time.AfterFunc(300*time.Millisecond, func() { ln.Close() })
	defer released.Stop()
	h := mustCreate(t, adapters.Settings{Name: "prom"}, counterOnly, addr)
	report(t, h, &template.Metric{Name: "requestcount", Value: int64(1)})
	expectSamples(t, scrape(t, addr), "requests_total", `requests_total{code="unknown"} 1`)
}

func TestCreateFailsOnAPortThatStaysBusy(t *testing.T) {
	addr := freeAddr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = create(t, ctx, adapters.Settings{Name: "prom"}, counterOnly, addr)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Create = %v, want address already in use", err)
	}
}

func TestNoListener(t *testing.T) {
	h := mustCreate(t, adapters.Settings{Name: "prom"}, counterOnly, `""`)
	report(t, h, &template.Metric{Name: "requestcount", Value: int64(2), Dimensions: template.FieldsOf(map[string]any{"code": "200"})})
	g := h.(interface{ Gatherer() prom.Gatherer }).Gatherer()
	if got := metrictest.Value(t, g, "requests_total", map[string]string{"code": "200"}); got != 2 {
		t.Errorf("requests_total = %v, want 2", got)
	}
}

func ExampleFactory() {
	// A free port; in production addr defaults to 127.0.0.1:42422.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()

	f := prometheus.Factory()
	cfg, _ := configtest.Decode(f, []byte(`
addr: `+addr+`
metrics:
- instanceName: requestcount
  name: requests_total
  kind: COUNTER
  labelNames: [response_code]
`))
	h, err := f.Create(context.Background(), adapters.Settings{Name: "prom"}, cfg)
	if err != nil {
		panic(err)
	}
	defer h.Close(context.Background())
	h.(adapters.Reporter).Report(context.Background(), []template.Instance{
		&template.Metric{Name: "requestcount", Value: int64(1), Dimensions: template.FieldsOf(map[string]any{"response_code": int64(200)})},
		&template.Metric{Name: "requestcount", Value: int64(1), Dimensions: template.FieldsOf(map[string]any{"response_code": int64(200)})},
	})

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if strings.Contains(sc.Text(), "requests_total") {
			fmt.Println(sc.Text())
		}
	}
	// Output:
	// # HELP requests_total requests_total
	// # TYPE requests_total counter
	// requests_total{response_code="200"} 2
}

func TestConcurrentReloadsAndScrapes(t *testing.T) {
	addr := freeAddr(t)
	ctx := context.Background()
	// One handler stays, so the endpoint lives throughout.
	base := mustCreate(t, adapters.Settings{Name: "base"}, counterOnly, addr)
	done := make(chan struct{})
	var scrapes sync.WaitGroup
	scrapes.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				params := fmt.Sprintf("addr: %%s\nmetrics:\n- {instanceName: g, name: gauge_%d, kind: GAUGE, labelNames: [v%d]}\n", i, j%2)
				h, err := create(t, ctx, adapters.Settings{Name: fmt.Sprint("h", i)}, params, addr)
				if err != nil {
					t.Error(err)
					return
				}
				if err := h.Report(ctx, []template.Instance{&template.Metric{Name: "g", Value: float64(j)}}); err != nil {
					t.Error(err)
				}
				if err := h.Close(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	report(t, base, &template.Metric{Name: "requestcount", Value: int64(1)})
	close(done)
	scrapes.Wait()
	samples := scrape(t, addr)
	expectSamples(t, samples, "gauge_")
	expectSamples(t, samples, "requests_total", `requests_total{code="unknown"} 1`)
}

// TestSharedDimensions: instances that share one dimensions Fields (as
// the policy builds them for Istio's metrics of one request), one after
// the other, into metrics with the same labels, other labels and the same
// labels again, the next request's of the same layout, and one of another
// layout, are each recorded under their own label values.
func TestSharedDimensions(t *testing.T) {
	addr := freeAddr(t)
	h := mustCreate(t, adapters.Settings{Name: "prom"}, `
addr: %s
metrics:
- {instanceName: a, name: a_total, kind: COUNTER, labelNames: [src, dst]}
- {instanceName: b, name: b_total, kind: COUNTER, labelNames: [dst]}
- {instanceName: c, name: c_total, kind: COUNTER, labelNames: [src, dst]}
- {instanceName: a, name: a2_total, kind: COUNTER, labelNames: [src, dst]}
`, addr)
	layout, err := template.NewLayout("src", "dst")
	if err != nil {
		t.Fatal(err)
	}
	var insts []template.Instance
	for _, req := range []template.Fields{
		template.FieldsIn(layout, map[string]any{"src": "x", "dst": "y"}),
		template.FieldsIn(layout, map[string]any{"src": "p", "dst": "q"}),
		template.FieldsIn(layout, map[string]any{"src": "x", "dst": "y"}),
		template.FieldsOf(map[string]any{"dst": "y"}),
		template.FieldsIn(layout, map[string]any{"src": "x", "dst": "y"}),
	} {
		for _, name := range []string{"a", "b", "c"} {
			insts = append(insts, &template.Metric{Name: name, Value: int64(1), Dimensions: req})
		}
	}
	report(t, h, insts...)
	samples := scrape(t, addr)
	for _, m := range []string{"a_total", "c_total", "a2_total"} {
		expectSamples(t, samples, m+"{", m+`{dst="q",src="p"} 1`, m+`{dst="y",src="unknown"} 1`, m+`{dst="y",src="x"} 3`)
	}
	expectSamples(t, samples, "b_total{", `b_total{dst="q"} 1`, `b_total{dst="y"} 4`)
}
