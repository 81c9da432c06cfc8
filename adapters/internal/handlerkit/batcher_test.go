package handlerkit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
)

type outcome struct {
	n, failed, retries int
	err                error
}

type recorder struct {
	mu       sync.Mutex
	sent     []int
	outcomes []outcome
	fail     int // fail this many attempts, then succeed
	failErr  error
}

func (r *recorder) send(_ context.Context, batch []int) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return 0, r.failErr
	}
	r.sent = append(r.sent, batch...)
	return 0, nil
}

func (r *recorder) done(n, failed, retries int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, outcome{n, failed, retries, err})
}

func (r *recorder) snapshot() ([]int, []outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.sent...), append([]outcome(nil), r.outcomes...)
}

func opts(r *recorder) handlerkit.BatcherOptions {
	return handlerkit.BatcherOptions{
		MaxBatchSize: 3, FlushInterval: time.Hour, MaxQueueSize: 5, Timeout: time.Second,
		Retry: handlerkit.Retry{InitialInterval: time.Millisecond, MaxInterval: 4 * time.Millisecond, MaxElapsedTime: time.Second},
		Done:  r.done,
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatcherSendsFullBatchesAndFlushesOnClose(t *testing.T) {
	r := &recorder{}
	b := handlerkit.NewBatcher(opts(r), r.send)
	if n := b.Add([]int{1, 2, 3, 4}); n != 0 {
		t.Fatalf("refused %d", n)
	}
	waitFor(t, func() bool { s, _ := r.snapshot(); return len(s) == 3 })
	if n := b.Add([]int{5, 6, 7, 8, 9}); n != 1 {
		t.Errorf("refused %d, want 1 (queue of 5 holds 4 and 5)", n)
	}
	if n := b.Close(context.Background()); n != 0 {
		t.Errorf("dropped %d at close", n)
	}
	sent, _ := r.snapshot()
	if len(sent) < 8 {
		t.Errorf("sent %v", sent)
	}
	if n := b.Add([]int{10}); n != 1 {
		t.Errorf("Add after Close refused %d, want 1", n)
	}
}

func TestBatcherRetriesUntilSent(t *testing.T) {
	r := &recorder{fail: 3, failErr: errors.New("unavailable")}
	b := handlerkit.NewBatcher(opts(r), r.send)
	b.Add([]int{1, 2, 3})
	waitFor(t, func() bool { _, o := r.snapshot(); return len(o) == 1 })
	b.Close(context.Background())
	_, o := r.snapshot()
	if o[0] != (outcome{n: 3, retries: 3}) {
		t.Errorf("outcome %+v", o[0])
	}
}

func TestBatcherGivesUpOnPermanentErrors(t *testing.T) {
	r := &recorder{fail: 10, failErr: handlerkit.Permanent(errors.New("bad data"))}
	b := handlerkit.NewBatcher(opts(r), r.send)
	b.Add([]int{1, 2, 3})
	waitFor(t, func() bool { _, o := r.snapshot(); return len(o) == 1 })
	b.Close(context.Background())
	_, o := r.snapshot()
	if o[0].failed != 3 || o[0].retries != 0 || !handlerkit.IsPermanent(o[0].err) {
		t.Errorf("outcome %+v", o[0])
	}
}

func TestBatcherCloseGivesUpAtDeadline(t *testing.T) {
	r := &recorder{fail: 1 << 30, failErr: errors.New("down")}
	o := opts(r)
	o.Retry.MaxElapsedTime = time.Hour
	b := handlerkit.NewBatcher(o, r.send)
	b.Add([]int{1, 2, 3, 4})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	dropped := b.Close(ctx)
	_, outs := r.snapshot()
	failed := 0
	for _, x := range outs {
		failed += x.failed
	}
	if dropped+failed != 4 {
		t.Errorf("dropped %d + failed %d, want 4", dropped, failed)
	}
}

// TestFlushIntervalCountsFromTheFirstItem: the flush timer starts when an
// item enters an empty buffer (an idle Batcher has no timer running), so a
// partial batch waits FlushInterval from its first item, not until some
// tick that started before it, and is sent after it again and again.
func TestFlushIntervalCountsFromTheFirstItem(t *testing.T) {
	r := &recorder{}
	o := opts(r)
	o.FlushInterval = 300 * time.Millisecond
	b := handlerkit.NewBatcher(o, r.send)
	defer b.Close(context.Background())
	for round := range 3 {
		time.Sleep(200 * time.Millisecond) // idle
		start := time.Now()
		b.Add([]int{round})
		time.Sleep(100 * time.Millisecond)
		if sent, _ := r.snapshot(); len(sent) != round && time.Since(start) < o.FlushInterval {
			t.Fatalf("round %d: the partial batch went out %v after its first item, before the flush interval", round, time.Since(start))
		}
		waitFor(t, func() bool { sent, _ := r.snapshot(); return len(sent) == round+1 })
		if d := time.Since(start); d < o.FlushInterval {
			t.Errorf("round %d: sent after %v, want at least %v", round, d, o.FlushInterval)
		}
	}
}
