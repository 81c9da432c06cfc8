package redisquota

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/fakeclock"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/quota"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/testenv"
)

// These tests run against a real redis-server and count the script calls
// it ran (INFO commandstats).

// scriptCalls is how many script calls (EVALSHA and EVAL) Redis has run.
func scriptCalls(t *testing.T, addr string) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "cmdstat_evalsha" && k != "cmdstat_eval") {
			continue
		}
		for f := range strings.SplitSeq(v, ",") {
			if c, ok := strings.CutPrefix(f, "calls="); ok {
				x, err := strconv.Atoi(c)
				if err != nil {
					t.Fatal(err)
				}
				n += x
			}
		}
	}
	return n
}

// value is a counter's value.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// newPlainHandler is newRealHandler without local answers: every
// allocation is a call to Redis.
func newPlainHandler(t *testing.T, addr, params string, now func() time.Time) *handler {
	t.Helper()
	c := NewConfig()
	if err := yaml.Unmarshal([]byte("redisServerUrl: "+addr+"\n"+params), c); err != nil {
		t.Fatal(err)
	}
	c.OverLimitCache, c.LocalLease.MaxFraction = false, 0
	h, err := newHandler(context.Background(), adapters.Settings{Name: "plain", Registerer: prometheus.NewRegistry(), Now: now}, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// remaining asks Redis, through a handler without local answers, what the
// counter of q has left at now.
func remaining(t *testing.T, addr, params string, now func() time.Time, q *template.Quota) int64 {
	t.Helper()
	h := newPlainHandler(t, addr, params, now)
	r, err := h.Allocate(context.Background(), q, adapters.QuotaArgs{Amount: 0})
	if err != nil {
		t.Fatal(err)
	}
	h.Close(context.Background())
	return r.Remaining
}

func mustAlloc(t *testing.T, h *handler, q *template.Quota, args adapters.QuotaArgs) adapters.QuotaResult {
	t.Helper()
	r, err := h.Allocate(context.Background(), q, args)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOverLimitCache: once Redis denies a counter, the handler denies it
// without Redis, with the answer Redis gives, until Redis could grant; a
// handler of a raised limit (a reload) asks Redis again.
func TestOverLimitCache(t *testing.T) {
	r := testenv.StartRedis(t)
	clk := fakeclock.New(fakeclock.OnAMinute)
	for _, alg := range []string{"FIXED_WINDOW", "ROLLING_WINDOW"} {
		t.Run(alg, func(t *testing.T) {
			params := fmt.Sprintf("timeout: 5s\nrateLimitAlgorithm: %s\nquotas: [{name: rq, maxAmount: 5, validDuration: 1s, bucketDuration: 100ms}]\n", alg)
			h := newRealHandler(t, r.Addr(), params, clk.Now)
			plainH := newPlainHandler(t, r.Addr(), params, clk.Now)
			q := &template.Quota{Name: "rq", Dimensions: map[string]any{"alg": alg}}
			mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 3})
			clk.Advance(300 * time.Millisecond)
			mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 2})
			clk.Advance(200 * time.Millisecond)
			first := mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 1})
			if first.Amount != 0 {
				t.Fatalf("6th unit of 5 granted: %+v", first)
			}
			calls := scriptCalls(t, r.Addr())
			// The rolling window frees the first 3 units at 1.1s, the
			// fixed one everything at 1s: until then, no Redis.
			for range 40 {
				clk.Advance(10 * time.Millisecond)
				if alg == "FIXED_WINDOW" && !clk.Now().Before(time.Unix(1_700_000_041, 0)) {
					break
				}
				got := mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 1})
				best := mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 2, BestEffort: true})
				if n := scriptCalls(t, r.Addr()); n != calls {
					t.Fatalf("at +%v the over-limit cache asked Redis (%d script calls, had %d)", clk.Now().Sub(time.Unix(1_700_000_040, 0)), n, calls)
				}
				// Redis's own answer, through a handler without the cache.
				want := mustAlloc(t, plainH, q, adapters.QuotaArgs{Amount: 1})
				calls = scriptCalls(t, r.Addr())
				if got != want || best != want {
					t.Fatalf("at +%v: cached %+v and %+v (best effort), Redis %+v", clk.Now().Sub(time.Unix(1_700_000_040, 0)), got, best, want)
				}
			}
			// Another amount is another answer: Redis is asked.
			if got := mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 4}); got.Amount != 0 || scriptCalls(t, r.Addr()) != calls+1 {
				t.Errorf("amount 4: %+v, script calls %d, want a denial from Redis", got, scriptCalls(t, r.Addr())-calls)
			}
			clk.Advance(200 * time.Millisecond) // past 1.1s: usage freed
			if got := mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 1}); got.Amount != 1 {
				t.Errorf("after the window freed: %+v, want a grant", got)
			}

			// Exhaust it again, then reload with a raised limit: the new
			// handler asks Redis and grants.
			for mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 1}).Amount > 0 {
			}
			raised := newRealHandler(t, r.Addr(), strings.Replace(params, "maxAmount: 5", "maxAmount: 8", 1), clk.Now)
			if got := mustAlloc(t, raised, q, adapters.QuotaArgs{Amount: 1}); got.Amount != 1 || got.Limit != 8 {
				t.Errorf("raised limit: %+v, want a grant of 1 of 8", got)
			}
			clk.Advance(5 * time.Second)
		})
	}
}

