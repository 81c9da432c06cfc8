package memquota_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/fakeclock"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/memquota"
	"github.com/sidemix/sidemix/adapters/template"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, memquota.Factory(), []configtest.Case{
		{File: "full.yaml"},
		{File: "fixed.yaml"},
		{File: "windows.bad.yaml", Want: "quotas[0].bucketDuration: must be less than validDuration (1s), got 1s\n" +
			"quotas[0].windows[0].bucketDuration: must be less than validDuration (1m0s), got 2m0s\n" +
			"quotas[0].windows[2].bucketDuration: 1ms cuts validDuration 1h0m0s into more than 1000 buckets\n" +
			"quotas[0].overrides[0].validDuration: 1m0s is also the length of quotas[0].windows[1], which the override keeps (give the override its own windows)\n" +
			`rateLimitAlgorithm: unknown algorithm "SLIDING_LOG" (want ROLLING_WINDOW or FIXED_WINDOW)`},
		{File: "empty.bad.yaml", Want: "quotas: at least one quota is required"},
		{File: "quota.bad.yaml", Want: "quotas[0].maxAmount: -1 is negative\n" +
			"quotas[0].validDuration: must be positive, got 0s\n" +
			"quotas[1].name: required\n" +
			`quotas[2].name: "requestcount" is already the name of quotas[0]` + "\n" +
			"quotas[2].overrides[0].dimensions: required (an override without dimensions would replace the quota's limit)\n" +
			"quotas[2].overrides[1].maxAmount: -2 is negative\n" +
			"quotas[2].overrides[1].validDuration: -1s is negative\n" +
			"minDeduplicationDuration: -1ms is negative"},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 3: field max_amount not found in type quota.Quota"},
	})
}

func newAllocator(t *testing.T, set adapters.Settings, params string) adapters.QuotaAllocator {
	t.Helper()
	f := memquota.Factory()
	cfg, err := configtest.Decode(f, []byte(params))
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.Create(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h.(adapters.QuotaAllocator)
}

// allocator is a test's view of a handler: alloc fails the test on error.
type allocator struct {
	t *testing.T
	h adapters.QuotaAllocator
}

func (a allocator) alloc(q *template.Quota, args adapters.QuotaArgs) adapters.QuotaResult {
	a.t.Helper()
	r, err := a.h.Allocate(context.Background(), q, args)
	if err != nil {
		a.t.Fatal(err)
	}
	return r
}

func (a allocator) expect(q *template.Quota, args adapters.QuotaArgs, amount int64, valid time.Duration) {
	a.t.Helper()
	got := a.alloc(q, args)
	if got.Amount != amount || got.ValidDuration != valid {
		a.t.Errorf("Allocate(%v, %+v) = %+v, want amount %d valid for %v", q.Dimensions, args, got, amount, valid)
	}
}

const oneQuota = `
quotas:
- name: rq
  maxAmount: 3
  validDuration: 1s
`

func TestRollingWindow(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute)
	a := allocator{t, newAllocator(t, adapters.Settings{Now: clk.Now}, oneQuota)}
	q := &template.Quota{Name: "rq", Dimensions: map[string]any{"source": "a"}}
	one := adapters.QuotaArgs{Amount: 1}

	// Buckets are 50ms wide; usage counts until one bucket after the
	// second is over, so what was taken at t0 frees at t0+1.05s.
	a.expect(q, adapters.QuotaArgs{Amount: 2}, 2, time.Second)
	clk.Advance(500 * time.Millisecond)
	a.expect(q, one, 1, time.Second)
	clk.Advance(100 * time.Millisecond) // t0+0.6s
	a.expect(q, one, 0, 450*time.Millisecond)
	// Three units need the bucket of t0+0.5s to go as well.
	a.expect(q, adapters.QuotaArgs{Amount: 3}, 0, 950*time.Millisecond)
	clk.Advance(400 * time.Millisecond) // t0+1s: still held
	a.expect(q, one, 0, 50*time.Millisecond)
	clk.Advance(50 * time.Millisecond) // t0+1.05s
	a.expect(q, adapters.QuotaArgs{Amount: 2}, 2, time.Second)
	a.expect(q, one, 0, 500*time.Millisecond)
}

