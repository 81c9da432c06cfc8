package redisquota

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// breaker stops calls to a Redis that keeps failing. Closed, calls go
// through and failures are counted; threshold consecutive failures open
// it. Open, calls fail at once, and a goroutine probes Redis every
// interval until a probe succeeds, which closes it. Real calls never
// probe: a dead Redis costs each caller nothing more once open.
type breaker struct {
	threshold int
	interval  time.Duration
	timeout   time.Duration
	probe     func(ctx context.Context) error
	onChange  func(open bool, cause error)

	open atomic.Bool
	mu   sync.Mutex
	fail int // consecutive failures, while closed
	// since is when the circuit last opened; guarded by mu.
	since time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

func newBreaker(threshold int, interval, timeout time.Duration, probe func(context.Context) error, onChange func(bool, error)) *breaker {
	return &breaker{threshold: threshold, interval: interval, timeout: timeout, probe: probe, onChange: onChange, stop: make(chan struct{})}
}

// allow reports whether a call may go to Redis.
func (b *breaker) allow() bool { return !b.open.Load() }

// openSince is when the circuit opened.
func (b *breaker) openSince() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.since
}

func (b *breaker) success() {
	b.mu.Lock()
	b.fail = 0
	b.mu.Unlock()
}

// failure counts a failed call; the threshold-th in a row opens the
// circuit.
func (b *breaker) failure(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open.Load() {
		return
	}
	b.fail++
	if b.fail >= b.threshold {
		b.trip(err)
	}
}

// trip opens the circuit and starts probing. Called with mu held.
func (b *breaker) trip(err error) {
	select {
	case <-b.stop:
		return // closed handler: no more goroutines
	default:
	}
	b.open.Store(true)
	b.since = time.Now()
	b.onChange(true, err)
	b.wg.Add(1)
	go b.probeLoop()
}

// forceOpen opens the circuit regardless of the count, for a Redis found
// unreachable at start.
func (b *breaker) forceOpen(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		b.trip(err)
	}
}

func (b *breaker) probeLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		err := b.probe(ctx)
		cancel()
		if err == nil {
			b.mu.Lock()
			b.fail = 0
			b.open.Store(false)
			b.onChange(false, nil)
			b.mu.Unlock()
			return
		}
	}
}

// close stops probing; the breaker stays in its state.
func (b *breaker) close() {
	b.mu.Lock()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
