package redisquota

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sidemix/sidemix/adapters/internal/quota"
	"github.com/sidemix/sidemix/internal/testenv"
)

// TestBatchesAnswerAsOneByOne sends random batches of allocations, to a
// few counters with several windows, some sharing deduplication ids,
// through one pipeline of script calls against a real Redis, and the same
// allocations one by one, in the same order, to quota.MemStore: every
// result must be the same.
func TestBatchesAnswerAsOneByOne(t *testing.T) {
	for _, alg := range []quota.Algorithm{quota.RollingWindow, quota.FixedWindow} {
		t.Run(string(alg), func(t *testing.T) {
			r := testenv.StartRedis(t)
			client := redis.NewClient(&redis.Options{Addr: r.Addr(), Protocol: 2})
			t.Cleanup(func() { client.Close() })
			c := quota.NewConfig()
			c.RateLimitAlgorithm = alg
			c.MinDeduplicationDuration = time.Hour // Redis's clock must not expire ids mid-test
			c.Quotas = []quota.Quota{{
				Name: "rq", MaxAmount: 12, ValidDuration: time.Second, BucketDuration: 100 * time.Millisecond,
				Windows:   []quota.Window{{MaxAmount: 30, ValidDuration: 5 * time.Second}},
				Overrides: []quota.Override{{Dimensions: map[string]string{"source": "b"}, MaxAmount: 5, ValidDuration: 700 * time.Millisecond}},
			}}
			set, err := quota.NewSet(&c)
			if err != nil {
				t.Fatal(err)
			}
			mem := quota.NewMemStore()
			rnd := rand.New(rand.NewPCG(3, 4))
			now := time.Unix(1_700_000_040, 0)
			prefix := strconv.FormatInt(time.Now().UnixNano(), 36)
			for step := range 400 {
				var groups []*group
				var all []*call
				for range 1 + rnd.IntN(12) {
					counter, _ := set.Counter("rq", map[string]any{"source": []string{"a", "b", "c"}[rnd.IntN(3)]})
					req := quota.Request{Counter: counter, Amount: rnd.Int64N(5), BestEffort: rnd.IntN(3) == 0, Dedup: set.Dedup(), Now: now}
					if rnd.IntN(3) == 0 {
						req.DeduplicationID = fmt.Sprint(prefix, "-", rnd.IntN(30))
					}
					// Allocations of one batch carry clocks a little apart.
					// (MemStore takes a clock that steps back as its latest
					// one; Redis takes each call's: TestAccuracyAcrossMixers
					// covers clocks out of step.)
					now = now.Add(time.Duration(rnd.IntN(40)) * time.Millisecond)
					cl := &call{req: req}
					all = append(all, cl)
					var g *group
					for _, x := range groups {
						if x.has(&cl.req) {
							g = x
						}
					}
					if g == nil {
						g = &group{counter: counter, dedup: req.Dedup}
						groups = append(groups, g)
					}
					g.calls = append(g.calls, cl)
				}
				for i, err := range runGroups(context.Background(), client, groups) {
					if err != nil {
						t.Fatalf("step %d, group %d: %v", step, i, err)
					}
				}
				for i, cl := range all {
					want, _ := mem.Allocate(context.Background(), cl.req)
					if cl.res != want {
						t.Fatalf("step %d, allocation %d of %d (%s %+v at %v):\nbatched  %+v\none by one %+v",
							step, i, len(all), cl.req.Counter.Key, cl.req.Amount, cl.req.Now.Sub(time.Unix(1_700_000_040, 0)), cl.res, want)
					}
				}
				now = now.Add(time.Duration(rnd.IntN(300)) * time.Millisecond)
			}
		})
	}
}

// BenchmarkScript measures one script call for a batch of allocations to
// one fixed-window counter, each with its own deduplication id, as under
// load; redis-µs/alloc is the Redis server's own CPU per allocation.
func BenchmarkScript(b *testing.B) {
	r := testenv.StartRedis(b)
	client := redis.NewClient(&redis.Options{Addr: r.Addr(), Protocol: 2})
	b.Cleanup(func() { client.Close() })
	c := quota.NewConfig()
	c.RateLimitAlgorithm = quota.FixedWindow
	c.Quotas = []quota.Quota{{Name: "rq", MaxAmount: 1 << 40, ValidDuration: time.Second}}
	set, err := quota.NewSet(&c)
	if err != nil {
		b.Fatal(err)
	}
	counter, _ := set.Counter("rq", map[string]any{"destination": "web"})
	for _, n := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprint("batch=", n), func(b *testing.B) {
			ctx := context.Background()
			cpu0 := redisCPU(b, client)
			seq := 0
			for b.Loop() {
				g := &group{counter: counter, dedup: set.Dedup()}
				for range n {
					seq++
					g.calls = append(g.calls, &call{req: quota.Request{Counter: counter, Amount: 1, DeduplicationID: strconv.Itoa(seq), Dedup: set.Dedup(), Now: time.Now()}})
				}
				if err := runGroups(ctx, client, []*group{g})[0]; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((redisCPU(b, client)-cpu0).Seconds()*1e6/float64(seq), "redis-µs/alloc")
		})
	}
}

// redisCPU is the Redis server's CPU time so far (INFO cpu).
func redisCPU(tb testing.TB, c *redis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
