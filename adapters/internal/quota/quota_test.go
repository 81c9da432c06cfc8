package quota_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/quota"
	"github.com/sidemix/sidemix/adapters/template"
)

// factory lets configtest decode and validate a bare quota.Config.
func factory() adapters.Factory {
	return adapters.Factory{Name: "quota", NewConfig: func() adapters.Config { c := quota.NewConfig(); return &c }}
}

func TestConfig(t *testing.T) {
	configtest.Run(t, factory(), []configtest.Case{
		{File: "istio.yaml"},
		{File: "overrides.yaml"},
		{File: "durations.bad.yaml", Want: "quotas[0].validDuration: 500µs is shorter than 1ms\n" +
			"quotas[0].overrides[0].maxAmount: -1 is negative\n" +
			"quotas[1].windows[0].maxAmount: -3 is negative\n" +
			"quotas[1].windows[0].validDuration: must be positive, got 0s\n" +
			"quotas[1].windows[0].bucketDuration: -1s is negative\n" +
			"quotas[1].windows[1].validDuration: 1s is already the length of the primary window\n" +
			"quotas[1].windows[2].bucketDuration: 100µs is shorter than 1ms\n" +
			"quotas[2].overrides[0].bucketDuration: must be less than validDuration (10s), got 10s\n" +
			"quotas[2].overrides[1].windows[1].validDuration: 1m0s is already the length of quotas[2].overrides[1].windows[0]\n" +
			"quotas[2].overrides[2].validDuration: -1s is negative"},
		{File: "algorithm.bad.yaml", Want: `rateLimitAlgorithm: unknown algorithm "rolling_window" (want ROLLING_WINDOW or FIXED_WINDOW)`},
	})
}

