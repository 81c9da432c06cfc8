package redisquota

import (
	"context"
	_ "embed"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/quota"
)

// allocateLua is a batch of allocations against one counter, atomic in
// Redis: quota.Decide in Lua, once per allocation.
//
//go:embed allocate.lua
var allocateLua string

var allocateScript = redis.NewScript(allocateLua)

// keyPrefix starts every key the adapter writes.
const keyPrefix = "sidemix:quota:"

// resultLen is how many integers the script returns per allocation.
const resultLen = 8

// group is the allocations of one batch that go to one counter: one
// script call. The counter key inside braces is a Redis Cluster hash tag,
// so all keys of one call land in one slot.
type group struct {
	counter quota.Counter
	dedup   time.Duration
	calls   []*call
}

// has reports whether req goes to g's counter, limits included, with the
// same deduplication time.
func (g *group) has(req *quota.Request) bool {
	c := req.Counter
	return g.counter.Key == c.Key && g.dedup == req.Dedup && slices.EqualFunc(g.counter.Limits, c.Limits, func(a, b quota.Limit) bool {
		return a.Max == b.Max && a.Valid == b.Valid && a.Bucket == b.Bucket && a.Slots == b.Slots
	})
}

// keysAndArgs are the script's KEYS and ARGV for g. Durations travel in
// microseconds, which Lua's doubles hold exactly for the next few
// centuries.
func (g *group) keysAndArgs() ([]string, []any) {
	base := keyPrefix + "{" + g.counter.Key + "}:"
	ls := g.counter.Limits
	keys := make([]string, 0, len(ls)+len(g.calls))
	for _, l := range ls {
		keys = append(keys, base+l.Layout())
	}
	dedupMs := int64(0)
	if g.dedup > 0 {
		dedupMs = max(g.dedup.Milliseconds(), 1)
	}
	args := make([]any, 0, 2+4*len(ls)+5*len(g.calls))
	args = append(args, len(ls), dedupMs)
	for _, l := range ls {
		args = append(args, l.Max, l.Valid.Microseconds(), l.Bucket.Microseconds(), l.Slots)
	}
	for _, c := range g.calls {
		r := &c.req
		best := 0
		if r.BestEffort {
			best = 1
		}
		dk := 0
		if dedupMs > 0 && r.DeduplicationID != "" {
			keys = append(keys, base+"dedup:"+r.DeduplicationID)
			dk = len(keys)
		}
		args = append(args, r.Now.UnixMicro(), r.Amount, best, dk, c.lease)
	}
	return keys, args
}

// results hands the script's answer to g's calls.
func (g *group) results(v []int64) error {
	if len(v) != resultLen*len(g.calls) {
		return fmt.Errorf("allocation script returned %d values for %d allocations, want %d", len(v), len(g.calls), resultLen*len(g.calls))
	}
	us := func(n int64) time.Duration { return time.Duration(n) * time.Microsecond }
	for i, c := range g.calls {
		r := v[i*resultLen : (i+1)*resultLen]
		c.res = quota.Result{
			Duplicate: r[0] == 1,
			QuotaResult: adapters.QuotaResult{
				Amount:        r[1],
				ValidDuration: us(r[2]),
				Limit:         r[3],
				Remaining:     r[4],
				Reset:         us(r[5]),
			},
		}
		c.leased, c.stable = r[6], us(r[7])
	}
	return nil
}

// runGroups runs one script call per group, in one pipeline when there
// are several: one write and one read on one connection for the whole
// batch. A script Redis does not have yet (NOSCRIPT: a restarted or
// flushed Redis) is sent again in full; NOSCRIPT means it did not run.
// It returns each group's error.
func runGroups(ctx context.Context, c *redis.Client, gs []*group) []error {
	errs := make([]error, len(gs))
	cmds := make([]*redis.Cmd, len(gs))
	if len(gs) == 1 {
		keys, args := gs[0].keysAndArgs()
		cmds[0] = allocateScript.EvalSha(ctx, c, keys, args...)
	} else {
		// The pipeline's own error is the first command's; each command
		// carries its own.
		_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, g := range gs {
				keys, args := g.keysAndArgs()
				cmds[i] = allocateScript.EvalSha(ctx, p, keys, args...)
			}
			return nil
		})
	}
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			keys, args := gs[i].keysAndArgs()
			cmd = allocateScript.Eval(ctx, c, keys, args...)
		}
		v, err := cmd.Int64Slice()
		if err == nil {
			err = gs[i].results(v)
		}
		errs[i] = err
	}
	return errs
}
