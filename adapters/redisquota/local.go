package redisquota

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/quota"
)

const (
	// localShards spreads counters over locks, as quota.MemStore does.
	localShards = 32
	// minLease is the smallest lease worth taking: a block of one unit
	// saves no round trip.
	minLease = 2
	// ratePeriod is the shortest span a counter's rate of allocations is
	// measured over before it sizes a lease.
	ratePeriod = 10 * time.Millisecond
	// localSweepEvery is how often a shard drops stale deduplication
	// records and counters idle for idleAfter.
	localSweepEvery = time.Second
	idleAfter       = 10 * time.Second
)

// local is what a handler answers without Redis: repeats of deduplication
// ids it answered, allocations paid from a lease it holds, and denials of
// counters Redis said are exhausted. See the package documentation.
type local struct {
	seed      maphash.Seed
	shards    [localShards]localShard
	fraction  float64       // localLease.maxFraction; 0: no leases
	duration  time.Duration // localLease.maxDuration
	overLimit bool
	m         localMetrics
	// wake starts the flusher (lease.go) when there is lease work.
	wake chan struct{}
}

type localMetrics struct {
	lease, overLimit, duplicate prometheus.Counter
	taken, returned             prometheus.Counter
}

type localShard struct {
	mu        sync.Mutex
	counters  map[string]*counterState
	lastSweep time.Time
}

type dedupEntry struct {
	result  quota.Result
	expires time.Time
}

// counterState is what the handler knows of one counter. Guarded by its
// shard's mutex.
type counterState struct {
	counter quota.Counter
	// cap is the most one lease may take: maxFraction of the smallest
	// max of the counter's windows. Below minLease the counter never
	// leases.
	cap   int64
	lease lease
	// pending is closed when the lease call in flight ends.
	pending chan struct{}
	// demand is what was asked since since; rate, in units per second,
	// is from the last ratePeriod or more.
	demand int64
	since  time.Time
	rate   float64
	deny   denial
	// seen are the answers given to deduplication ids, by id.
	seen map[string]dedupEntry
	// records and refunds wait for the flusher.
	dedup   time.Duration
	records []record
	refunds []refund
	used    time.Time
}

// lease is a block of units taken from Redis, charged there in the slot of
// at, answered from here for allocations whose clock is from at until
// expires (at most the end of that slot in every window): each unit counts
// in Redis in the slot of the allocation it pays for, as if charged then.
type lease struct {
	tokens, taken int64
	// at is when it was charged; from..expires is when its units may be
	// used: within the slot of at in every window.
	at, from, expires time.Time
	// The answer of the allocation that took it: the lease's answers
	// are that one's, with remaining less what the lease paid since.
	valid     time.Duration
	limit     int64
	remaining int64
	resetAtUs int64
}

// denial is Redis's answer to an allocation of want units (one for best
// effort) that did not fit, which every allocation of want gets until
// untilUs: the earlier of when it would fit and when the usage that blocks
// it first frees (the answer's remaining changes then).
type denial struct {
	want      int64
	untilUs   int64 // 0: none
	resetAtUs int64
	limit     int64
	remaining int64
}

// record is an allocation answered from a lease with a deduplication id:
// written to Redis by the flusher under the id's key, as the script
// writes its own answers, unless the id is there already (answered
// before, here or by another mixer), in which case the units go back.
type record struct {
	id     string
	amount int64
	at     time.Time // the lease's
	result adapters.QuotaResult
}

// refund gives amount units charged at at back to the counter.
type refund struct {
	at     time.Time
	amount int64
}

func newLocal(c *Config, m localMetrics) *local {
	l := &local{
		seed:      maphash.MakeSeed(),
		fraction:  c.LocalLease.MaxFraction,
		duration:  c.LocalLease.MaxDuration,
		overLimit: c.OverLimitCache,
		m:         m,
		wake:      make(chan struct{}, 1),
	}
	for i := range l.shards {
		l.shards[i].counters = make(map[string]*counterState)
	}
	return l
}

// state returns req's counter state with its shard locked.
func (l *local) state(req *quota.Request) (*localShard, *counterState) {
	sh := &l.shards[maphash.String(l.seed, req.Counter.Key)%localShards]
	sh.mu.Lock()
	sh.sweep(req.Now)
	cs := sh.counters[req.Counter.Key]
	if cs == nil {
		cs = &counterState{counter: req.Counter, since: req.Now, dedup: req.Dedup}
		if l.fraction > 0 {
			smallest := int64(math.MaxInt64)
			for _, lm := range req.Counter.Limits {
				smallest = min(smallest, lm.Max)
			}
			cs.cap = int64(l.fraction * float64(smallest))
		}
		sh.counters[req.Counter.Key] = cs
	}
	cs.used = req.Now
	return sh, cs
}

