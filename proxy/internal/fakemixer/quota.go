package fakemixer

import (
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

// Quota answers Checks the way the mixer does for one quota bound to the
// service by a QuotaSpec: a Check that names no quotas is charged Charge and
// told so in quota_charges (with a cacheable precondition); a Check that
// names the quota gets the amount it asks for (best effort: what is left).
// The counter is a fixed window of Window per value of Dims, kept in memory
// and shared by every fake mixer whose RequestFunc is q.Check, as a Redis
// would be. A repeated deduplication id gets the first answer's grant and
// is not charged again.
type Quota struct {
	Name   string
	Charge int64
	Limit  int64
	Window time.Duration
	// Dims are the attributes the quota is keyed on (its dimensions).
	Dims []string
	// Refs are the precondition's referenced attributes.
	Refs []attribute.Reference
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	used    map[string]int64 // by window start and dimension values
	dedup   map[string]int64
	granted int64
	calls   int
}

// Granted is the sum of every amount granted.
func (q *Quota) Granted() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.granted
}

// Allocations is the number of allocations made (deduplicated ones not
// counted).
func (q *Quota) Allocations() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.calls
}

// Check is a RequestFunc.
func (q *Quota) Check(bag *attribute.Bag, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	now := time.Now()
	if q.Now != nil {
		now = q.Now()
	}
	amount, bestEffort := q.Charge, false
	explicit := len(req.GetQuotas()) > 0
	if explicit {
		p, ok := req.GetQuotas()[q.Name]
		if !ok {
			return Allow(time.Minute, 10000, q.Refs...), nil
		}
		amount, bestEffort = p.GetAmount(), p.GetBestEffort()
	}
	start := now.Truncate(q.Window)
	key := start.String()
	dimRefs := make([]attribute.Reference, 0, len(q.Dims))
	for _, d := range q.Dims {
		v, ok := bag.Get(d)
		key += "\x00" + d + "=" + v.String()
		dimRefs = append(dimRefs, attribute.Reference{Name: d, Present: ok})
	}
	reset := start.Add(q.Window).Sub(now)

	q.mu.Lock()
	if q.used == nil {
		q.used = map[string]int64{}
		q.dedup = map[string]int64{}
	}
	granted, seen := q.dedup[req.GetDeduplicationId()]
	if !seen {
		left := q.Limit - q.used[key]
		switch {
		case amount <= left:
			granted = amount
		case bestEffort && left > 0:
			granted = left
		}
		q.used[key] += granted
		q.granted += granted
		q.calls++
		if id := req.GetDeduplicationId(); id != "" {
			q.dedup[id] = granted
		}
	}
	remaining := q.Limit - q.used[key]
	q.mu.Unlock()

	valid := q.Window
	if granted == 0 {
		valid = reset
	}
	r := Allow(time.Minute, 10000, q.Refs...)
	if granted == 0 {
		r = Answer(codes.ResourceExhausted, `quota "`+q.Name+`" exhausted`, 0, 1, q.Refs...)
	}
	WithQuotaResult(r, q.Name, QuotaResult{Granted: granted, Valid: valid, Limit: q.Limit, Remaining: remaining, Reset: reset, Refs: dimRefs})
	if !explicit {
		WithCharges(r, q.Name, int(q.Charge))
	}
	return r, nil
}
