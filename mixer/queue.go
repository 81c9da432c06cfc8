package mixer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

// reportQueue is one handler's bounded queue of report instances and the
// goroutine that drains it in batches into Reporter.Report. Enqueue never
// blocks: the request path must not wait for telemetry.
//
// The queue is a slice under a mutex, not a channel: a Report of 1000
// bags enqueues an action's instances with one lock instead of a channel
// operation each, and the worker takes all that waits at once.
type reportQueue struct {
	handler string
	rep     adapters.Reporter
	size    int // at most this many instances wait
	batch   int
	timeout time.Duration
	m       *metrics
	log     *slog.Logger
	now     func() time.Time

	// releases: rep is an adapters.BatchReleaser, so the arrays of the batches it
	// was handed serve again once its Report has returned (spare).
	releases bool

	mu      sync.Mutex
	pending []template.Instance
	// spare is, with releases, an emptied array of delivered batches for
	// the next Report's instances (newBatch).
	spare []template.Instance
	// hint is the capacity a new pending slice starts with: what the
	// worker took last time.
	hint atomic.Int32

	kick     chan struct{} // a token: pending is no longer empty
	stop     chan struct{} // closed: drain what is left, then exit
	done     chan struct{} // closed when the worker has exited
	stopOnce sync.Once

	// ctx is cancelled when the queue is abandoned (shutdown ran out of
	// time); whatever is still queued then counts as dropped.
	ctx       context.Context
	cancel    context.CancelFunc
	abandoned atomic.Bool
	stopped   atomic.Bool

	lastErrLog atomic.Int64 // unix nanos of the last warning logged
}

