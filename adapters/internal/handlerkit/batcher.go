package handlerkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Retry is how a Batcher retries a batch whose send failed: after
// InitialInterval, doubling (with ±20% jitter) up to MaxInterval, until
// MaxElapsedTime has passed since the first attempt. Zero MaxElapsedTime
// means one attempt only.
type Retry struct {
	InitialInterval time.Duration
	MaxInterval     time.Duration
	MaxElapsedTime  time.Duration
}

// RetryConfig is the `retry:` params of an adapter that sends through a
// Batcher: after initialInterval, doubling up to maxInterval, for at most
// maxElapsedTime per batch. Disabled, a failed batch is dropped at once.
type RetryConfig struct {
	Enabled         bool          `yaml:"enabled"`
	InitialInterval time.Duration `yaml:"initialInterval"`
	MaxInterval     time.Duration `yaml:"maxInterval"`
	MaxElapsedTime  time.Duration `yaml:"maxElapsedTime"`
}

// Validate reports every problem under the key retry.
func (r RetryConfig) Validate() error {
	if !r.Enabled {
		return nil
	}
	var errs []error
	if r.InitialInterval <= 0 {
		errs = append(errs, fmt.Errorf("retry.initialInterval: must be positive, got %v", r.InitialInterval))
	}
	if r.MaxInterval < r.InitialInterval {
		errs = append(errs, fmt.Errorf("retry.maxInterval: %v is less than retry.initialInterval %v", r.MaxInterval, r.InitialInterval))
	}
	if r.MaxElapsedTime <= 0 {
		errs = append(errs, fmt.Errorf("retry.maxElapsedTime: must be positive, got %v", r.MaxElapsedTime))
	}
	return errors.Join(errs...)
}

// Retry is the Batcher's retry for these params: none when disabled.
func (r RetryConfig) Retry() Retry {
	if !r.Enabled {
		return Retry{}
	}
	return Retry{InitialInterval: r.InitialInterval, MaxInterval: r.MaxInterval, MaxElapsedTime: r.MaxElapsedTime}
}

// BatcherOptions configure a Batcher.
type BatcherOptions struct {
	// MaxBatchSize items buffered start a send at once; a send carries at
	// most this many.
	MaxBatchSize int
	// FlushInterval is the longest an item waits in the buffer.
	FlushInterval time.Duration
	// MaxQueueSize bounds the items buffered while sends are slow or
	// failing; Add refuses the rest.
	MaxQueueSize int
	// Timeout bounds each attempt.
	Timeout time.Duration
	Retry   Retry
	// Done, when set, learns the outcome of every batch once it is final:
	// err is nil when all of it was sent, else the last attempt's error
	// and failed how many items the backend did not take. retries counts
	// the attempts after the first. Called from the Batcher's goroutine.
	Done func(n, failed, retries int, err error)
	// Queued, when set, learns the number of buffered items whenever it
	// changes.
	Queued func(n int)
}

// PermanentError marks a send error that retrying cannot fix (the backend
// refused the data as invalid); the Batcher gives the batch up at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that a Batcher does not retry it; nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// SendFunc sends one batch. It returns how many of the items the backend
// did not take (0 on success) and an error; a failure that concerns only
// some items (a partial success) should be Permanent, since resending the
// whole batch would duplicate the rest.
type SendFunc[T any] func(ctx context.Context, batch []T) (failed int, err error)

// Batcher is the queue, batching and retry a report handler puts in front
// of a remote backend: Add buffers items without waiting, a goroutine sends
// them in batches of up to MaxBatchSize, a partial batch FlushInterval
// after its first item arrived (no timer runs while nothing waits), and a
// failed batch is retried with backoff while newer items keep buffering up
// to MaxQueueSize. Close flushes what is left.
type Batcher[T any] struct {
	opts BatcherOptions
	send SendFunc[T]

	mu     sync.Mutex
	buf    []T
	closed bool
	// spare is the array of the last batch delivered, emptied, for the
	// next one (flush runs on one goroutine at a time: run's, then
	// Close's once run has returned).
	spare []T

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	ctx    context.Context // cancelled when Close gives up
	cancel context.CancelFunc
}