// TestLeaseFewScriptCalls: a busy counter with a large limit is answered
// from leases, a script call per lease and per flush of its
// deduplication records; what Redis counts is exactly what was granted
// once the handler closes and gives the rest back.
func TestLeaseFewScriptCalls(t *testing.T) {
	r := testenv.StartRedis(t)
	clk := fakeclock.New(fakeclock.OnAMinute)
	// Deduplication records expire on Redis's clock: long enough for the
	// test.
	params := "timeout: 5s\nminDeduplicationDuration: 1m\nrateLimitAlgorithm: ROLLING_WINDOW\nquotas: [{name: rq, maxAmount: 1000000, validDuration: 10s, bucketDuration: 1s}]\n"
	h := newRealHandler(t, r.Addr(), params, clk.Now)
	q := &template.Quota{Name: "rq", Dimensions: map[string]any{"destination": "web"}}
	before := scriptCalls(t, r.Addr())
	const n = 20000
	for i := range n {
		// 5,000 per second by the mixer's clock.
		clk.Advance(200 * time.Microsecond)
		if got := mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 1, DeduplicationID: fmt.Sprint("id-", i)}); got.Amount != 1 {
			t.Fatalf("allocation %d: %+v", i, got)
		}
	}
	h.Close(context.Background())
	calls := scriptCalls(t, r.Addr()) - before
	taken := value(h.store.local.m.taken)
	t.Logf("%d allocations: %d script calls, %.0f units leased, %.0f answered from leases", n, calls, taken, value(h.store.local.m.lease))
	if calls > n/50 {
		t.Errorf("%d script calls for %d allocations, want at most %d", calls, n, n/50)
	}
	if taken > 1000000/100*float64(calls) {
		t.Errorf("leases took %.0f units in %d calls: more than 1%% of the max per lease", taken, calls)
	}
	if left := remaining(t, r.Addr(), params, clk.Now, q); left != 1000000-n {
		t.Errorf("Redis has %d left after %d granted, want %d", left, n, 1000000-n)
	}
	// Every id answered from a lease is recorded in Redis: a retry on a
	// handler without leases is a duplicate and charges nothing.
	other := newPlainHandler(t, r.Addr(), params, clk.Now)
	for _, i := range []int{0, n / 2, n - 1} {
		got := mustAlloc(t, other, q, adapters.QuotaArgs{Amount: 1, DeduplicationID: fmt.Sprint("id-", i)})
		if got.Amount != 1 {
			t.Errorf("retry of id-%d elsewhere: %+v", i, got)
		}
	}
	if left := remaining(t, r.Addr(), params, clk.Now, q); left != 1000000-n {
		t.Errorf("retries elsewhere charged again: %d left, want %d", left, 1000000-n)
	}
}

