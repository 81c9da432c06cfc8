package mixer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
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

// releasingReporter records the names of the instances it is given and
// keeps nothing of its batches: it releases them (adapters.BatchReleaser).
type releasingReporter struct {
	mu    sync.Mutex
	names []string
	calls int
}

func (r *releasingReporter) Report(_ context.Context, insts []template.Instance) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	for _, inst := range insts {
		r.names = append(r.names, inst.InstanceName())
	}
	return nil
}

func (r *releasingReporter) Close(context.Context) error { return nil }
func (r *releasingReporter) ReportReleasesBatch()        {}

func (r *releasingReporter) delivered() (names []string, calls int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.names), r.calls
}

// TestReportQueueReleasedBatches: the arrays of the batches a releasing
// handler was handed come back, cleared, for the next Reports' instances,
// and every instance is delivered once, in order (under -race: the array
// is written again only after the handler's Report has returned); a
// handler that may keep its batches never gets an array again.
func TestReportQueueReleasedBatches(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, func(func(string, int)) {})
	rel := &releasingReporter{}
	keep := &keepingReporter{}
	const size, batch, perReport, reports = 4096, 300, 1000, 40
	qs := []*reportQueue{
		newReportQueue("rel", rel, size, batch, time.Second, m, slog.New(slog.DiscardHandler), time.Now),
		newReportQueue("keep", keep, size, batch, time.Second, m, slog.New(slog.DiscardHandler), time.Now),
	}
	if !qs[0].releases || qs[1].releases {
		t.Fatalf("releases: %v, %v", qs[0].releases, qs[1].releases)
	}
	for _, q := range qs {
		q.start()
	}
	// wait waits until both handlers have been handed all of want.
	var want []string
	wait := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, _ := rel.delivered()
			_, n := keep.delivered()
			if len(got) == len(want) && n == len(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("delivered %d and %d of %d", len(got), n, len(want))
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	reused := 0
	var prevRel, prevKeep *template.Instance
	for i := range reports {
		var arrays []*template.Instance
		for _, q := range qs {
			b := q.newBatch(perReport)
			if len(b) != 0 || cap(b) < perReport {
				t.Fatalf("newBatch: len %d cap %d", len(b), cap(b))
			}
			for _, x := range b[:cap(b)] {
				if x != nil {
					t.Fatalf("report %d: a batch array holds %v", i, x.InstanceName())
				}
			}
			for j := range perReport {
				b = append(b, &template.LogEntry{Name: fmt.Sprint(i*perReport + j)})
			}
			arrays = append(arrays, &b[0])
			// A queue that still holds the Report before copies the
			// instances; the batch stays the caller's.
			_ = q.put(b, true)
		}
		for j := range perReport {
			want = append(want, fmt.Sprint(i*perReport+j))
		}
		// Wait for one in two Reports, so that some come while the
		// worker still delivers the one before.
		if i%2 == 1 {
			wait()
			time.Sleep(time.Millisecond) // the worker gives the array back
		}
		if i > 0 && arrays[0] == prevRel {
			reused++
		}
		if arrays[1] == prevKeep {
			t.Fatalf("report %d: a keeping handler's array came back", i)
		}
		prevRel, prevKeep = arrays[0], arrays[1]
	}
	wait()
	if reused < reports/4 {
		t.Errorf("the releasing handler's arrays came back %d times in %d reports", reused, reports)
	}
	got, calls := rel.delivered()
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %d instances, want %d in order", len(got), len(want))
	}
	if calls < reports*perReport/batch {
		t.Errorf("%d calls for %d instances in batches of %d", calls, len(want), batch)
	}
	batches, n := keep.delivered()
	if n != len(want) {
		t.Fatalf("kept %d instances, want %d", n, len(want))
	}
	k := 0
	for _, b := range batches {
		for _, inst := range b {
			if inst.InstanceName() != want[k] {
				t.Fatalf("kept batch instance %d is %q, want %q", k, inst.InstanceName(), want[k])
			}
			k++
		}
	}
	for _, q := range qs {
		if err := q.drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