// NewBatcher starts a Batcher that sends with send.
func NewBatcher[T any](opts BatcherOptions, send SendFunc[T]) *Batcher[T] {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Batcher[T]{
		opts: opts, send: send,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	go b.run()
	return b
}

// Add buffers items and returns how many did not fit (they are not
// buffered) or arrived after Close (all of them).
func (b *Batcher[T]) Add(items []T) (refused int) {
	if len(items) == 0 {
		return 0
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return len(items)
	}
	room := b.opts.MaxQueueSize - len(b.buf)
	if room < 0 {
		room = 0
	}
	if len(items) > room {
		refused = len(items) - room
		items = items[:room]
	}
	was := len(b.buf)
	b.buf = append(b.buf, items...)
	n := len(b.buf)
	b.queued(n)
	b.mu.Unlock()
	// A full batch is sent at once; the first item in an empty buffer
	// starts the flush timer.
	if n >= b.opts.MaxBatchSize || (was == 0 && n > 0) {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return refused
}

func (b *Batcher[T]) queued(n int) {
	if b.opts.Queued != nil {
		b.opts.Queued(n)
	}
}

// run sends full batches when Add kicks it and the rest FlushInterval
// after the oldest buffered item arrived. The timer runs only while items
// wait: an idle Batcher does not wake its process.
func (b *Batcher[T]) run() {
	defer close(b.done)
	timer := time.NewTimer(b.opts.FlushInterval)
	timer.Stop()
	defer timer.Stop()
	armed := false
	for {
		select {
		case <-b.kick:
			b.flush(b.ctx, false)
			if !armed && b.len() > 0 {
				timer.Reset(b.opts.FlushInterval)
				armed = true
			}
		case <-timer.C:
			armed = false
			b.flush(b.ctx, true)
		case <-b.stop:
			return
		}
	}
}

func (b *Batcher[T]) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// flush sends full batches and, with all, the partial one left too.
func (b *Batcher[T]) flush(ctx context.Context, all bool) {
	for ctx.Err() == nil {
		b.mu.Lock()
		n := len(b.buf)
		if n == 0 || (!all && n < b.opts.MaxBatchSize) {
			b.mu.Unlock()
			return
		}
		take := min(n, b.opts.MaxBatchSize)
		batch := append(b.spare[:0], b.buf[:take]...)
		b.spare = nil
		clear(b.buf[:take]) // let sent items be collected
		b.buf = append(b.buf[:0], b.buf[take:]...)
		b.queued(len(b.buf))
		b.mu.Unlock()
		b.deliver(ctx, batch)
		clear(batch)        // let sent items be collected
		b.spare = batch[:0] // at most MaxBatchSize items' room, as append rounds it
	}
}

// deliver sends one batch, retrying per opts.Retry until it is sent, the
// error is permanent, the retry time is spent or ctx ends.
func (b *Batcher[T]) deliver(ctx context.Context, batch []T) {
	start := time.Now()
	wait := b.opts.Retry.InitialInterval
	retries := 0
	for {
		actx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
		failed, err := b.send(actx, batch)
		cancel()
		if err == nil || IsPermanent(err) || ctx.Err() != nil ||
			time.Since(start)+wait > b.opts.Retry.MaxElapsedTime {
			if err != nil && failed == 0 {
				failed = len(batch)
			}
			if b.opts.Done != nil {
				b.opts.Done(len(batch), failed, retries, err)
			}
			return
		}
		jittered := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		t := time.NewTimer(jittered)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		retries++
		wait = min(2*wait, b.opts.Retry.MaxInterval)
	}
}

// Close stops the goroutine and sends what is buffered, retrying as usual
// until ctx ends; what is left then is dropped and its count returned.
func (b *Batcher[T]) Close(ctx context.Context) (dropped int) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	stop := context.AfterFunc(ctx, b.cancel) // abandon a send in flight
	<-b.done
	b.flush(b.ctx, true)
	stop()
	b.cancel()
	b.mu.Lock()
	dropped = len(b.buf)
	b.buf = nil
	b.queued(0)
	b.mu.Unlock()
	return dropped
}
