package redisquota

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/quota"
)

// leaseLua gives leased units back and records the deduplication ids
// answered from leases: see lease.lua.
//
//go:embed lease.lua
var leaseLua string

var leaseScript = redis.NewScript(leaseLua)

const (
	// flushInterval is how long lease work (records, units to give back)
	// gathers before one script call per counter takes it to Redis. A
	// retry reaching another mixer within it is charged there and given
	// back when the record arrives.
	flushInterval = 10 * time.Millisecond
	// maxRecords bounds the records of one script call (Lua's unpack of
	// the keys for MGET has a limit in the thousands).
	maxRecords = 1000
)

// flushWork is one script call: what a counter's leases owe Redis.
type flushWork struct {
	counter quota.Counter
	dedup   time.Duration
	records []record
	refunds []refund
}

// flushLoop sends lease work every flushInterval while there is any, and
// gives back the unused units of expired leases.
func (s *store) flushLoop() {
	defer s.flushWG.Done()
	t := time.NewTimer(flushInterval)
	t.Stop()
	for {
		select {
		case <-s.flushStop:
			return
		case <-s.local.wake:
		}
		for more := true; more; {
			t.Reset(flushInterval)
			select {
			case <-s.flushStop:
				t.Stop()
				return
			case <-t.C:
			}
			more = s.flush(false)
		}
	}
}

// flush takes the lease work of every counter to Redis; with all, it
// gives back every lease (the handler closes). It reports whether a lease
// is still live, so that the loop comes back for it.
func (s *store) flush(all bool) bool {
	l := s.local
	now := s.now()
	var work []flushWork
	more := false
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for _, cs := range sh.counters {
			ls := &cs.lease
			if ls.tokens > 0 {
				if all || !now.Before(ls.expires) {
					if live(cs.counter.Limits, ls.at, now) {
						cs.refunds = append(cs.refunds, refund{at: ls.at, amount: ls.tokens})
					}
					ls.tokens = 0
				} else {
					more = true
				}
			}
			if len(cs.records) == 0 && len(cs.refunds) == 0 {
				continue
			}
			// A pending deduplication record also keeps the loop going:
			// its lease may take more.
			more = more || len(cs.records) > 0
			for recs := cs.records; len(recs) > 0 || len(cs.refunds) > 0; {
				n := min(len(recs), maxRecords)
				work = append(work, flushWork{counter: cs.counter, dedup: cs.dedup, records: recs[:n], refunds: cs.refunds})
				recs, cs.refunds = recs[n:], nil
			}
			cs.records = nil
		}
		sh.mu.Unlock()
	}
	if len(work) > 0 {
		s.sendLeaseWork(now, work)
	}
	return more
}

// sendLeaseWork sends one script call per work item, in one pipeline.
// Failed work is dropped: units not given back only leave the counter
// under its max until their slot frees, and an id not recorded lets a
// retry on another mixer be charged again.
func (s *store) sendLeaseWork(now time.Time, work []flushWork) {
	if !s.breaker.allow() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	cmds := make([]*redis.Cmd, len(work))
	_, _ = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range work {
			keys, args := work[i].keysAndArgs(now)
			cmds[i] = leaseScript.EvalSha(ctx, p, keys, args...)
		}
		return nil
	})
	ok := false
	for i, cmd := range cmds {
		err := cmd.Err()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			keys, args := work[i].keysAndArgs(now)
			cmd = leaseScript.Eval(ctx, s.client, keys, args...)
		}
		v, err := cmd.Int64Slice()
		if err == nil && len(v) != 2 {
			err = fmt.Errorf("lease script returned %d values, want 2", len(v))
		}
		if err != nil {
			s.m.errors.WithLabelValues(s.name).Inc()
			s.breaker.failure(err)
			continue
		}
		ok = true
		s.local.m.returned.Add(float64(v[0]))
	}
	if ok {
		s.breaker.success()
	}
}

// keysAndArgs are lease.lua's KEYS and ARGV for w.
func (w *flushWork) keysAndArgs(now time.Time) ([]string, []any) {
	base := keyPrefix + "{" + w.counter.Key + "}:"
	ls := w.counter.Limits
	keys := make([]string, 0, len(ls)+len(w.records))
	for _, l := range ls {
		keys = append(keys, base+l.Layout())
	}
	args := make([]any, 0, 6+2*len(ls)+2*len(w.refunds)+2*len(w.records))
	args = append(args, len(ls), max(w.dedup.Milliseconds(), 1), now.UnixMicro())
	for _, l := range ls {
		args = append(args, l.Bucket.Microseconds(), l.Slots)
	}
	args = append(args, len(w.refunds))
	for _, r := range w.refunds {
		args = append(args, r.at.UnixMicro(), r.amount)
	}
	var buf []byte
	for i := 0; i < len(w.records); {
		at := w.records[i].at
		j := i + 1
		for j < len(w.records) && w.records[j].at.Equal(at) {
			j++
		}
		args = append(args, at.UnixMicro(), j-i)
		for _, r := range w.records[i:j] {
			keys = append(keys, base+"dedup:"+r.id)
			buf = appendRecord(buf[:0], r.result)
			args = append(args, r.amount, string(buf))
		}
		i = j
	}
	return keys, args
}

// appendRecord renders an answer as allocate.lua records it:
// granted,validDuration,limit,remaining,reset, durations in µs.
func appendRecord(b []byte, r adapters.QuotaResult) []byte {
	b = strconv.AppendInt(b, r.Amount, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.ValidDuration.Microseconds(), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.Limit, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.Remaining, 10)
	b = append(b, ',')
	return strconv.AppendInt(b, r.Reset.Microseconds(), 10)
}
