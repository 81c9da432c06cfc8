package mixer

import (
	"context"
	"sync"
	"time"
)

// checkCtx bounds a Check by the mixer's --check-timeout without paying
// for a timer unless something waits: most Checks are answered from
// memory (a lease, an over-limit cache, memquota), and a timer per Check
// (context.WithTimeout) was 3% of the mixer's CPU. Deadline answers at
// once; the first Done (or an Err past the deadline) makes the real
// context.WithDeadline. Once the Check is answered, stop ends it as
// cancel would: the context reports Canceled from then on.
type checkCtx struct {
	parent   context.Context
	deadline time.Time

	mu      sync.Mutex
	inner   context.Context // nil until needed
	cancel  context.CancelFunc
	stopped bool
}

var _ context.Context = (*checkCtx)(nil)

var closedDone = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (c *checkCtx) init(parent context.Context, deadline time.Time) {
	c.parent, c.deadline = parent, deadline
}

func (c *checkCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// realize returns the real context, made if need be; nil once stopped
// without one. Called with c.mu held.
func (c *checkCtx) realize() context.Context {
	if c.inner == nil && !c.stopped {
		c.inner, c.cancel = context.WithDeadline(c.parent, c.deadline)
	}
	return c.inner
}

func (c *checkCtx) Done() <-chan struct{} {
	c.mu.Lock()
	inner := c.realize()
	c.mu.Unlock()
	if inner == nil {
		return closedDone
	}
	return inner.Done()
}

func (c *checkCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.inner != nil:
		return c.inner.Err()
	case c.stopped:
		return context.Canceled
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		// Past the deadline: the real context is made already done, so
		// that its Done, Err and cause agree from now on.
		return c.realize().Err()
	}
	return nil
}

func (c *checkCtx) Value(key any) any {
	c.mu.Lock()
	inner := c.inner
	c.mu.Unlock()
	if inner != nil {
		return inner.Value(key)
	}
	return c.parent.Value(key)
}

// stop ends the context, as the CancelFunc of context.WithDeadline would.
func (c *checkCtx) stop() {
	c.mu.Lock()
	c.stopped = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
