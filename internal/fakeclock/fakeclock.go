// Package fakeclock is a settable clock for tests of code that takes its
// time from an injected func() time.Time.
package fakeclock

import (
	"sync"
	"time"
)

// OnAMinute is a start time on a whole minute (so on a whole second too).
var OnAMinute = time.Unix(1_700_000_040, 0)

// Clock is a time source that moves only when told; safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock at start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