// TestSmallLimitsNeverLease: a limit of 100 (the accuracy
// tests') never leases, however busy.
func TestSmallLimitsNeverLease(t *testing.T) {
	r := testenv.StartRedis(t)
	clk := fakeclock.New(fakeclock.OnAMinute)
	h := newRealHandler(t, r.Addr(), "timeout: 5s\nquotas: [{name: rq, maxAmount: 100, validDuration: 10s, bucketDuration: 500ms}]\n", clk.Now)
	q := &template.Quota{Name: "rq"}
	mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 1}) // loads the script
	before := scriptCalls(t, r.Addr())
	for range 100 {
		clk.Advance(10 * time.Microsecond)
		mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 1})
	}
	if calls := scriptCalls(t, r.Addr()) - before; calls != 100 {
		t.Errorf("100 allocations made %d script calls, want 100 (no lease)", calls)
	}
	if taken := value(h.store.local.m.taken); taken != 0 {
		t.Errorf("leased %v units of a limit of 100", taken)
	}
}

// TestLeaseDedupAcrossHandlers: every request is sent to two handlers
// that both hold leases, one answer after the other: each is charged
// once.
func TestLeaseDedupAcrossHandlers(t *testing.T) {
	r := testenv.StartRedis(t)
	clk := fakeclock.New(fakeclock.OnAMinute)
	params := "timeout: 5s\nminDeduplicationDuration: 1m\nrateLimitAlgorithm: FIXED_WINDOW\nquotas: [{name: rq, maxAmount: 1000000, validDuration: 1m}]\n"
	a := newRealHandler(t, r.Addr(), params, clk.Now)
	b := newRealHandler(t, r.Addr(), params, clk.Now)
	q := &template.Quota{Name: "rq"}
	const n = 3000
	for i := range n {
		clk.Advance(20 * time.Microsecond)
		id := fmt.Sprint("req-", i)
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		ra := mustAlloc(t, first, q, adapters.QuotaArgs{Amount: 2, DeduplicationID: id})
		rb := mustAlloc(t, second, q, adapters.QuotaArgs{Amount: 2, DeduplicationID: id})
		if ra.Amount != 2 || rb.Amount != 2 {
			t.Fatalf("%s: %+v then %+v", id, ra, rb)
		}
		if i%500 == 0 {
			// Let the flushers write what they hold, as time does.
			time.Sleep(3 * flushInterval)
		}
	}
	local := value(a.store.local.m.lease) + value(b.store.local.m.lease)
	a.Close(context.Background())
	b.Close(context.Background())
	t.Logf("%d requests sent twice: %.0f answers from leases, %.0f units given back", n, local,
		value(a.store.local.m.returned)+value(b.store.local.m.returned))
	if local < n {
		t.Errorf("only %.0f of %d answers came from leases", local, 2*n)
	}
	if left := remaining(t, r.Addr(), params, clk.Now, q); left != 1000000-2*n {
		t.Errorf("Redis has %d left after %d requests of 2 sent twice, want %d", left, n, 1000000-2*n)
	}
}

// TestLeaseExpiryReturnsUnits: the units a lease did not use go back to
// Redis when it expires.
func TestLeaseExpiryReturnsUnits(t *testing.T) {
	r := testenv.StartRedis(t)
	clk := fakeclock.New(fakeclock.OnAMinute)
	params := "timeout: 5s\nlocalLease: {maxFraction: 0.01, maxDuration: 200ms}\nquotas: [{name: rq, maxAmount: 100000, validDuration: 1m, bucketDuration: 10s}]\n"
	h := newRealHandler(t, r.Addr(), params, clk.Now)
	q := &template.Quota{Name: "rq"}
	const n = 2000
	for range n {
		clk.Advance(50 * time.Microsecond)
		mustAlloc(t, h, q, adapters.QuotaArgs{Amount: 1})
	}
	if value(h.store.local.m.lease) == 0 {
		t.Fatal("no answer came from a lease")
	}
	if left := remaining(t, r.Addr(), params, clk.Now, q); left >= 100000-n {
		t.Fatalf("Redis has %d left after %d granted: no lease is held", left, n)
	}
	clk.Advance(200 * time.Millisecond) // the lease has expired
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		left := remaining(t, r.Addr(), params, clk.Now, q)
		return left == 100000-n, fmt.Sprintf("Redis has %d left, want %d", left, 100000-n)
	})
	if ret := value(h.store.local.m.returned); ret == 0 {
		t.Error("lease_units_total{returned} is 0")
	}
}