func mustSet(t *testing.T, yaml string) *quota.Set {
	t.Helper()
	cfg, err := configtest.Decode(factory(), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := quota.NewSet(cfg.(*quota.Config))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCounterResolution(t *testing.T) {
	s := mustSet(t, `
quotas:
- name: rq
  maxAmount: 100
  validDuration: 1s
  bucketDuration: 100ms
  windows:
  - {maxAmount: 5000, validDuration: 1h}
  overrides:
  - dimensions: {source: a}
    maxAmount: 10
  - dimensions: {source: b}
    maxAmount: 20
    validDuration: 10s
  - dimensions: {source: c}
    maxAmount: 30
    windows: []
  - dimensions: {source: d}
    maxAmount: 40
    windows:
    - {maxAmount: 50, validDuration: 1m}
`)
	for _, tt := range []struct {
		src  string
		want string
	}{
		{"x", "[100 per rolling/1s/100ms 5000 per rolling/1h0m0s/3m0s]"},
		{"a", "[10 per rolling/1s/100ms 5000 per rolling/1h0m0s/3m0s]"},
		// Its own length gets the default bucket for it, not the quota's.
		{"b", "[20 per rolling/10s/500ms 5000 per rolling/1h0m0s/3m0s]"},
		{"c", "[30 per rolling/1s/100ms]"},
		{"d", "[40 per rolling/1s/100ms 50 per rolling/1m0s/3s]"},
	} {
		c, ok := s.Counter("rq", map[string]any{"source": tt.src, "other": int64(1)})
		if !ok {
			t.Fatal("no quota rq")
		}
		if got := fmt.Sprint(c.Limits); got != tt.want {
			t.Errorf("source %s: limits %s, want %s", tt.src, got, tt.want)
		}
		if want := `rq{"other"="1","source"="` + tt.src + `"}`; c.Key != want {
			t.Errorf("key %s, want %s", c.Key, want)
		}
	}
	if _, ok := s.Counter("nope", nil); ok {
		t.Error("resolved an unknown quota")
	}
}

func TestFixedWindowLimits(t *testing.T) {
	s := mustSet(t, `
rateLimitAlgorithm: FIXED_WINDOW
quotas:
- name: rq
  maxAmount: 100
  validDuration: 1s
  bucketDuration: 100ms  # meaningless for fixed windows
`)
	c, _ := s.Counter("rq", nil)
	if got, want := fmt.Sprint(c.Limits), "[100 per fixed/1s]"; got != want {
		t.Errorf("limits %s, want %s", got, want)
	}
}

func TestDefaultBucket(t *testing.T) {
	for valid, want := range map[time.Duration]time.Duration{
		time.Minute:            3 * time.Second,
		time.Second:            50 * time.Millisecond,
		100 * time.Millisecond: 10 * time.Millisecond,
		5 * time.Millisecond:   5 * time.Millisecond,
	} {
		if got := quota.DefaultBucket(valid); got != want {
			t.Errorf("DefaultBucket(%v) = %v, want %v", valid, got, want)
		}
	}
}

var t0 = time.Unix(1_700_000_040, 0) // on a minute

func alloc(t *testing.T, st quota.Store, c quota.Counter, now time.Time, amount int64) quota.Result {
	t.Helper()
	r, err := st.Allocate(context.Background(), quota.Request{Counter: c, Amount: amount, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestClockSteppingBackHoldsUsage(t *testing.T) {
	s := mustSet(t, "quotas: [{name: rq, maxAmount: 2, validDuration: 1s}]")
	c, _ := s.Counter("rq", nil)
	st := quota.NewMemStore()
	if r := alloc(t, st, c, t0, 2); r.Amount != 2 {
		t.Fatalf("granted %d, want 2", r.Amount)
	}
	// A clock stepping back a minute must not resurrect the allowance.
	if r := alloc(t, st, c, t0.Add(-time.Minute), 1); r.Amount != 0 {
		t.Errorf("granted %d after the clock stepped back, want 0", r.Amount)
	}
	if r := alloc(t, st, c, t0.Add(1050*time.Millisecond), 2); r.Amount != 2 {
		t.Errorf("granted %d once the window passed, want 2", r.Amount)
	}
}

func TestSweepDropsIdleCounters(t *testing.T) {
	s := mustSet(t, `
quotas:
- name: rq
  maxAmount: 10
  validDuration: 100ms
  windows: [{maxAmount: 20, validDuration: 200ms}]
`)
	st := quota.NewMemStore()
	req := func(dims map[string]any, now time.Time) {
		c, _ := s.Counter("rq", dims)
		if _, err := st.Allocate(context.Background(), quota.Request{Counter: c, Amount: 1, DeduplicationID: "d", Dedup: time.Second, Now: now}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		req(map[string]any{"i": int64(i)}, t0)
	}
	if n, d := st.Size(); n != 2000 || d != 1000 {
		t.Fatalf("%d windows and %d dedup entries, want 2000 and 1000", n, d)
	}
	// Past the windows, the dedup time and the sweep interval, any
	// allocation sweeps its shard; touch every shard once.
	for i := range 1000 {
		req(map[string]any{"j": int64(i)}, t0.Add(2*time.Second))
	}
	if n, d := st.Size(); n != 2000 || d != 1000 {
		t.Errorf("%d windows and %d dedup entries, want only the new 2000 and 1000", n, d)
	}
}

// usage is a window's live usage given as counts per slot.
type usage struct {
	l      quota.Limit
	counts map[int64]int64
}

func (u usage) Used() int64 {
	var n int64
	for _, c := range u.counts {
		n += c
	}
	return n
}

func (u usage) FreedAt(need int64) (time.Time, bool) {
	var freed int64
	for s := int64(-1000); s <= 1000; s++ {
		freed += u.counts[s]
		if freed >= need && u.counts[s] > 0 {
			return u.l.Expiry(s), true
		}
	}
	return time.Time{}, false
}

func TestDecide(t *testing.T) {
	s := mustSet(t, `
quotas:
- name: rq
  maxAmount: 10
  validDuration: 1s
  bucketDuration: 100ms
  windows: [{maxAmount: 15, validDuration: 10s, bucketDuration: 1s}]
`)
	c, _ := s.Counter("rq", nil)
	sec, ten := c.Limits[0], c.Limits[1]
	now := time.Unix(0, 0).Add(500 * time.Millisecond) // slot 5 of the second, 0 of ten
	for _, tt := range []struct {
		name       string
		sec, ten   map[int64]int64
		amount     int64
		bestEffort bool
		want       adapters.QuotaResult
	}{
		{"empty", nil, nil, 4, false,
			adapters.QuotaResult{Amount: 4, ValidDuration: time.Second, Limit: 10, Remaining: 6, Reset: 1100 * time.Millisecond}},
		{"ten is tighter", map[int64]int64{2: 1}, map[int64]int64{-3: 10}, 4, false,
			// ten's slot -3 holds until slot 7 ends: 8s from the epoch.
			adapters.QuotaResult{Amount: 4, ValidDuration: time.Second, Limit: 15, Remaining: 1, Reset: 7500 * time.Millisecond}},
		{"denied by ten", map[int64]int64{2: 1}, map[int64]int64{-3: 10, -1: 2}, 4, false,
			// 12+4-15 = 1 must go: slot -3 does at 8s.
			adapters.QuotaResult{ValidDuration: 7500 * time.Millisecond, Limit: 15, Remaining: 3, Reset: 7500 * time.Millisecond}},
		{"denied by both, ten longer", map[int64]int64{-4: 9}, map[int64]int64{-3: 2, -1: 12}, 4, false,
			// sec: 9+4-10 = 3, freed at slot -4+10+1 = 7 → 700ms; ten: all of slot -1 → 10s.
			adapters.QuotaResult{ValidDuration: 9500 * time.Millisecond, Limit: 15, Remaining: 1, Reset: 9500 * time.Millisecond}},
		{"best effort", map[int64]int64{-4: 9}, map[int64]int64{-3: 2}, 4, true,
			adapters.QuotaResult{Amount: 1, ValidDuration: time.Second, Limit: 10, Remaining: 0, Reset: 200 * time.Millisecond}},
		{"best effort denied", map[int64]int64{-4: 10}, nil, 4, true,
			adapters.QuotaResult{ValidDuration: 200 * time.Millisecond, Limit: 10, Remaining: 0, Reset: 200 * time.Millisecond}},
		{"above a max", nil, nil, 11, false,
			adapters.QuotaResult{ValidDuration: time.Second, Limit: 10, Remaining: 10, Reset: time.Second}},
		{"zero", map[int64]int64{-4: 10}, nil, 0, false,
			adapters.QuotaResult{ValidDuration: time.Second, Limit: 10, Remaining: 0, Reset: 200 * time.Millisecond}},
	} {
		got := quota.Decide(now, c.Limits, []quota.Usage{usage{sec, tt.sec}, usage{ten, tt.ten}}, tt.amount, tt.bestEffort)
		if got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestAllocator(t *testing.T) {
	s := mustSet(t, "minDeduplicationDuration: 1s\nquotas: [{name: rq, maxAmount: 2, validDuration: 1s}]")
	a := &quota.Allocator{Adapter: "memquota", Handler: "h", Set: s, Store: quota.NewMemStore(), Now: func() time.Time { return t0 }}
	ctx := context.Background()
	q := &template.Quota{Name: "rq"}
	for _, tt := range []struct {
		args adapters.QuotaArgs
		want string
	}{
		{adapters.QuotaArgs{Amount: 1, DeduplicationID: "x"}, "granted"},
		{adapters.QuotaArgs{Amount: 1, DeduplicationID: "x"}, "duplicate"},
		{adapters.QuotaArgs{Amount: 3, BestEffort: true}, "partial"},
		{adapters.QuotaArgs{Amount: 1}, "denied"},
	} {
		r, err := a.Allocate(ctx, q, tt.args)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Outcome(tt.args.Amount); got != tt.want {
			t.Errorf("%+v: outcome %s, want %s", tt.args, got, tt.want)
		}
	}
	for _, tt := range []struct {
		q    *template.Quota
		args adapters.QuotaArgs
		want string
	}{
		{nil, adapters.QuotaArgs{}, "memquota: nil instance"},
		{&template.Quota{Name: "nope"}, adapters.QuotaArgs{}, `memquota: handler h has no quota "nope"`},
		{q, adapters.QuotaArgs{Amount: -1}, `memquota: quota "rq": negative amount -1`},
	} {
		if _, err := a.Allocate(ctx, tt.q, tt.args); err == nil || err.Error() != tt.want {
			t.Errorf("error %v, want %s", err, tt.want)
		}
	}
}

func TestMemStoreConcurrentAllocationsAreExact(t *testing.T) {
	const limit, workers, tries = 500, 20, 100
	s := mustSet(t, fmt.Sprintf(`
quotas:
- name: rq
  maxAmount: %d
  validDuration: 1h
  windows: [{maxAmount: %d, validDuration: 1m}]
`, 2*limit, limit))
	st := quota.NewMemStore()
	var granted atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range tries {
				c, _ := s.Counter("rq", map[string]any{"k": int64(i % 2)})
				r, err := st.Allocate(context.Background(), quota.Request{Counter: c, Amount: 1 + int64(i%3), BestEffort: i%5 == 0, Now: t0})
				if err != nil {
					t.Error(err)
					return
				}
				granted.Add(r.Amount)
			}
		})
	}
	wg.Wait()
	// About 4000 asked of 2 counters whose minute allows 500 each.
	if got := granted.Load(); got != 2*limit {
		t.Errorf("granted %d, want exactly %d", got, 2*limit)
	}
}

func TestCounterKey(t *testing.T) {
	dims := map[string]any{"source": `we"b`, "destination": "db", "code": int64(404)}
	if got, want := quota.CounterKey("rq", dims), `rq{"code"="404","destination"="db","source"="we\"b"}`; got != want {
		t.Errorf("CounterKey = %s, want %s", got, want)
	}
	if got := quota.CounterKey("rq", nil); got != "rq{}" {
		t.Errorf("CounterKey without dimensions = %s", got)
	}
	strs := map[string]any{"source": "web", "destination": "db"}
	if n := testing.AllocsPerRun(100, func() { quota.CounterKey("rq", strs) }); n > 1 {
		t.Errorf("CounterKey allocates %v times, want 1 (the key)", n)
	}
}
