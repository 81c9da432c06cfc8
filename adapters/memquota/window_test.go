package memquota

import (
	"context"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

func TestBucketWidth(t *testing.T) {
	for valid, want := range map[time.Duration]time.Duration{
		time.Minute:            3 * time.Second,
		time.Second:            50 * time.Millisecond,
		100 * time.Millisecond: 10 * time.Millisecond,
		5 * time.Millisecond:   5 * time.Millisecond,
	} {
		if got := bucketWidth(valid); got != want {
			t.Errorf("bucketWidth(%v) = %v, want %v", valid, got, want)
		}
		if n := (valid + bucketWidth(valid) - 1) / bucketWidth(valid); n > bucketsPerWindow {
			t.Errorf("validDuration %v makes %d buckets", valid, n)
		}
	}
}

func TestClockSteppingBackHoldsUsage(t *testing.T) {
	t0 := time.Unix(1_700_000_040, 0)
	w := newWindow(limit{max: 2, valid: time.Second}, t0)
	if got, _ := w.allocate(t0, 2, false); got != 2 {
		t.Fatalf("granted %d, want 2", got)
	}
	// A clock stepping back a minute must not resurrect the allowance.
	if got, _ := w.allocate(t0.Add(-time.Minute), 1, false); got != 0 {
		t.Errorf("granted %d after the clock stepped back, want 0", got)
	}
	if got, _ := w.allocate(t0.Add(1050*time.Millisecond), 2, false); got != 2 {
		t.Errorf("granted %d once the window passed, want 2", got)
	}
}

func TestSweepDropsIdleCounters(t *testing.T) {
	now := time.Unix(1_700_000_040, 0)
	cfg := NewConfig()
	cfg.Quotas = []Quota{{Name: "rq", MaxAmount: 10, ValidDuration: 100 * time.Millisecond}}
	h, err := newHandler(adapters.Settings{Now: func() time.Time { return now }}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		q := &template.Quota{Name: "rq", Dimensions: map[string]any{"i": int64(i)}}
		if _, err := h.Allocate(context.Background(), q, adapters.QuotaArgs{Amount: 1, DeduplicationID: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, d := h.size(); n != 1000 || d != 1000 {
		t.Fatalf("%d counters and %d dedup entries, want 1000 each", n, d)
	}
	// Past the window, the dedup time and the sweep interval, any
	// allocation sweeps its shard; touch every shard once.
	now = now.Add(2 * time.Second)
	for i := range 1000 {
		if _, err := h.Allocate(context.Background(), &template.Quota{Name: "rq", Dimensions: map[string]any{"j": int64(i)}}, adapters.QuotaArgs{}); err != nil {
			t.Fatal(err)
		}
	}
	if n, d := h.size(); n != 1000 || d != 0 {
		t.Errorf("%d counters and %d dedup entries, want only the 1000 new counters", n, d)
	}
}

func (h *handler) size() (windows, dedup int) {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		windows += len(s.windows)
		dedup += len(s.dedup)
		s.mu.Unlock()
	}
	return windows, dedup
}