// TestLeaseAccuracyAcrossHandlers: three handlers (three mixers) with
// leases share one Redis under load well over a large limit: no window
// grants more than its max, and every whole fixed window grants at least
// 98% of it.
func TestLeaseAccuracyAcrossHandlers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	r := testenv.StartRedis(t)
	for _, alg := range []string{"FIXED_WINDOW", "ROLLING_WINDOW"} {
		t.Run(alg, func(t *testing.T) {
			const limit, valid = 5000, 500 * time.Millisecond
			params := fmt.Sprintf("timeout: 5s\nrateLimitAlgorithm: %s\nquotas: [{name: rq, maxAmount: %d, validDuration: %v, bucketDuration: 50ms}]\n", alg, limit, valid)
			var (
				mu     sync.Mutex
				grants []grant
				asked  = make(map[int64]int64) // by fixed window
				wg     sync.WaitGroup
				hs     []*handler
			)
			start := time.Now()
			end := start.Add(3 * time.Second)
			for i := range 3 {
				h := newRealHandler(t, r.Addr(), params, time.Now)
				hs = append(hs, h)
				c, _ := h.Set.Counter("rq", map[string]any{"alg": alg})
				for g := range 2 {
					wg.Go(func() {
						// About 5× the limit in all, uneven across handlers.
						per := time.Duration(float64(time.Second) / (5 * limit / valid.Seconds() * []float64{0.25, 0.15, 0.1}[i]))
						next := time.Now()
						for n := 0; time.Now().Before(end); n++ {
							next = next.Add(per)
							if d := time.Until(next); d > 0 {
								time.Sleep(d)
							}
							// Judged by each call's own clock, as the
							// windows are.
							now := time.Now()
							res, err := h.store.Allocate(context.Background(), quota.Request{Counter: c, Amount: 1, DeduplicationID: fmt.Sprint(i, "-", g, "-", n), Dedup: h.Set.Dedup(), Now: now})
							if err != nil {
								t.Error(err)
								return
							}
							mu.Lock()
							asked[now.UnixNano()/int64(valid)]++
							if res.Amount > 0 {
								grants = append(grants, grant{now, res.Amount})
							}
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()
			var leased float64
			for _, h := range hs {
				leased += value(h.store.local.m.lease)
			}
			slices.SortFunc(grants, func(a, b grant) int { return a.at.Compare(b.at) })
			t.Logf("%s: %d granted, %.0f from leases", alg, len(grants), leased)
			if leased == 0 {
				t.Error("no answer came from a lease")
			}
			if alg == "ROLLING_WINDOW" {
				if most := maxInWindow(grants, valid); most > limit {
					t.Errorf("%d granted within %v, over the max %d", most, valid, limit)
				}
				return
			}
			// Whole windows only: the first and last are partial.
			per := make(map[int64]int64)
			for _, g := range grants {
				per[g.at.UnixNano()/int64(valid)] += g.amount
			}
			first, last := start.UnixNano()/int64(valid)+1, end.UnixNano()/int64(valid)-1
			for w := first; w <= last; w++ {
				n := per[w]
				t.Logf("window %d of %d: %d asked, %d granted", w-first+1, last-first+1, asked[w], n)
				if n > limit {
					t.Errorf("window %d of %d: %d granted, over the max %d", w-first+1, last-first+1, n, limit)
				}
				// Under: only where the load generator kept up (a loaded
				// machine may stall it for a while).
				if asked[w] >= 2*limit && n < limit*98/100 {
					t.Errorf("window %d of %d: %d granted of %d asked, want %d (-2%%)", w-first+1, last-first+1, n, asked[w], limit)
				}
			}
		})
	}
}