func TestDeniedChargesNothingAndBestEffort(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute)
	a := allocator{t, newAllocator(t, adapters.Settings{Now: clk.Now}, `
quotas:
- name: rq
  maxAmount: 5
  validDuration: 1m
`)}
	q := &template.Quota{Name: "rq"}
	a.expect(q, adapters.QuotaArgs{Amount: 3}, 3, time.Minute)
	// 1m windows have 3s buckets: the first usage frees at t0+63s.
	a.expect(q, adapters.QuotaArgs{Amount: 3}, 0, 63*time.Second)
	clk.Advance(time.Second)
	a.expect(q, adapters.QuotaArgs{Amount: 4, BestEffort: true}, 2, time.Minute)
	a.expect(q, adapters.QuotaArgs{Amount: 1, BestEffort: true}, 0, 62*time.Second)
	// More than the limit can never be granted at once.
	a.expect(&template.Quota{Name: "rq", Dimensions: map[string]any{"k": "other"}}, adapters.QuotaArgs{Amount: 6}, 0, time.Minute)
	// Zero is trivially granted.
	a.expect(q, adapters.QuotaArgs{Amount: 0}, 0, time.Minute)
}

func TestDimensionsAndOverrides(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute)
	a := allocator{t, newAllocator(t, adapters.Settings{Now: clk.Now}, `
quotas:
- name: rq
  maxAmount: 4
  validDuration: 10s
  overrides:
  - dimensions: {destination: ratings}
    maxAmount: 1
  - dimensions: {destination: ratings, source: admin}
    maxAmount: 100
  - dimensions: {code: "429", ip: 10.0.0.1}
    maxAmount: 2
    validDuration: 1m
`)}
	big := adapters.QuotaArgs{Amount: 100, BestEffort: true}
	for _, tt := range []struct {
		dims  map[string]any
		want  int64
		valid time.Duration
	}{
		{nil, 4, 10 * time.Second},
		{map[string]any{"destination": "reviews"}, 4, 10 * time.Second},
		{map[string]any{"destination": "ratings"}, 1, 10 * time.Second},
		// The first matching override wins, however specific a later one is.
		{map[string]any{"destination": "ratings", "source": "admin"}, 1, 10 * time.Second},
		// Values compare in their text form; unset validDuration would be the quota's.
		{map[string]any{"code": int64(429), "ip": []byte{10, 0, 0, 1}, "extra": true}, 2, time.Minute},
		{map[string]any{"code": int64(429)}, 4, 10 * time.Second},
	} {
		a.expect(&template.Quota{Name: "rq", Dimensions: tt.dims}, big, tt.want, tt.valid)
	}
	// Each set of dimension values is its own counter; map order is
	// irrelevant to which.
	a.expect(&template.Quota{Name: "rq", Dimensions: map[string]any{"destination": "reviews"}}, big, 0, 10500*time.Millisecond)
	a.expect(&template.Quota{Name: "rq", Dimensions: map[string]any{"destination": "reviews", "x": ""}}, big, 4, 10*time.Second)
}

