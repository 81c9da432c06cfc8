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
type reportQueue struct {
	handler string
	rep     adapters.Reporter
	ch      chan template.Instance
	batch   int
	timeout time.Duration
	m       *metrics
	log     *slog.Logger
	now     func() time.Time

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
	return &reportQueue{
		handler: handler, rep: rep,
		ch:    make(chan template.Instance, size),
		batch: batch, timeout: timeout, m: m, log: log, now: now,
		stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
}

// start runs the worker.
func (q *reportQueue) start() { go q.run() }

// enqueue adds inst unless the queue is full or stopped; a dropped instance
// is counted.
func (q *reportQueue) enqueue(inst template.Instance) {
	if q.stopped.Load() {
		q.m.dropped.WithLabelValues(q.handler, reasonShutdown).Inc()
		return
	}
	select {
	case q.ch <- inst:
	default:
		q.m.dropped.WithLabelValues(q.handler, reasonQueueFull).Inc()
	}
}

func (q *reportQueue) len() int { return len(q.ch) }

func (q *reportQueue) run() {
	defer close(q.done)
	for {
		select {
		case inst := <-q.ch:
			q.flush(q.fill(inst))
		case <-q.stop:
			for {
				select {
				case inst := <-q.ch:
					q.flush(q.fill(inst))
				default:
					return
				}
			}
		}
	}
}

// fill takes up to a batch from the queue without waiting. Each batch is a
// new slice: a handler may keep it.
func (q *reportQueue) fill(first template.Instance) []template.Instance {
	batch := make([]template.Instance, 1, min(q.batch, 1+len(q.ch)))
	batch[0] = first
	for len(batch) < q.batch {
		select {
		case inst := <-q.ch:
			batch = append(batch, inst)
		default:
			return batch
		}
	}
	return batch
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
	n := 0
	for {
		select {
		case <-q.ch:
			n++
			continue
		default:
		}
		break
	}
	if n > 0 {
		q.m.dropped.WithLabelValues(q.handler, reasonShutdown).Add(float64(n))
	}
}