func (l *local) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func dedups(req *quota.Request) bool { return req.DeduplicationID != "" && req.Dedup > 0 }

// want is the units a denial of req is about: one for best effort.
func want(req *quota.Request) int64 {
	if req.BestEffort {
		return 1
	}
	return req.Amount
}

// answer answers req locally when it can. Called with cs's shard locked.
func (l *local) answer(cs *counterState, req *quota.Request) (quota.Result, bool) {
	now := req.Now
	if dedups(req) {
		if e, ok := cs.seen[req.DeduplicationID]; ok && now.Before(e.expires) {
			l.m.duplicate.Inc()
			r := e.result
			r.Duplicate = true
			return r, true
		}
	}
	if req.Amount == 0 {
		return quota.Result{}, false
	}
	if ls := &cs.lease; ls.tokens >= req.Amount && ls.covers(now) {
		ls.tokens -= req.Amount
		r := quota.Result{QuotaResult: adapters.QuotaResult{
			Amount:        req.Amount,
			ValidDuration: ls.valid,
			Limit:         ls.limit,
			Remaining:     ls.remaining - (ls.taken - ls.tokens),
			Reset:         untilUs(ls.resetAtUs, now),
		}}
		l.m.lease.Inc()
		if dedups(req) {
			cs.remember(req, r)
			if len(cs.records) == 0 && len(cs.refunds) == 0 {
				l.kick()
			}
			cs.records = append(cs.records, record{id: req.DeduplicationID, amount: req.Amount, at: ls.at, result: r.QuotaResult})
		}
		return r, true
	}
	if d := &cs.deny; d.untilUs != 0 && want(req) == d.want {
		if nowUs := now.UnixMicro(); nowUs < d.untilUs {
			retry := time.Duration(d.resetAtUs-nowUs) * time.Microsecond
			r := quota.Result{QuotaResult: adapters.QuotaResult{ValidDuration: retry, Limit: d.limit, Remaining: d.remaining, Reset: retry}}
			l.m.overLimit.Inc()
			if dedups(req) {
				cs.remember(req, r)
			}
			return r, true
		}
		cs.deny = denial{}
	}
	return quota.Result{}, false
}

// covers reports whether an allocation at now may be paid from the
// lease: in the slot it was charged in, in every window.
func (ls *lease) covers(now time.Time) bool {
	return !now.Before(ls.from) && now.Before(ls.expires)
}

// remember keeps r as the answer to req's deduplication id.
func (cs *counterState) remember(req *quota.Request, r quota.Result) {
	if cs.seen == nil {
		cs.seen = make(map[string]dedupEntry)
	}
	cs.seen[req.DeduplicationID] = dedupEntry{result: r, expires: req.Now.Add(req.Dedup)}
}

// untilUs is the time from now to the Unix time atUs (µs), at least 1µs,
// as the script computes it.
func untilUs(atUs int64, now time.Time) time.Duration {
	return time.Duration(max(atUs-now.UnixMicro(), 1)) * time.Microsecond
}

// leaseWant is how many units req's call to Redis should lease for the
// counter, and until when the lease would hold: the counter's recent rate
// over the lease's time, at most cap; 0 when not worth it. Called with the
// shard locked.
func (l *local) leaseWant(cs *counterState, req *quota.Request) (int64, time.Time) {
	if cs.cap < minLease || req.Amount == 0 || cs.pending != nil {
		return 0, time.Time{}
	}
	if ls := &cs.lease; ls.tokens >= req.Amount && req.Now.Before(ls.expires) {
		// The lease is live; this allocation's clock is from before its
		// slot (read before it came): one call, no new lease.
		return 0, time.Time{}
	}
	now := req.Now
	if el := now.Sub(cs.since); el >= ratePeriod {
		cs.rate = float64(cs.demand) / el.Seconds()
		cs.demand, cs.since = 0, now
	}
	if cs.rate <= 0 {
		return 0, time.Time{}
	}
	end := leaseEnd(cs.counter.Limits, now, l.duration)
	n := min(int64(math.Ceil(cs.rate*end.Sub(now).Seconds())), cs.cap)
	if n < minLease {
		return 0, time.Time{}
	}
	return n, end
}

// leaseEnd is when a lease taken at now ends: after d, or when now's slot
// of any window ends, whichever comes first.
func leaseEnd(ls []quota.Limit, now time.Time, d time.Duration) time.Time {
	end := now.Add(d)
	for _, l := range ls {
		if e := time.Unix(0, (l.Slot(now)+1)*int64(l.Bucket)); e.Before(end) {
			end = e
		}
	}
	return end
}

// slotsStart is when the slots of now in all windows of ls began: the
// latest of their starts.
func slotsStart(ls []quota.Limit, now time.Time) time.Time {
	var start time.Time
	for _, l := range ls {
		if s := time.Unix(0, l.Slot(now)*int64(l.Bucket)); s.After(start) {
			start = s
		}
	}
	return start
}