func TestDeduplication(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute)
	a := allocator{t, newAllocator(t, adapters.Settings{Now: clk.Now}, `
minDeduplicationDuration: 2s
quotas:
- name: rq
  maxAmount: 3
  validDuration: 1m
- name: other
  maxAmount: 3
  validDuration: 1m
`)}
	q := &template.Quota{Name: "rq"}
	a.expect(q, adapters.QuotaArgs{DeduplicationID: "req-1", Amount: 2}, 2, time.Minute)
	clk.Advance(time.Second)
	// A retry is answered as the first time and charges nothing.
	a.expect(q, adapters.QuotaArgs{DeduplicationID: "req-1", Amount: 2}, 2, time.Minute)
	a.expect(q, adapters.QuotaArgs{DeduplicationID: "req-2", Amount: 1}, 1, time.Minute)
	// A denial is remembered too.
	a.expect(q, adapters.QuotaArgs{DeduplicationID: "req-3", Amount: 1}, 0, 62*time.Second)
	clk.Advance(500 * time.Millisecond)
	a.expect(q, adapters.QuotaArgs{DeduplicationID: "req-3", Amount: 1}, 0, 62*time.Second)
	// The same request drawing on another quota is charged there.
	a.expect(&template.Quota{Name: "other"}, adapters.QuotaArgs{DeduplicationID: "req-1", Amount: 2}, 2, time.Minute)
	// Past minDeduplicationDuration a repeat is a new allocation.
	clk.Advance(time.Second)
	a.expect(q, adapters.QuotaArgs{DeduplicationID: "req-1", Amount: 2}, 0, 60500*time.Millisecond)
}

func TestDeduplicationDisabled(t *testing.T) {
	a := allocator{t, newAllocator(t, adapters.Settings{Now: fakeclock.New(fakeclock.OnAMinute).Now}, "minDeduplicationDuration: 0s\n"+oneQuota)}
	q := &template.Quota{Name: "rq"}
	for _, want := range []int64{2, 1} {
		a.expect(q, adapters.QuotaArgs{DeduplicationID: "same", Amount: 2, BestEffort: true}, want, time.Second)
	}
}

func TestAllocateErrors(t *testing.T) {
	h := newAllocator(t, adapters.Settings{}, oneQuota)
	ctx := context.Background()
	if _, err := h.Allocate(ctx, &template.Quota{Name: "nope"}, adapters.QuotaArgs{Amount: 1}); err == nil {
		t.Error("Allocate of an unknown quota succeeded")
	}
	if _, err := h.Allocate(ctx, &template.Quota{Name: "rq"}, adapters.QuotaArgs{Amount: -1}); err == nil {
		t.Error("Allocate of a negative amount succeeded")
	}
	if _, err := h.Allocate(ctx, nil, adapters.QuotaArgs{Amount: 1}); err == nil {
		t.Error("Allocate of nil succeeded")
	}
}

