package quota

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

// Store keeps counters: memory in memquota, Redis in redisquota. Every
// store implements the same semantics, which Decide spells out.
type Store interface {
	// Allocate charges req.Amount to every window of req.Counter or to
	// none, atomically with respect to other allocations of the counter.
	Allocate(ctx context.Context, req Request) (Result, error)
}

// Request is one allocation, resolved.
type Request struct {
	Counter    Counter
	Amount     int64
	BestEffort bool
	// DeduplicationID, when not empty and Dedup is positive, makes a
	// repeat within Dedup (same id, same Counter.Key) return the first
	// result and charge nothing.
	DeduplicationID string
	Dedup           time.Duration
	// Now is the mixer's clock, never the store's.
	Now time.Time
}

// Result is an allocation's outcome.
type Result struct {
	adapters.QuotaResult
	// Duplicate is set when the result is a deduplicated repeat's.
	Duplicate bool
}

// Outcome names the result for metrics: duplicate, granted (all asked,
// or nothing asked), partial or denied.
func (r Result) Outcome(asked int64) string {
	switch {
	case r.Duplicate:
		return "duplicate"
	case r.Amount == asked:
		return "granted"
	case r.Amount > 0:
		return "partial"
	default:
		return "denied"
	}
}

// Usage is one window's live usage as a store sees it at the time of an
// allocation.
type Usage interface {
	// Used is what the window counts now.
	Used() int64
	// FreedAt is when at least need units of that usage will have left the
	// window; false when the window does not hold that much.
	FreedAt(need int64) (time.Time, bool)
}

// Decide is the algorithm every store runs, given the usage of each of
// the limits' windows (us[i] for limits[i]):
//
//   - The amount is granted when it fits in what every window has left,
//     and then charged to all of them (the store does that); otherwise
//     nothing is charged, and a best-effort allocation is granted what the
//     tightest window has left instead (0 is a denial).
//   - Limit is the max of the window with the least left after the
//     allocation, Remaining what that window has left.
//   - On a grant, ValidDuration is the shortest window's length and Reset
//     the time until the tightest window's usage starts to free (the next
//     time Remaining grows; a fixed window's end).
//   - On a denial, ValidDuration and Reset are the time until the request
//     (one unit for best effort) would fit every window, assuming nothing
//     else is charged meanwhile, and Limit/Remaining are those of the
//     window that blocks longest. A request above a window's max can never
//     fit; it is told to retry after that window's length.
func Decide(now time.Time, limits []Limit, us []Usage, amount int64, bestEffort bool) adapters.QuotaResult {
	minLeft := int64(math.MaxInt64)
	valid := time.Duration(math.MaxInt64)
	for i, l := range limits {
		minLeft = min(minLeft, max(l.Max-us[i].Used(), 0))
		valid = min(valid, l.Valid)
	}
	granted := amount
	if amount > minLeft {
		granted = 0
		if bestEffort {
			granted = minLeft
		}
	}
	if granted > 0 || amount == 0 {
		t, tLeft := 0, int64(math.MaxInt64)
		for i, l := range limits {
			if left := max(l.Max-us[i].Used(), 0) - granted; left < tLeft {
				t, tLeft = i, left
			}
		}
		// Charged in the current slot, which frees last: what frees first
		// is what was there before, if anything.
		reset := limits[t].Expiry(limits[t].Slot(now))
		if us[t].Used() > 0 {
			reset, _ = us[t].FreedAt(1)
		}
		return adapters.QuotaResult{Amount: granted, ValidDuration: valid, Limit: limits[t].Max, Remaining: tLeft, Reset: positive(reset.Sub(now))}
	}
	want := amount
	if bestEffort {
		want = 1
	}
	t, retry := 0, time.Duration(0)
	for i, l := range limits {
		used := us[i].Used()
		need := used + want - l.Max
		if need <= 0 {
			continue
		}
		d := l.Valid
		if want <= l.Max {
			if at, ok := us[i].FreedAt(need); ok {
				d = positive(at.Sub(now))
			}
		}
		if d > retry {
			t, retry = i, d
		}
	}
	return adapters.QuotaResult{ValidDuration: retry, Limit: limits[t].Max, Remaining: max(limits[t].Max-us[t].Used(), 0), Reset: retry}
}

// positive keeps a duration at least 1ns: a zero ValidDuration would mean
// "no limit on reuse" to callers.
func positive(d time.Duration) time.Duration { return max(d, time.Nanosecond) }

// Allocator is the part of Allocate every quota adapter shares: checking
// the arguments, resolving the instance's counter and asking the store.
type Allocator struct {
	// Adapter and Handler name the handler in errors.
	Adapter, Handler string
	Set              *Set
	Store            Store
	Now              func() time.Time
}

// Allocate allocates args.Amount of inst's quota.
func (a *Allocator) Allocate(ctx context.Context, inst *template.Quota, args adapters.QuotaArgs) (Result, error) {
	if inst == nil {
		return Result{}, fmt.Errorf("%s: nil instance", a.Adapter)
	}
	c, ok := a.Set.Counter(inst.Name, inst.Dimensions)
	if !ok {
		return Result{}, fmt.Errorf("%s: handler %s has no quota %q", a.Adapter, a.Handler, inst.Name)
	}
	if args.Amount < 0 {
		return Result{}, fmt.Errorf("%s: quota %q: negative amount %d", a.Adapter, inst.Name, args.Amount)
	}
	return a.Store.Allocate(ctx, Request{
		Counter:         c,
		Amount:          args.Amount,
		BestEffort:      args.BestEffort,
		DeduplicationID: args.DeduplicationID,
		Dedup:           a.Set.Dedup(),
		Now:             a.Now(),
	})
}
