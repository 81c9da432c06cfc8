package redisquota

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/quota"
)

// allocateLua is one allocation, atomic in Redis: quota.Decide in Lua.
//
//go:embed allocate.lua
var allocateLua string

var allocateScript = redis.NewScript(allocateLua)

// keyPrefix starts every key the adapter writes.
const keyPrefix = "sidemix:quota:"

// keys returns the hash key of each window of c and, when dedupID is set,
// the deduplication key. The counter key inside braces is a Redis Cluster
// hash tag: all keys of one allocation land in one slot.
func keys(c quota.Counter, dedupID string) []string {
	base := keyPrefix + "{" + c.Key + "}:"
	ks := make([]string, 0, len(c.Limits)+1)
	for _, l := range c.Limits {
		ks = append(ks, base+l.Layout())
	}
	if dedupID != "" {
		ks = append(ks, base+"dedup:"+dedupID)
	}
	return ks
}

// runScript runs one allocation. Durations travel in microseconds, which
// Lua's doubles hold exactly for the next few centuries.
func runScript(ctx context.Context, c redis.Scripter, req quota.Request) (quota.Result, error) {
	dedupID, dedupMs := "", int64(0)
	if req.DeduplicationID != "" && req.Dedup > 0 {
		dedupID, dedupMs = req.DeduplicationID, max(req.Dedup.Milliseconds(), 1)
	}
	best := "0"
	if req.BestEffort {
		best = "1"
	}
	args := make([]any, 0, 4+4*len(req.Counter.Limits))
	args = append(args, req.Now.UnixMicro(), req.Amount, best, dedupMs)
	for _, l := range req.Counter.Limits {
		args = append(args, l.Max, l.Valid.Microseconds(), l.Bucket.Microseconds(), l.Slots)
	}
	v, err := allocateScript.Run(ctx, c, keys(req.Counter, dedupID), args...).Int64Slice()
	if err != nil {
		return quota.Result{}, err
	}
	if len(v) != 6 {
		return quota.Result{}, fmt.Errorf("allocation script returned %d values, want 6", len(v))
	}
	us := func(n int64) time.Duration { return time.Duration(n) * time.Microsecond }
	return quota.Result{
		Duplicate: v[0] == 1,
		QuotaResult: adapters.QuotaResult{
			Amount:        v[1],
			ValidDuration: us(v[2]),
			Limit:         v[3],
			Remaining:     v[4],
			Reset:         us(v[5]),
		},
	}, nil
}
