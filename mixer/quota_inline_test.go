package mixer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

// TestAllocateAllInline: a request's only allocation, to a ContextBound
// handler, runs on the request's goroutine, so allocateAll waits for it
// even past the deadline (the handler promised not to get there); any
// other handler runs on a goroutine of its own that the deadline
// abandons.
func TestAllocateAllInline(t *testing.T) {
	const delay = 100 * time.Millisecond
	slow := testQuotaConfig{Delay: delay, IgnoreContext: true}
	for _, inline := range []bool{true, false} {
		var q adapters.QuotaAllocator = &testQuota{cfg: slow}
		if inline {
			q = inlineTestQuota{&testQuota{cfg: slow}}
		}
		h := &handler{name: "q", quota: q, quotaDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"})}
		calls := []quotaCall{{h: h, inst: &template.Quota{Name: "rq"}, args: adapters.QuotaArgs{Amount: 1}, same: -1}}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
		start := time.Now()
		out := allocateAll(ctx, calls)
		took := time.Since(start)
		cancel()
		switch {
		case inline && (took < delay || !out[0].done || out[0].val.Amount != 1):
			t.Errorf("inline: took %v, outcome %+v; want the handler's answer after %v", took, out[0], delay)
		case !inline && (took >= delay || out[0].done):
			t.Errorf("on its own goroutine: took %v, outcome %+v; want no answer at the deadline", took, out[0])
		}
	}
	// Two allocations run concurrently even when both handlers are
	// ContextBound.
	h := &handler{name: "q", quota: inlineTestQuota{&testQuota{cfg: testQuotaConfig{Delay: delay}}},
		quotaDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"})}
	calls := []quotaCall{
		{h: h, inst: &template.Quota{Name: "a"}, args: adapters.QuotaArgs{Amount: 1}, same: -1},
		{h: h, inst: &template.Quota{Name: "b"}, args: adapters.QuotaArgs{Amount: 1}, same: -1},
	}
	start := time.Now()
	out := allocateAll(t.Context(), calls)
	if took := time.Since(start); took >= 2*delay || !out[0].done || !out[1].done {
		t.Errorf("two allocations took %v (%+v), want them concurrent", took, out)
	}
}
