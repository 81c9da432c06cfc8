package rawotlp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

// resources returns n instances of items each, whose Data name them, and
// their release counts.
func resources(n, items int) ([]*template.OTLP, []*atomic.Int32) {
	ins := make([]*template.OTLP, n)
	rel := make([]*atomic.Int32, n)
	for i := range ins {
		c := &atomic.Int32{}
		rel[i] = c
		ins[i] = &template.OTLP{Signal: template.SignalTraces, Data: fmt.Appendf(nil, "<r%d>", i), Items: items,
			Release: func() { c.Add(1) }}
	}
	return ins, rel
}

func checkReleasedOnce(t *testing.T, rel []*atomic.Int32) {
	t.Helper()
	for i, c := range rel {
		if n := c.Load(); n != 1 {
			t.Errorf("resource %d released %d times, want once", i, n)
		}
	}
}

// recorder is a SendFunc that keeps the bodies and answers with what
// answer says.
type recorder struct {
	mu     sync.Mutex
	bodies []string
	answer func(call int) (int, error)
	outs   []string // Done's outcomes
}

func (r *recorder) send(_ context.Context, body []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, string(body))
	if r.answer != nil {
		return r.answer(len(r.bodies))
	}
	return 0, nil
}

func (r *recorder) done(n, failed, retries int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outs = append(r.outs, fmt.Sprintf("n=%d failed=%d retries=%d err=%v", n, failed, retries, err))
}

func (r *recorder) snapshot() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...), append([]string(nil), r.outs...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func opts(r *recorder) Options {
	return Options{MaxBatchItems: 5, FlushInterval: time.Hour, MaxQueueItems: 100, Timeout: time.Second, Done: r.done}
}

// TestBatchesByItemsAndBytes: resources are concatenated in order into
// batches of at most MaxBatchItems items and MaxBatchBytes bytes, and
// each is released once, as soon as it is copied.
func TestBatchesByItemsAndBytes(t *testing.T) {
	r := &recorder{}
	o := opts(r)
	o.MaxBatchBytes = 12 // three resources of 4 bytes
	var held []int
	var mu sync.Mutex
	o.Queued = func(n int) { mu.Lock(); held = append(held, n); mu.Unlock() }
	b := New(o, r.send)
	ins, rel := resources(7, 2)
	ins[6].Items = 5 // alone: 2+5 is over 5
	if refused := b.Add(ins[:4]); refused != 0 {
		t.Fatalf("refused %d", refused)
	}
	checkReleasedOnce(t, rel[:4]) // copied: released before any send
	b.Add(ins[4:])
	if dropped := b.Close(context.Background()); dropped != 0 {
		t.Fatalf("dropped %d", dropped)
	}
	bodies, outs := r.snapshot()
	want := []string{"<r0><r1>", "<r2><r3>", "<r4><r5>", "<r6>"}
	if fmt.Sprint(bodies) != fmt.Sprint(want) {
		t.Errorf("bodies %q, want %q", bodies, want)
	}
	if fmt.Sprint(outs) != "[n=4 failed=0 retries=0 err=<nil> n=4 failed=0 retries=0 err=<nil> n=4 failed=0 retries=0 err=<nil> n=5 failed=0 retries=0 err=<nil>]" {
		t.Errorf("outcomes %q", outs)
	}
	checkReleasedOnce(t, rel)
	mu.Lock()
	defer mu.Unlock()
	if len(held) == 0 || held[len(held)-1] != 0 {
		t.Errorf("queued gauge %v, want it back at 0", held)
	}

	// A resource over MaxBatchBytes alone goes by itself.
	r2 := &recorder{}
	o = opts(r2)
	o.MaxBatchBytes = 3
	b = New(o, r2.send)
	ins, rel = resources(2, 1)
	b.Add(ins)
	b.Close(context.Background())
	if bodies, _ := r2.snapshot(); fmt.Sprint(bodies) != "[<r0> <r1>]" {
		t.Errorf("bodies %q", bodies)
	}
	checkReleasedOnce(t, rel)
}

// TestFlushInterval: a batch that does not fill is sent FlushInterval
// after its first resource.
func TestFlushInterval(t *testing.T) {
	r := &recorder{}
	o := opts(r)
	o.FlushInterval = 20 * time.Millisecond
	b := New(o, r.send)
	defer b.Close(context.Background())
	ins, rel := resources(2, 1)
	start := time.Now()
	b.Add(ins)
	waitFor(t, "the flush", func() bool { bodies, _ := r.snapshot(); return len(bodies) == 1 })
	if el := time.Since(start); el < o.FlushInterval {
		t.Errorf("sent after %v, before the flush interval", el)
	}
	if bodies, _ := r.snapshot(); bodies[0] != "<r0><r1>" {
		t.Errorf("body %q", bodies[0])
	}
	checkReleasedOnce(t, rel)
}

// TestFailuresCountedInItems: a refusal fails the batch's items, a
// partial success the rejected ones, transient errors are retried; every
// resource is released once whatever the outcome.
func TestFailuresCountedInItems(t *testing.T) {
	refused := handlerkit.Permanent(errors.New("refused"))
	partial := handlerkit.Permanent(errors.New("2 rejected"))
	r := &recorder{answer: func(call int) (int, error) {
		switch call {
		case 1:
			return 0, refused
		case 2:
			return 2, partial
		case 3:
			return 0, errors.New("unavailable")
		}
		return 0, nil
	}}
	o := opts(r)
	o.Retry = handlerkit.Retry{InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, MaxElapsedTime: time.Second}
	b := New(o, r.send)
	ins, rel := resources(3, 5)
	b.Add(ins)
	b.Close(context.Background())
	_, outs := r.snapshot()
	want := "[n=5 failed=5 retries=0 err=refused n=5 failed=2 retries=0 err=2 rejected n=5 failed=0 retries=1 err=<nil>]"
	if fmt.Sprint(outs) != want {
		t.Errorf("outcomes %q,\nwant %q", outs, want)
	}
	checkReleasedOnce(t, rel)
}

// TestQueueFullAndClose: resources over MaxQueueItems are refused (and
// released); Close drops what it could not send in time and counts it;
// after Close every resource is refused and released.
func TestQueueFullAndClose(t *testing.T) {
	unblock := make(chan struct{})
	r := &recorder{}
	o := opts(r)
	o.MaxQueueItems = 10
	o.Retry = handlerkit.Retry{InitialInterval: time.Millisecond, MaxInterval: time.Millisecond, MaxElapsedTime: time.Hour}
	b := New(o, func(ctx context.Context, body []byte) (int, error) {
		r.send(ctx, body)
		select {
		case <-unblock:
			return 0, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	ins, rel := resources(4, 3)
	if n := b.Add(ins); n != 3 { // 3+3+3 fit 10, the fourth not
		t.Fatalf("refused %d items, want 3", n)
	}
	checkReleasedOnce(t, rel)
	waitFor(t, "the first send", func() bool { bodies, _ := r.snapshot(); return len(bodies) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	dropped := b.Close(ctx)
	_, outs := r.snapshot()
	// Batches of one resource (3+3 is over 5): the one in flight ends
	// failed (Done), the two behind it are dropped.
	if dropped != 6 || len(outs) != 1 || !bytes.Contains([]byte(outs[0]), []byte("n=3 failed=3")) {
		t.Errorf("dropped %d, outcomes %q", dropped, outs)
	}
	more, rel := resources(1, 2)
	if n := b.Add(more); n != 2 {
		t.Errorf("after Close refused %d, want 2", n)
	}
	checkReleasedOnce(t, rel)
	close(unblock)
}
