package mixer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters/template"
)

// keepingReporter keeps the batches it is given, as a handler may, and
// appends to each, which must not reach another batch.
type keepingReporter struct {
	mu      sync.Mutex
	batches [][]template.Instance
	gate    chan struct{}
}

func (r *keepingReporter) Report(_ context.Context, insts []template.Instance) error {
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, insts)
	_ = append(insts, &template.LogEntry{Name: "appended"})
	return nil
}

func (r *keepingReporter) Close(context.Context) error { return nil }

func (r *keepingReporter) delivered() (batches [][]template.Instance, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.batches {
		n += len(b)
	}
	return r.batches, n
}

// TestReportQueueBatches: what waits is delivered in order, in batches of
// at most the batch size that are slices of their own, and a full queue
// takes what fits.
func TestReportQueueBatches(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, func(func(string, int)) {})
	rep := &keepingReporter{gate: make(chan struct{})}
	const size, batch = 2500, 1000
	q := newReportQueue("h", rep, size, batch, time.Second, m, slog.New(slog.DiscardHandler), time.Now)
	q.start()
	// The first instance occupies the worker (blocked in Report); the
	// rest wait, up to size.
	q.enqueue(&template.LogEntry{Name: "0"})
	deadline := time.Now().Add(5 * time.Second)
	for q.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the worker never took the first instance")
		}
		time.Sleep(time.Millisecond)
	}
	want := 1
	for i := range 3 {
		insts := make([]template.Instance, 1000)
		for j := range insts {
			insts[j] = &template.LogEntry{Name: fmt.Sprint(1 + i*1000 + j)}
		}
		q.enqueue(insts...)
	}
	want += size
	if got := q.len(); got != size {
		t.Errorf("queue length %d, want %d", got, size)
	}
	if got := metric(t, reg, "sidemix_mixer_report_instances_dropped_total", "handler", "h", "reason", reasonQueueFull); got != 3000-size {
		t.Errorf("dropped %v, want %d", got, 3000-size)
	}
	close(rep.gate)
	for {
		batches, n := rep.delivered()
		if n == want {
			k := 0
			for _, b := range batches {
				if len(b) > batch {
					t.Errorf("batch of %d, more than %d", len(b), batch)
				}
				for _, inst := range b {
					if got := inst.InstanceName(); got != fmt.Sprint(k) {
						t.Fatalf("instance %d is %q", k, got)
					}
					k++
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d", n, want)
		}
		time.Sleep(time.Millisecond)
	}
	if err := q.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	q.enqueue(&template.LogEntry{Name: "late"})
	if got := metric(t, reg, "sidemix_mixer_report_instances_dropped_total", "handler", "h", "reason", reasonShutdown); got != 1 {
		t.Errorf("dropped after drain %v, want 1", got)
	}
}

// TestReportQueuePutOwned: a slice given up to an empty queue is what
// waits, uncopied, with the instances that did not fit cleared from it;
// given to a queue that holds some already, it is copied and stays the
// caller's.
func TestReportQueuePutOwned(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, func(func(string, int)) {})
	rep := &keepingReporter{gate: make(chan struct{})}
	q := newReportQueue("h", rep, 5, 10, time.Second, m, slog.New(slog.DiscardHandler), time.Now)
	entries := func(names ...string) []template.Instance {
		out := make([]template.Instance, 0, 8)
		for _, n := range names {
			out = append(out, &template.LogEntry{Name: n})
		}
		return out
	}
	first := entries("a", "b", "c")
	if !q.put(first, true) {
		t.Fatal("an empty queue did not keep the slice")
	}
	q.mu.Lock()
	same := &q.pending[0] == &first[0]
	q.mu.Unlock()
	if !same {
		t.Error("the kept slice was copied")
	}
	second := entries("d", "e", "f", "g")
	if q.put(second, true) {
		t.Fatal("a queue holding instances kept the slice")
	}
	if got := q.len(); got != 5 {
		t.Errorf("queue length %d, want 5", got)
	}
	q2 := newReportQueue("h2", rep, 2, 10, time.Second, m, slog.New(slog.DiscardHandler), time.Now)
	third := entries("x", "y", "z")
	if !q2.put(third, true) {
		t.Fatal("an empty queue did not keep the slice")
	}
	if third[2] != nil {
		t.Error("the instance that did not fit is still in the kept slice's array")
	}
	if got := metric(t, reg, "sidemix_mixer_report_instances_dropped_total", "handler", "h", "reason", reasonQueueFull); got != 2 {
		t.Errorf("h dropped %v, want 2", got)
	}
	if got := metric(t, reg, "sidemix_mixer_report_instances_dropped_total", "handler", "h2", "reason", reasonQueueFull); got != 1 {
		t.Errorf("h2 dropped %v, want 1", got)
	}
	q.start()
	close(rep.gate)
	if err := q.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	batches, n := rep.delivered()
	var got []string
	for _, b := range batches {
		for _, inst := range b {
			got = append(got, inst.InstanceName())
		}
	}
	if n != 5 || fmt.Sprint(got) != "[a b c d e]" {
		t.Errorf("delivered %v, want [a b c d e]", got)
	}
}
