package quota

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

var _ Store = (*MemStore)(nil)

const (
	// shardCount spreads counters over locks so that unrelated counters do
	// not contend; each counter is exact under its shard's lock.
	shardCount = 32
	// sweepEvery is how often a shard drops idle windows and stale
	// deduplication entries.
	sweepEvery = time.Second
)

// MemStore keeps counters in memory. It starts no goroutines: idle windows
// and stale deduplication entries are dropped by later allocations.
type MemStore struct {
	seed   maphash.Seed
	shards [shardCount]shard
}

type shard struct {
	mu        sync.Mutex
	rings     map[ringKey]*ring
	dedup     map[dedupKey]dedupEntry
	lastSweep time.Time
}

type ringKey struct{ counter, layout string }

type dedupKey struct{ id, counter string }

type dedupEntry struct {
	result  Result
	expires time.Time
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	m := &MemStore{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].rings = make(map[ringKey]*ring)
		m.shards[i].dedup = make(map[dedupKey]dedupEntry)
	}
	return m
}

// Allocate implements Store. It never fails.
func (m *MemStore) Allocate(_ context.Context, req Request) (Result, error) {
	c := req.Counter
	now := req.Now
	// All windows of a counter share a shard, so one lock makes charging
	// them all or none atomic.
	sh := &m.shards[maphash.String(m.seed, c.Key)%shardCount]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(now)

	dedup := req.DeduplicationID != "" && req.Dedup > 0
	dk := dedupKey{req.DeduplicationID, c.Key}
	if dedup {
		if e, ok := sh.dedup[dk]; ok && now.Before(e.expires) {
			r := e.result
			r.Duplicate = true
			return r, nil
		}
	}
	var buf [4]Usage
	us := buf[:0]
	for _, l := range c.Limits {
		k := ringKey{c.Key, l.Layout()}
		r := sh.rings[k]
		if r == nil {
			r = newRing(l, now)
			sh.rings[k] = r
		}
		r.advance(now)
		us = append(us, r)
	}
	res := Result{QuotaResult: Decide(now, c.Limits, us, req.Amount, req.BestEffort)}
	if res.Amount > 0 {
		for _, u := range us {
			u.(*ring).charge(res.Amount)
		}
	}
	if dedup {
		sh.dedup[dk] = dedupEntry{result: res, expires: now.Add(req.Dedup)}
	}
	return res, nil
}

// Size returns the number of windows and deduplication entries held, for
// tests of the sweep.
func (m *MemStore) Size() (windows, dedup int) {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		windows += len(s.rings)
		dedup += len(s.dedup)
		s.mu.Unlock()
	}
	return windows, dedup
}

// sweep drops idle windows and expired deduplication entries, at most once
// per sweepEvery, so that memory follows the live counters.
func (s *shard) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < sweepEvery && !now.Before(s.lastSweep) {
		return
	}
	s.lastSweep = now
	for k, r := range s.rings {
		if r.idle(now) {
			delete(s.rings, k)
		}
	}
	for k, e := range s.dedup {
		if !now.Before(e.expires) {
			delete(s.dedup, k)
		}
	}
}

// ring is one window's usage: the Slots+1 slots that can still count, so
// memory per window is fixed. Its limit's Max is not used: the caller's
// current limit applies.
type ring struct {
	l      Limit
	slots  []int64 // slot number each entry holds
	counts []int64
	last   int64 // latest slot seen; the clock never goes back from here
}

func newRing(l Limit, now time.Time) *ring {
	r := &ring{l: l, slots: make([]int64, l.Slots+1), counts: make([]int64, l.Slots+1)}
	r.last = l.Slot(now)
	for i := range r.slots {
		r.slots[i] = r.last - l.Slots - 1 // expired
	}
	return r
}

// advance moves to now's slot. A clock stepping back must not make usage
// look expired or overwrite newer slots: the ring stays in the latest slot
// seen, which only holds usage longer.
func (r *ring) advance(now time.Time) { r.last = max(r.last, r.l.Slot(now)) }

func (r *ring) index(s int64) int {
	n := int64(len(r.slots))
	return int((s%n + n) % n) // slots before 1970 are negative
}

func (r *ring) live(s int64) bool { return r.last-s <= r.l.Slots }

// Used implements Usage.
func (r *ring) Used() int64 {
	var sum int64
	for i, s := range r.slots {
		if r.live(s) {
			sum += r.counts[i]
		}
	}
	return sum
}

// FreedAt implements Usage.
func (r *ring) FreedAt(need int64) (time.Time, bool) {
	var freed int64
	for s := r.last - r.l.Slots; s <= r.last; s++ {
		if i := r.index(s); r.slots[i] == s {
			freed += r.counts[i]
		}
		if freed >= need {
			return r.l.Expiry(s), true
		}
	}
	return time.Time{}, false
}

func (r *ring) charge(n int64) {
	i := r.index(r.last)
	if r.slots[i] != r.last {
		r.slots[i], r.counts[i] = r.last, 0
	}
	r.counts[i] += n
}

// idle reports whether nothing charged to r still counts at now.
func (r *ring) idle(now time.Time) bool { return r.l.Slot(now)-r.last > r.l.Slots }