func newReportQueue(handler string, rep adapters.Reporter, size, batch int, timeout time.Duration, m *metrics, log *slog.Logger, now func() time.Time) *reportQueue {
	ctx, cancel := context.WithCancel(context.Background())
	_, releases := rep.(adapters.BatchReleaser)
	return &reportQueue{
		handler: handler, rep: rep, size: size, releases: releases,
		batch: batch, timeout: timeout, m: m, log: log, now: now,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
}

// newBatch is an empty slice of at least n capacity for instances to put
// (owned): the spare array, when the handler releases its batches and it
// is large enough, else a new one.
func (q *reportQueue) newBatch(n int) []template.Instance {
	if q.releases {
		q.mu.Lock()
		s := q.spare
		if cap(s) >= n {
			q.spare = nil
		}
		q.mu.Unlock()
		if cap(s) >= n {
			return s
		}
	}
	return make([]template.Instance, 0, n)
}

// start runs the worker.
func (q *reportQueue) start() { go q.run() }

// enqueue adds insts, as many as fit, unless the queue is stopped; a
// dropped instance is counted. The queue keeps the instances, not the
// slice.
func (q *reportQueue) enqueue(insts ...template.Instance) {
	q.put(insts, false)
}

// put is enqueue. With own, the caller gives insts up: when nothing
// waits, insts itself becomes what waits, instead of a copy, and put
// reports true; otherwise the caller keeps insts, whose instances the
// queue copied or dropped.
func (q *reportQueue) put(insts []template.Instance, own bool) (kept bool) {
	if len(insts) == 0 {
		return false
	}
	if q.stopped.Load() {
		q.m.dropped.WithLabelValues(q.handler, reasonShutdown).Add(float64(len(insts)))
		return false
	}
	q.mu.Lock()
	was := len(q.pending)
	n := min(len(insts), max(q.size-was, 0))
	switch {
	case n == 0:
	case own && was == 0:
		clear(insts[n:]) // dropped: not kept alive by the queue's array
		q.pending, kept = insts[:n], true
	default:
		if q.pending == nil {
			if want := max(int(q.hint.Load()), n); cap(q.spare) >= want {
				q.pending, q.spare = q.spare, nil
			} else {
				q.pending = make([]template.Instance, 0, want)
			}
		}
		q.pending = append(q.pending, insts[:n]...)
	}
	q.mu.Unlock()
	if n < len(insts) {
		q.m.dropped.WithLabelValues(q.handler, reasonQueueFull).Add(float64(len(insts) - n))
	}
	if was == 0 && n > 0 {
		select {
		case q.kick <- struct{}{}:
		default: // the worker has a token already
		}
	}
	return kept
}

// sizeHint is the capacity worth giving a slice of instances for the
// queue: what the worker took last time.
func (q *reportQueue) sizeHint() int { return int(q.hint.Load()) }

func (q *reportQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

func (q *reportQueue) run() {
	defer close(q.done)
	for {
		select {
		case <-q.kick:
			q.deliver()
		case <-q.stop:
			q.deliver()
			return
		}
	}
}

// deliver hands everything waiting to the handler, in batches of at most
// q.batch, until nothing waits. Each batch is a slice of its own (a
// handler may keep it): the batches are consecutive parts, capped, of the
// slice taken from the queue, which the queue does not use again, unless
// the handler releases its batches: then, once all are delivered, the
// array is cleared (it must not keep the instances alive) and becomes the
// spare.
func (q *reportQueue) deliver() {
	for {
		q.mu.Lock()
		taken := q.pending
		q.pending = nil
		if len(taken) > 0 {
			q.hint.Store(int32(min(len(taken), q.size)))
		}
		q.mu.Unlock()
		if len(taken) == 0 {
			return
		}
		all := taken
		for len(taken) > 0 {
			n := min(len(taken), q.batch)
			q.flush(taken[:n:n])
			taken = taken[n:]
		}
		if q.releases && cap(all) <= q.size {
			clear(all)
			q.mu.Lock()
			if cap(all) > cap(q.spare) {
				q.spare = all[:0]
			}
			q.mu.Unlock()
		}
	}
}

func (q *reportQueue) flush(batch []template.Instance) {
	if q.abandoned.Load() {
		q.m.dropped.WithLabelValues(q.handler, reasonShutdown).Add(float64(len(batch)))
		return
	}
	ctx, cancel := context.WithTimeout(q.ctx, q.timeout)
	err := q.report(ctx, batch)
	cancel()
	if err == nil {
		q.m.dispatched.WithLabelValues(q.handler).Add(float64(len(batch)))
		return
	}
	if q.abandoned.Load() {
		q.m.dropped.WithLabelValues(q.handler, reasonShutdown).Add(float64(len(batch)))
		return
	}
	q.m.dropped.WithLabelValues(q.handler, reasonHandlerError).Add(float64(len(batch)))
	// A failing backend fails every batch: warn once per interval, the rest
	// goes to debug and to the dropped counter.
	level := slog.LevelDebug
	now := q.now().UnixNano()
	if last := q.lastErrLog.Load(); now-last >= int64(reportErrorLogInterval) && q.lastErrLog.CompareAndSwap(last, now) {
		level = slog.LevelWarn
	}
	q.log.Log(context.Background(), level, "report failed; instances dropped", "instances", len(batch), "error", err)
}

func (q *reportQueue) report(ctx context.Context, batch []template.Instance) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return q.rep.Report(ctx, batch)
}

// drain stops accepting, delivers what is queued and waits for the worker.
// When ctx ends first, the rest is dropped (counted as shutdown) and the
// call in flight is cancelled.
func (q *reportQueue) drain(ctx context.Context) error {
	q.stopOnce.Do(func() {
		q.stopped.Store(true)
		close(q.stop)
	})
	select {
	case <-q.done:
		q.cancel()
		q.sweep()
		return nil
	case <-ctx.Done():
	}
	q.abandoned.Store(true)
	q.cancel()
	// A handler that ignores its context may hold the worker; give it a
	// moment, then leave it behind.
	select {
	case <-q.done:
		q.sweep()
	case <-time.After(handlerCloseTimeoutFallback):
	}
	return fmt.Errorf("handler %q: report queue not drained: %w", q.handler, ctx.Err())
}

// sweep counts instances that raced in after the worker left.
func (q *reportQueue) sweep() {
	q.mu.Lock()
	n := len(q.pending)
	q.pending = nil
	q.mu.Unlock()
	if n > 0 {
		q.m.dropped.WithLabelValues(q.handler, reasonShutdown).Add(float64(n))
	}
}
