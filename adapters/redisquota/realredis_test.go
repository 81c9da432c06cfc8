package redisquota

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/quota"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/testenv"
)

// These tests run against a real redis-server (testenv.StartRedis).

func newRealHandler(t *testing.T, addr, params string, now func() time.Time) *handler {
	t.Helper()
	c := NewConfig()
	if err := yaml.Unmarshal([]byte("redisServerUrl: "+addr+"\n"+params), c); err != nil {
		t.Fatal(err)
	}
	// Each handler stands for a mixer: its own registry and clock.
	h, err := newHandler(context.Background(), adapters.Settings{Name: "shared", Registerer: prometheus.NewRegistry(), Now: now}, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

type grant struct {
	at     time.Time
	amount int64
}

// maxInWindow is the most granted in any interval [x, x+d): such an
// interval holds the most when it starts at a grant.
func maxInWindow(gs []grant, d time.Duration) int64 {
	var best, sum int64
	j := 0
	for i := range gs {
		for j < len(gs) && gs[j].at.Before(gs[i].at.Add(d)) {
			sum += gs[j].amount
			j++
		}
		best = max(best, sum)
		sum -= gs[i].amount
	}
	return best
}

// maxInFixedWindow is the most granted in any window of d aligned on the
// epoch.
func maxInFixedWindow(gs []grant, d time.Duration) int64 {
	per := make(map[int64]int64)
	var best int64
	for _, g := range gs {
		k := g.at.UnixNano() / int64(d)
		per[k] += g.amount
		best = max(best, per[k])
	}
	return best
}

// TestAccuracyAcrossMixers has three handlers, standing for three mixers
// (one with a clock 30ms behind), allocate concurrently from one Redis,
// and checks that in no window, judged by each call's own clock, more was
// granted than its max.
func TestAccuracyAcrossMixers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	r := testenv.StartRedis(t)
	for _, alg := range []quota.Algorithm{quota.RollingWindow, quota.FixedWindow} {
		t.Run(string(alg), func(t *testing.T) {
			params := fmt.Sprintf(`
timeout: 5s
rateLimitAlgorithm: %s
quotas:
- name: rq
  maxAmount: 40
  validDuration: 500ms
  bucketDuration: 25ms
  windows:
  - {maxAmount: 100, validDuration: 2s, bucketDuration: 100ms}
`, alg)
			skews := []time.Duration{0, 0, -30 * time.Millisecond}
			var (
				mu     sync.Mutex
				grants []grant
				asked  int64
				wg     sync.WaitGroup
			)
			end := time.Now().Add(3 * time.Second)
			for i, skew := range skews {
				h := newRealHandler(t, r.Addr(), params, func() time.Time { return time.Now().Add(skew) })
				c, _ := h.Set.Counter("rq", map[string]any{"destination": "web"})
				for g := range 3 {
					wg.Go(func() {
						for n := 0; time.Now().Before(end); n++ {
							now := h.Now()
							amount := int64(1 + (n+g+i)%3)
							res, err := h.store.Allocate(context.Background(), quota.Request{Counter: c, Amount: amount, BestEffort: n%4 == 0, Now: now})
							if err != nil {
								t.Error(err)
								return
							}
							mu.Lock()
							asked += amount
							if res.Amount > 0 {
								grants = append(grants, grant{now, res.Amount})
							}
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()
			slices.SortFunc(grants, func(a, b grant) int { return a.at.Compare(b.at) })
			var total int64
			for _, g := range grants {
				total += g.amount
			}
			t.Logf("%s: asked %d, granted %d in %d grants", alg, asked, total, len(grants))
			if total == 0 {
				t.Fatal("nothing granted")
			}
			for _, w := range []struct {
				valid time.Duration
				max   int64
			}{{500 * time.Millisecond, 40}, {2 * time.Second, 100}} {
				var most int64
				if alg == quota.RollingWindow {
					most = maxInWindow(grants, w.valid)
				} else {
					most = maxInFixedWindow(grants, w.valid)
				}
				t.Logf("most in a %v window: %d of %d", w.valid, most, w.max)
				if most > w.max {
					t.Errorf("%d granted within %v, over the max %d", most, w.valid, w.max)
				}
			}
		})
	}
}

func TestRetriesChargeOnce(t *testing.T) {
	r := testenv.StartRedis(t)
	params := "timeout: 5s\nminDeduplicationDuration: 10s\nquotas: [{name: rq, maxAmount: 100, validDuration: 1m}]"
	var hs []*handler
	for range 3 {
		hs = append(hs, newRealHandler(t, r.Addr(), params, time.Now))
	}
	q := &template.Quota{Name: "rq", Dimensions: map[string]any{"source": "a"}}
	// Every request is sent 6 times, to all three mixers at once, as
	// retries after a timeout would be.
	var wg sync.WaitGroup
	for req := range 20 {
		for i := range 6 {
			wg.Go(func() {
				res, err := hs[i%3].Allocate(context.Background(), q, adapters.QuotaArgs{DeduplicationID: fmt.Sprint("req-", req), Amount: 2})
				if err != nil || res.Amount != 2 {
					t.Errorf("req-%d: %+v, %v", req, res, err)
				}
			})
		}
	}
	wg.Wait()
	res, err := hs[0].Allocate(context.Background(), q, adapters.QuotaArgs{Amount: 0})
	if err != nil {
		t.Fatal(err)
	}
	if res.Remaining != 60 {
		t.Errorf("remaining %d after 20 requests of 2, want 60", res.Remaining)
	}
}

// TestRedisDiesAndReturns kills Redis, then hangs it: allocations fail,
// the circuit opens and later calls fail at once; when Redis is back the
// probe closes the circuit and limits hold again.
func TestRedisDiesAndReturns(t *testing.T) {
	r := testenv.StartRedis(t)
	h := newRealHandler(t, r.Addr(), `
timeout: 300ms
breaker: {failureThreshold: 2, probeInterval: 50ms}
quotas: [{name: rq, maxAmount: 5, validDuration: 1m}]
`, time.Now)
	ctx := context.Background()
	q := &template.Quota{Name: "rq"}
	allocate := func() (adapters.QuotaResult, error) { return h.Allocate(ctx, q, adapters.QuotaArgs{Amount: 1}) }
	if _, err := allocate(); err != nil {
		t.Fatal(err)
	}
	expectOpen := func(what string) {
		t.Helper()
		var errs []error
		for i := range 4 {
			start := time.Now()
			_, err := allocate()
			t.Logf("%s: allocation %d failed in %v", what, i, time.Since(start))
			if err == nil {
				t.Fatalf("%s: an allocation succeeded", what)
			}
			errs = append(errs, err)
		}
		// The first two reach Redis; the rest find the circuit open.
		for i, err := range errs {
			if open := errors.Is(err, ErrCircuitOpen); open != (i >= 2) {
				t.Errorf("%s: allocation %d: %v", what, i, err)
			}
		}
	}
	recovers := func(what string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			_, err := allocate()
			return err == nil, fmt.Sprint(err)
		})
	}

	r.Kill()
	expectOpen("killed")
	r.Restart()           // empty: the counts died with it
	recovers("restarted") // with one unit granted
	for range 4 {
		if res, err := allocate(); err != nil || res.Amount != 1 {
			t.Fatalf("after restart: %+v, %v", res, err)
		}
	}
	// 5 of 5 used: the limit holds again.
	if res, err := allocate(); err != nil || res.Amount != 0 {
		t.Errorf("over the limit after restart: %+v, %v", res, err)
	}

	r.Pause() // hung: calls time out instead of being refused
	// The exhausted counter is answered from the over-limit cache, without
	// Redis, until its window frees; another counter needs Redis.
	if res, err := allocate(); err != nil || res.Amount != 0 {
		t.Errorf("exhausted counter, Redis hung: %+v, %v; want a denial from the over-limit cache", res, err)
	}
	q = &template.Quota{Name: "rq", Dimensions: map[string]any{"source": "other"}}
	expectOpen("paused")
	r.Resume()
	recovers("resumed")
}

// BenchmarkAllocate measures allocations against a real Redis, from as
// many goroutines as -cpu says, over 100 counters.
func BenchmarkAllocate(b *testing.B) {
	r := testenv.StartRedis(b)
	c := NewConfig()
	c.RedisServerURL = r.Addr()
	c.Quotas = []quota.Quota{{Name: "rq", MaxAmount: 1 << 40, ValidDuration: time.Second}}
	h, err := newHandler(context.Background(), adapters.Settings{}, c)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		n := 0
		for pb.Next() {
			q := &template.Quota{Name: "rq", Dimensions: map[string]any{"k": int64(n % 100)}}
			if _, err := h.Allocate(context.Background(), q, adapters.QuotaArgs{Amount: 1}); err != nil {
				b.Error(err)
				return
			}
			n++
		}
	})
}