func TestConcurrentAllocationsAreExact(t *testing.T) {
	const limit, workers, tries = 1000, 50, 100
	clk := fakeclock.New(fakeclock.OnAMinute)
	h := newAllocator(t, adapters.Settings{Now: clk.Now}, fmt.Sprintf(`
quotas:
- name: rq
  maxAmount: %d
  validDuration: 1h
`, limit))
	var granted atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range tries {
				// Several counters, so that shards really run in parallel.
				q := &template.Quota{Name: "rq", Dimensions: map[string]any{"k": int64(i % 4)}}
				r, err := h.Allocate(context.Background(), q, adapters.QuotaArgs{
					Amount:          1,
					DeduplicationID: fmt.Sprintf("%d-%d", w, i),
				})
				if err != nil {
					t.Error(err)
					return
				}
				granted.Add(r.Amount)
				if i%10 == 0 {
					clk.Advance(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	// 5000 attempts over 4 counters of 1000 each.
	if got := granted.Load(); got != 4*limit {
		t.Errorf("granted %d, want exactly %d", got, 4*limit)
	}
}

func TestSelfMetricsAndCountersSurviveReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	// The second handler is the next config's, created while the first is
	// still open: it takes over the counter, so only the first grants.
	for range 2 {
		a := allocator{t, newAllocator(t, adapters.Settings{Name: "q", Registerer: reg, Now: fakeclock.New(fakeclock.OnAMinute).Now}, oneQuota)}
		a.alloc(&template.Quota{Name: "rq"}, adapters.QuotaArgs{Amount: 3})
		a.alloc(&template.Quota{Name: "rq"}, adapters.QuotaArgs{Amount: 3, BestEffort: true})
	}
	for result, want := range map[string]float64{"granted": 1, "denied": 3, "partial": 0} {
		got := metrictest.Value(t, reg, "sidemix_memquota_allocations_total", map[string]string{"handler": "q", "quota": "rq", "result": result})
		if got != want {
			t.Errorf("allocations{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func ExampleFactory() {
	f := memquota.Factory()
	cfg, _ := configtest.Decode(f, []byte(`
quotas:
- name: requestcount
  maxAmount: 2
  validDuration: 1s
`))
	now := time.Unix(1_700_000_000, 0)
	h, err := f.Create(context.Background(), adapters.Settings{Name: "quotas", Now: func() time.Time { return now }}, cfg)
	if err != nil {
		panic(err)
	}
	defer h.Close(context.Background())
	q := &template.Quota{Name: "requestcount", Dimensions: map[string]any{"source": "web"}}
	for range 3 {
		r, _ := h.(adapters.QuotaAllocator).Allocate(context.Background(), q, adapters.QuotaArgs{Amount: 1})
		fmt.Println(r.Amount, r.ValidDuration)
	}
	// Output:
	// 1 1s
	// 1 1s
	// 0 1.05s
}

func (a allocator) expectResult(q *template.Quota, args adapters.QuotaArgs, want adapters.QuotaResult) {
	a.t.Helper()
	if got := a.alloc(q, args); got != want {
		a.t.Errorf("Allocate(%v, %+v) =\n %+v, want\n %+v", q.Dimensions, args, got, want)
	}
}

func TestSeveralWindows(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute)
	a := allocator{t, newAllocator(t, adapters.Settings{Now: clk.Now}, `
quotas:
- name: rq
  maxAmount: 3
  validDuration: 1s
  windows:
  - maxAmount: 4
    validDuration: 1m
    bucketDuration: 10s
`)}
	q := &template.Quota{Name: "rq"}
	// The per-second window is the tighter one at first...
	a.expectResult(q, adapters.QuotaArgs{Amount: 2}, adapters.QuotaResult{Amount: 2, ValidDuration: time.Second, Limit: 3, Remaining: 1, Reset: 1050 * time.Millisecond})
	clk.Advance(2 * time.Second)
	// ...then the per-minute one, whose first bucket [t0, t0+10s) frees at
	// t0+70s.
	a.expectResult(q, adapters.QuotaArgs{Amount: 1}, adapters.QuotaResult{Amount: 1, ValidDuration: time.Second, Limit: 4, Remaining: 1, Reset: 68 * time.Second})
	clk.Advance(2 * time.Second)
	// Two fit the second but not the minute: denied, charged to neither,
	// told to come back when the minute's usage frees.
	a.expectResult(q, adapters.QuotaArgs{Amount: 2}, adapters.QuotaResult{ValidDuration: 66 * time.Second, Limit: 4, Remaining: 1, Reset: 66 * time.Second})
	a.expectResult(q, adapters.QuotaArgs{Amount: 1}, adapters.QuotaResult{Amount: 1, ValidDuration: time.Second, Limit: 4, Remaining: 0, Reset: 66 * time.Second})
	a.expectResult(q, adapters.QuotaArgs{Amount: 2, BestEffort: true}, adapters.QuotaResult{ValidDuration: 66 * time.Second, Limit: 4, Remaining: 0, Reset: 66 * time.Second})
	clk.Advance(66 * time.Second)
	// The minute is free again; the second caps a burst.
	a.expect(q, adapters.QuotaArgs{Amount: 5, BestEffort: true}, 3, time.Second)
}

func TestDeniedConsumesNothingInAnyWindow(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute)
	a := allocator{t, newAllocator(t, adapters.Settings{Now: clk.Now}, `
quotas:
- name: rq
  maxAmount: 10
  validDuration: 1s
  windows:
  - {maxAmount: 12, validDuration: 1m}
`)}
	q := &template.Quota{Name: "rq"}
	a.expect(q, adapters.QuotaArgs{Amount: 10}, 10, time.Second)
	// A flood of denials within the second...
	for range 100 {
		a.expect(q, adapters.QuotaArgs{Amount: 1}, 0, 1050*time.Millisecond)
	}
	clk.Advance(2 * time.Second)
	// ...left the minute with what the grant took: 2 more fit.
	a.expect(q, adapters.QuotaArgs{Amount: 5, BestEffort: true}, 2, time.Second)
}

func TestFixedWindow(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute) // on a minute, so on a second too
	a := allocator{t, newAllocator(t, adapters.Settings{Now: clk.Now}, `
rateLimitAlgorithm: FIXED_WINDOW
quotas:
- name: rq
  maxAmount: 3
  validDuration: 1s
`)}
	q := &template.Quota{Name: "rq"}
	clk.Advance(900 * time.Millisecond)
	a.expectResult(q, adapters.QuotaArgs{Amount: 3}, adapters.QuotaResult{Amount: 3, ValidDuration: time.Second, Limit: 3, Remaining: 0, Reset: 100 * time.Millisecond})
	a.expectResult(q, adapters.QuotaArgs{Amount: 1}, adapters.QuotaResult{ValidDuration: 100 * time.Millisecond, Limit: 3, Remaining: 0, Reset: 100 * time.Millisecond})
	// The window ends on the second and all of it frees at once: the
	// double burst a rolling window prevents.
	clk.Advance(100 * time.Millisecond)
	a.expect(q, adapters.QuotaArgs{Amount: 3}, 3, time.Second)
}

func TestRaisedLimitKeepsCounters(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute)
	reg := prometheus.NewRegistry()
	set := adapters.Settings{Name: "quotas", Registerer: reg, Now: clk.Now}
	old := newAllocator(t, set, oneQuota)
	q := &template.Quota{Name: "rq", Dimensions: map[string]any{"source": "a"}}
	allocator{t, old}.expect(q, adapters.QuotaArgs{Amount: 3}, 3, time.Second)

	// A reload raises the limit: the new handler is created before the old
	// one is closed, and carries on with the old one's counts.
	raised := allocator{t, newAllocator(t, set, `
quotas:
- name: rq
  maxAmount: 5
  validDuration: 1s
`)}
	if err := old.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	raised.expectResult(q, adapters.QuotaArgs{Amount: 5, BestEffort: true}, adapters.QuotaResult{Amount: 2, ValidDuration: time.Second, Limit: 5, Remaining: 0, Reset: 1050 * time.Millisecond})

	// Lowered below what is counted: everything is denied until usage
	// leaves the window.
	lowered := allocator{t, newAllocator(t, set, `
quotas:
- name: rq
  maxAmount: 1
  validDuration: 1s
`)}
	lowered.expect(q, adapters.QuotaArgs{Amount: 1}, 0, 1050*time.Millisecond)

	// Another mixer (another registry) has counters of its own.
	other := allocator{t, newAllocator(t, adapters.Settings{Name: "quotas", Registerer: prometheus.NewRegistry(), Now: clk.Now}, oneQuota)}
	other.expect(q, adapters.QuotaArgs{Amount: 3}, 3, time.Second)
}

func TestCountersGoWithTheLastHandler(t *testing.T) {
	clk := fakeclock.New(fakeclock.OnAMinute)
	set := adapters.Settings{Name: "quotas", Registerer: prometheus.NewRegistry(), Now: clk.Now}
	q := &template.Quota{Name: "rq"}
	h := newAllocator(t, set, oneQuota)
	allocator{t, h}.expect(q, adapters.QuotaArgs{Amount: 3}, 3, time.Second)
	// Closing twice must not release the store twice.
	h.Close(context.Background())
	h.Close(context.Background())
	// With no handler left, a new one starts afresh.
	allocator{t, newAllocator(t, set, oneQuota)}.expect(q, adapters.QuotaArgs{Amount: 3}, 3, time.Second)
}