// live reports whether units charged at at still count in some window of
// ls at now: only then is giving them back worth a call.
func live(ls []quota.Limit, at, now time.Time) bool {
	for _, l := range ls {
		if l.Slot(now)-l.Slot(at) <= l.Slots {
			return true
		}
	}
	return false
}

// learn takes in what Redis answered to c: the deduplication record, the
// counter's denial or its end, and the lease c took. It runs when the call
// ends, whether or not its caller still waits.
func (l *local) learn(sh *localShard, cs *counterState, c *call, leasing bool, end time.Time) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if leasing {
		close(cs.pending)
		cs.pending = nil
	}
	if c.err != nil {
		return
	}
	req, res := &c.req, c.res
	if res.Duplicate {
		return
	}
	if dedups(req) {
		cs.remember(req, res)
	}
	switch {
	case res.Amount > 0:
		cs.deny = denial{}
	case req.Amount > 0 && l.overLimit && c.stable > 0 && fits(cs.counter.Limits, want(req)):
		nowUs := req.Now.UnixMicro()
		until := min(c.stable, res.Reset)
		if cs.cap >= minLease {
			// Other mixers' leases may give units back before then:
			// ask again after a lease's time.
			until = min(until, l.duration)
		}
		cs.deny = denial{
			want:      want(req),
			untilUs:   nowUs + until.Microseconds(),
			resetAtUs: nowUs + res.Reset.Microseconds(),
			limit:     res.Limit,
			remaining: res.Remaining,
		}
	}
	if c.leased > 0 {
		l.m.taken.Add(float64(c.leased))
		if old := cs.lease; old.tokens > 0 && live(cs.counter.Limits, old.at, req.Now) {
			cs.refunds = append(cs.refunds, refund{at: old.at, amount: old.tokens})
		}
		cs.lease = lease{
			tokens: c.leased, taken: c.leased, at: req.Now, from: slotsStart(cs.counter.Limits, req.Now), expires: end,
			valid: res.ValidDuration, limit: res.Limit, remaining: res.Remaining,
			resetAtUs: req.Now.UnixMicro() + res.Reset.Microseconds(),
		}
		l.kick()
	}
}

// fits reports whether n fits in every window's max: a denial of more
// says "retry after the window's length" from whenever it is asked, which
// is no answer to keep.
func fits(ls []quota.Limit, n int64) bool {
	for _, l := range ls {
		if n > l.Max {
			return false
		}
	}
	return true
}

// clearDenials forgets every denial: while Redis is unreachable, the
// rule's failPolicy decides, not what Redis said before.
func (l *local) clearDenials() {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for _, cs := range sh.counters {
			cs.deny = denial{}
		}
		sh.mu.Unlock()
	}
}

// sweep drops stale deduplication records and idle counters, at most once
// per localSweepEvery. Called with s locked.
func (s *localShard) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < localSweepEvery && !now.Before(s.lastSweep) {
		return
	}
	s.lastSweep = now
	for k, cs := range s.counters {
		for id, e := range cs.seen {
			if !now.Before(e.expires) {
				delete(cs.seen, id)
			}
		}
		if now.Sub(cs.used) > idleAfter && len(cs.seen) == 0 && cs.pending == nil && cs.lease.tokens == 0 && len(cs.records) == 0 && len(cs.refunds) == 0 {
			delete(s.counters, k)
		}
	}
}

// allocateLocal is store.Allocate with the local answers in front of Redis.
func (s *store) allocateLocal(ctx context.Context, req quota.Request) (quota.Result, error) {
	l := s.local
	sh, cs := l.state(&req)
	cs.demand += req.Amount
	for {
		if r, ok := l.answer(cs, &req); ok {
			sh.mu.Unlock()
			return r, nil
		}
		if cs.pending == nil || cs.cap < minLease || req.Amount == 0 {
			break
		}
		// A lease is on its way: wait for it rather than ask Redis too.
		p := cs.pending
		sh.mu.Unlock()
		select {
		case <-p:
		case <-ctx.Done():
			return quota.Result{}, &backendError{context.Cause(ctx)}
		}
		sh.mu.Lock()
	}
	n, end := l.leaseWant(cs, &req)
	if n > 0 {
		cs.pending = make(chan struct{})
	}
	sh.mu.Unlock()
	after := func(c *call) { l.learn(sh, cs, c, n > 0, end) }
	if !s.breaker.allow() {
		err := s.openErr()
		after(&call{err: err})
		return quota.Result{}, err
	}
	c, err := s.batcher.allocate(ctx, req, n, after)
	if err != nil {
		return quota.Result{}, err
	}
	return c.res, nil
}
