package mixerclient

import (
	"context"
	"sync"
	"time"

	"github.com/sidemix/sidemix/attribute"
)

// Report queues bag for the mixer. It never blocks and never allocates: when
// the buffer is full the bag is dropped and counted
// (sidemix_proxy_reports_dropped_total{reason="buffer_full"}).
func (c *Client) Report(bag *attribute.Bag) {
	if c.closed.Load() {
		c.m.droppedShutdown.Inc()
		return
	}
	if !c.reports.put(bag) {
		c.m.droppedFull.Inc()
	}
}

// reportBuffer is where Report leaves bags for the sender: a slice under a
// mutex rather than a channel, so that a report wakes the sender only when
// a batch is full (the sender also looks every ReportInterval). A channel
// woke it for every request: a goroutine switch per request, on a 2-core
// sidecar about as costly as the rest of the report path together.
type reportBuffer struct {
	mu    sync.Mutex
	bags  []*attribute.Bag // cap is the buffer size; never grows
	spare []*attribute.Bag // the sender's last taken slice, emptied
	batch int
	full  chan struct{} // one pending wake-up: a batch is waiting
}

func newReportBuffer(size, batch int) reportBuffer {
	return reportBuffer{
		bags:  make([]*attribute.Bag, 0, size),
		spare: make([]*attribute.Bag, 0, size),
		batch: batch,
		full:  make(chan struct{}, 1),
	}
}

// put adds b unless the buffer is full.
func (r *reportBuffer) put(b *attribute.Bag) bool {
	r.mu.Lock()
	if len(r.bags) == cap(r.bags) {
		r.mu.Unlock()
		return false
	}
	r.bags = append(r.bags, b)
	wake := len(r.bags) == r.batch
	r.mu.Unlock()
	if wake {
		select {
		case r.full <- struct{}{}:
		default:
		}
	}
	return true
}

// take hands over what is buffered; the caller gives the slice back with
// giveBack once it has moved the bags.
func (r *reportBuffer) take() []*attribute.Bag {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bags) == 0 {
		return nil
	}
	out := r.bags
	r.bags = r.spare[:0]
	r.spare = nil
	return out
}

func (r *reportBuffer) giveBack(s []*attribute.Bag) {
	clear(s)
	r.mu.Lock()
	r.spare = s[:0]
	r.mu.Unlock()
}

func (r *reportBuffer) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bags)
}

// Close sends what is buffered, bounded by ctx, and closes the connection.
// Bags still unsent when ctx ends are dropped and counted
// (reason="shutdown"). Reports after Close are dropped. Close is idempotent.
func (c *Client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.closeCtx = ctx
		close(c.quit)
		var err error
		select {
		case <-c.senderDone:
		case <-ctx.Done():
			err = ctx.Err()
		}
		// Closing the connections also ends the RPCs still in flight.
		if cerr := c.lb.close(); err == nil {
			err = cerr
		}
		// The sender gives up at once when ctx is done: wait for it to
		// count what it dropped.
		<-c.senderDone
		c.refillMu.Lock()
		c.noRefills = true // none starts after this
		c.refillMu.Unlock()
		c.refills.Wait()
		c.closeErr = err
	})
	return c.closeErr
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// sender is the goroutine that batches bags and sends them. While the mixer
// is unreachable it keeps the unsent bags (oldest dropped beyond
// ReportBufferSize) and retries with exponential backoff.
func (c *Client) sender() {
	defer close(c.senderDone)
	s := &senderState{c: c, pending: make([]*attribute.Bag, 0, c.opts.ReportBatchSize)}
	tick := time.NewTicker(c.opts.ReportInterval)
	defer tick.Stop()
	var retry *time.Timer
	var retryC <-chan time.Time
	backoff := time.Duration(0)
	for {
		flushAll := false
		select {
		case <-c.reports.full:
			s.drain()
			if retryC != nil || len(s.pending) < c.opts.ReportBatchSize {
				continue
			}
		case <-tick.C:
			s.drain()
			if retryC != nil || len(s.pending) == 0 {
				continue
			}
			flushAll = true
		case <-retryC:
			s.drain()
			retryC = nil
			flushAll = true
		case <-c.quit:
			if retry != nil {
				retry.Stop()
			}
			s.final(c.closeCtx)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), reportTimeout)
		err := s.send(ctx, flushAll)
		cancel()
		if err == nil {
			if backoff != 0 {
				c.log.Info("mixer reachable again, reports delivered")
			}
			backoff = 0
			continue
		}
		if backoff == 0 {
			c.log.Warn("cannot report to the mixer, buffering and retrying", "mixer", c.opts.Addr, "err", err, "buffered", len(s.pending))
			backoff = minBackoff
		} else {
			backoff = min(2*backoff, maxBackoff)
		}
		retry = time.NewTimer(backoff)
		retryC = retry.C
	}
}

