package redisquota

import (
	"context"
	"errors"
	"fmt"

	"sync"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/quota"
)

const (
	// senders is how many batches may be in flight to Redis at once.
	// Allocations that arrive while every sender waits for Redis queue
	// and go together in the next batch (group commit): the busier the
	// handler, the larger the batches, and the fewer round trips, writes
	// and script calls per allocation.
	senders = 1
	// maxBatch bounds one batch, so that a burst does not make one
	// script call hold Redis for long.
	maxBatch = 128
)

// errClosed fails allocations made after Close.
var errClosed = errors.New("redisquota: handler closed")

// call is one allocation waiting for its batch.
type call struct {
	ctx context.Context
	req quota.Request
	// deadline is when the call times out: when it was queued plus the
	// handler's timeout.
	deadline time.Time
	// lease asks for that many units more, best effort, charged with a
	// whole grant: a local lease (lease.go).
	lease int64
	res   quota.Result
	// leased is what the lease got; stable, on a denial, how long the
	// answer holds if nothing else is charged (0: unknown).
	leased int64
	stable time.Duration
	err    error
	// after, when set, runs when the call ends, before done is closed,
	// whether or not its caller still waits.
	after func(*call)
	done  chan struct{}
}

// batcher sends queued allocations to Redis in batches: each batch one
// script call per counter, all of them in one pipeline.
type batcher struct {
	s     *store
	mu    sync.Mutex
	queue []*call
	// ready wakes a sender when the queue may hold work.
	ready  chan struct{}
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newBatcher(s *store) *batcher {
	b := &batcher{s: s, ready: make(chan struct{}, 1), stop: make(chan struct{})}
	b.wg.Add(senders)
	for range senders {
		go b.send()
	}
	return b
}

// allocate queues req (asking for lease units more) and waits for its
// call to end, or for ctx to. A call whose caller gave up still runs when
// its batch was already sent.
func (b *batcher) allocate(ctx context.Context, req quota.Request, lease int64, after func(*call)) (*call, error) {
	c := &call{ctx: ctx, req: req, lease: lease, after: after, deadline: time.Now().Add(b.s.timeout), done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.s.finish(c, errClosed)
		return nil, errClosed
	}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	b.wake()
	select {
	case <-c.done:
		return c, c.err
	case <-ctx.Done():
		return nil, &backendError{context.Cause(ctx)}
	}
}

func (b *batcher) wake() {
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// take removes up to maxBatch calls from the queue, waking another sender
// for what is left.
func (b *batcher) take() []*call {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.queue), maxBatch)
	if n == 0 {
		return nil
	}
	batch := make([]*call, n)
	copy(batch, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	if rest > 0 {
		b.wake()
	}
	return batch
}

func (b *batcher) send() {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case <-b.ready:
		}
		if batch := b.take(); batch != nil {
			b.s.run(batch)
		}
	}
}

// close stops the senders once the queue is empty; later allocations fail.
func (b *batcher) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	for {
		batch := b.take()
		if batch == nil {
			break
		}
		b.s.run(batch)
	}
	close(b.stop)
	b.wg.Wait()
}

// run sends one batch and hands each call its result. The batch is bounded
// by the earliest deadline among its calls; calls whose deadline passed
// while queued, whose caller gave up, or that an open circuit refuses are
// not sent.
func (s *store) run(batch []*call) {
	now := time.Now()
	var deadline time.Time
	var groups []*group
	sent := 0
	for _, c := range batch {
		switch {
		case !s.breaker.allow():
			s.finish(c, fmt.Errorf("%w since %s", ErrCircuitOpen, s.breaker.openSince().Format(time.RFC3339)))
			continue
		case c.ctx.Err() != nil:
			s.finish(c, &backendError{context.Cause(c.ctx)})
			continue
		case !now.Before(c.deadline):
			s.failed(c, context.DeadlineExceeded)
			continue
		}
		if deadline.IsZero() || c.deadline.Before(deadline) {
			deadline = c.deadline
		}
		sent++
		var g *group
		for _, x := range groups {
			if x.has(&c.req) {
				g = x
				break
			}
		}
		if g == nil {
			g = &group{counter: c.req.Counter, dedup: c.req.Dedup}
			groups = append(groups, g)
		}
		g.calls = append(g.calls, c)
	}
	if sent == 0 {
		return
	}
	s.m.batch.WithLabelValues(s.name).Observe(float64(sent))
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	errs := runGroups(ctx, s.client, groups)
	cancel()
	s.m.latency.WithLabelValues(s.name).Observe(time.Since(now).Seconds())
	ok := false
	for i, g := range groups {
		for _, c := range g.calls {
			if errs[i] != nil {
				s.failed(c, errs[i])
				continue
			}
			ok = true
			if c.after != nil {
				c.after(c)
			}
			close(c.done)
		}
	}
	if ok {
		s.breaker.success()
	}
}

// failed ends a call that Redis failed (or did not answer in time).
func (s *store) failed(c *call, err error) {
	s.m.errors.WithLabelValues(s.name).Inc()
	s.breaker.failure(err)
	s.finish(c, &backendError{err})
}

func (s *store) finish(c *call, err error) {
	c.err = err
	if c.after != nil {
		c.after(c)
	}
	close(c.done)
}