type senderState struct {
	c       *Client
	pending []*attribute.Bag // oldest first
}

// drain moves what Report buffered into pending, dropping the oldest bags
// while what the sender holds is over the buffer's limit.
func (s *senderState) drain() {
	taken := s.c.reports.take()
	if taken == nil {
		return
	}
	bags := taken
	limit := s.c.opts.ReportBufferSize
	if over := len(s.pending) + len(bags) - limit; over > 0 {
		drop := min(over, len(s.pending))
		clear(s.pending[:drop])
		s.pending = s.pending[drop:]
		s.c.m.droppedFull.Add(float64(drop))
		if over -= drop; over > 0 { // cannot happen: bags never exceed the limit
			s.c.m.droppedFull.Add(float64(over))
			bags = bags[over:]
		}
	}
	s.pending = append(s.pending, bags...)
	s.c.reports.giveBack(taken)
	s.c.pendingLen.Store(int64(len(s.pending)))
}

// send sends full batches, and with all the last partial one too; it stops
// at the first failure, keeping what was not delivered.
func (s *senderState) send(ctx context.Context, all bool) error {
	n := s.c.opts.ReportBatchSize
	for len(s.pending) >= n || (all && len(s.pending) > 0) {
		k := min(n, len(s.pending))
		if err := s.c.sendBatch(ctx, s.pending[:k]); err != nil {
			return err
		}
		clear(s.pending[:k])
		s.pending = s.pending[k:]
		s.c.pendingLen.Store(int64(len(s.pending)))
	}
	if len(s.pending) == 0 && cap(s.pending) < n {
		s.pending = make([]*attribute.Bag, 0, n)
	}
	return nil
}

// final sends everything, retrying until ctx ends; what is left is dropped.
func (s *senderState) final(ctx context.Context) {
	s.drain()
	backoff := minBackoff
	for len(s.pending) > 0 {
		if err := s.send(ctx, true); err == nil {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		break
	}
	s.drain() // late Reports that raced with Close
	if ctx.Err() == nil && len(s.pending) > 0 {
		_ = s.send(ctx, true)
	}
	if len(s.pending) > 0 {
		s.c.m.droppedShutdown.Add(float64(len(s.pending)))
		s.c.log.Warn("dropped unsent reports at shutdown", "count", len(s.pending))
		s.pending = nil
	}
	s.c.pendingLen.Store(0)
}

// sendBatch sends one batch to a healthy mixer, and when that fails with
// the mixer's own trouble, once more to another. The report API has no
// batch identity to deduplicate by, so a batch whose answer was lost may be
// counted twice; losing it would be worse.
func (c *Client) sendBatch(ctx context.Context, bags []*attribute.Bag) error {
	enc := c.encPool.Get().(*attribute.Encoder)
	req := enc.EncodeBatch(bags)
	c.encPool.Put(enc)
	ep := c.lb.pick(nil)
	for try := 0; ; try++ {
		_, err := ep.rpc.Report(ctx, req)
		c.lb.done(ctx, ep, err)
		if err == nil {
			break
		}
		c.m.batchErr.Inc()
		next := c.lb.pick(ep)
		if try > 0 || next == nil || ctx.Err() != nil || !failure(err) {
			return err
		}
		c.m.reportRetries.Inc()
		ep = next
	}
	c.m.batchOK.Inc()
	c.m.sent.Add(float64(len(bags)))
	return nil
}
