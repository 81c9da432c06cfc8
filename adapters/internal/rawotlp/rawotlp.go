// Package rawotlp batches otlp instances (adapters/template.OTLP) for the
// adapters that forward them: the resources an app exported, as the mixer
// received them, concatenated into export request bodies (the field 1
// entries of a TracesData, or LogsData, are an ExportTraceServiceRequest,
// or ExportLogsServiceRequest) that are sent as they are, never decoded.
// The otlp and jaeger adapters send through it.
//
// A Batcher appends each resource's bytes to the open batch and releases
// the instance at once (template.OTLP.Release), so the mixer's receiver
// gets its pooled buffer back while the batch waits, is sent or is
// retried. Releasing only after the send would be unsafe on failure (after
// a timed-out call gRPC's writer may still be reading the message) and
// would hold the receiver's buffers for the whole retry time of a backend
// that is down; the copy is one memmove per resource, small beside gRPC's
// own framing of the bytes. A batch is closed, and handed to a
// handlerkit.Batcher that sends and retries it, when it holds MaxBatchItems
// spans (log records), when the next resource would take it over
// MaxBatchBytes (gRPC servers refuse messages over 4 MiB by default), or
// FlushInterval after its first resource. MaxQueueItems bounds the items
// held, open or waiting; Add refuses the rest. The body of a batch sent
// successfully is reused for a later batch.
package rawotlp

import (
	"context"
	"sync"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

// DefaultMaxBatchBytes is the largest body a batch grows to: gRPC's
// default limit of a received message.
const DefaultMaxBatchBytes = 4 << 20

// Options configure a Batcher.
type Options struct {
	// MaxBatchItems spans (log records) make a batch.
	MaxBatchItems int
	// MaxBatchBytes bounds a batch's body; 0 is DefaultMaxBatchBytes. A
	// resource larger than that alone is sent by itself.
	MaxBatchBytes int
	// FlushInterval is the longest a resource waits in the open batch.
	FlushInterval time.Duration
	// MaxQueueItems bounds the items held (a resource of no items counts
	// as one).
	MaxQueueItems int
	// Timeout bounds each attempt.
	Timeout time.Duration
	Retry   handlerkit.Retry
	// Done learns each batch's final outcome, in items, as
	// handlerkit.BatcherOptions.Done.
	Done func(n, failed, retries int, err error)
	// Queued, when set, learns the number of items held whenever it
	// changes.
	Queued func(n int)
	// Closing, when set and true, makes a failed send final (no retries):
	// the handler is shutting down.
	Closing func() bool
}

// SendFunc sends one export request body. It returns how many items the
// backend rejected in a partial success (with a Permanent error: the rest
// was taken) or an error for the whole body.
type SendFunc func(ctx context.Context, body []byte) (rejected int, err error)

// batch is a body of concatenated resources.
type batch struct {
	body   []byte
	items  int // spans or log records
	weight int // what the batch counts against MaxQueueItems
}

// Batcher batches otlp instances into bodies and sends them.
type Batcher struct {
	opts Options
	send SendFunc
	b    *handlerkit.Batcher[*batch]

	mu      sync.Mutex
	open    *batch
	timer   *time.Timer
	held    int                 // weight of open and pending
	pending map[*batch]struct{} // closed, not yet done
	closed  bool
	free    [][]byte // bodies of batches sent, for reuse

	// sending is the batch of the send in flight; only the
	// handlerkit.Batcher's goroutine touches it.
	sending *batch
	// rejected is what the backend refused of sending.
	rejected int
}

// maxFree bounds the bodies kept for reuse.
const maxFree = 4

// New starts a Batcher that sends with send.
func New(opts Options, send SendFunc) *Batcher {
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	r := &Batcher{opts: opts, send: send, pending: map[*batch]struct{}{}}
	r.b = handlerkit.NewBatcher(handlerkit.BatcherOptions{
		MaxBatchSize:  1,
		FlushInterval: opts.FlushInterval,
		// The items bound is kept here; every batch weighs at least one.
		MaxQueueSize: opts.MaxQueueItems + 1,
		Timeout:      opts.Timeout,
		Retry:        opts.Retry,
		Done:         r.done,
	}, r.deliver)
	r.queued()
	return r
}

func weight(in *template.OTLP) int { return max(1, in.Items) }

// Add copies the instances' resources into batches and releases each
// instance once, whether it was taken or refused. It returns the items
// refused: the queue was full, or the Batcher is closed.
func (r *Batcher) Add(insts []*template.OTLP) (refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, in := range insts {
		w := weight(in)
		if r.closed || r.held+w > r.opts.MaxQueueItems {
			refused += in.Items
		} else {
			if r.open != nil && len(r.open.body) > 0 &&
				(r.open.items+in.Items > r.opts.MaxBatchItems || len(r.open.body)+len(in.Data) > r.opts.MaxBatchBytes) {
				r.seal()
			}
			if r.open == nil {
				r.open = &batch{body: r.body()}
				s := r.open
				r.timer = time.AfterFunc(r.opts.FlushInterval, func() { r.flush(s) })
			}
			r.open.body = append(r.open.body, in.Data...)
			r.open.items += in.Items
			r.open.weight += w
			r.held += w
			if r.open.items >= r.opts.MaxBatchItems {
				r.seal()
			}
		}
		if in.Release != nil {
			in.Release()
		}
	}
	r.queued()
	return refused
}

// body returns a reused body, or nil.
func (r *Batcher) body() []byte {
	if n := len(r.free); n > 0 {
		b := r.free[n-1]
		r.free[n-1] = nil
		r.free = r.free[:n-1]
		return b[:0]
	}
	return nil
}

// seal hands the open batch to the sender. r.mu is held.
func (r *Batcher) seal() {
	s := r.open
	r.open = nil
	r.timer.Stop()
	r.timer = nil
	r.pending[s] = struct{}{}
	if r.b.Add([]*batch{s}) > 0 { // closed meanwhile: cannot happen while r.closed is false
		delete(r.pending, s)
		r.held -= s.weight
	}
}

// flush seals s when it is still the open batch: its first resource has
// waited FlushInterval.
func (r *Batcher) flush(s *batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == s && !r.closed {
		r.seal()
	}
}

func (r *Batcher) deliver(ctx context.Context, bs []*batch) (int, error) {
	s := bs[0]
	r.sending, r.rejected = s, 0
	rejected, err := r.send(ctx, s.body)
	r.rejected = rejected
	if err != nil && r.opts.Closing != nil && r.opts.Closing() {
		err = handlerkit.Permanent(err)
	}
	if rejected > 0 {
		return 1, err
	}
	return 0, err
}

// done counts the batch in flight in items and reuses its body when it
// was sent.
func (r *Batcher) done(_, _, retries int, err error) {
	s := r.sending
	r.sending = nil
	failed := r.rejected
	if err != nil && failed == 0 {
		failed = s.items
	}
	r.mu.Lock()
	delete(r.pending, s)
	r.held -= s.weight
	// A failed send may have ended with gRPC still holding the body; only
	// one the backend answered is reused.
	if err == nil && len(r.free) < maxFree {
		r.free = append(r.free, s.body)
	}
	r.queued()
	r.mu.Unlock()
	if r.opts.Done != nil {
		r.opts.Done(s.items, failed, retries, err)
	}
}

func (r *Batcher) queued() {
	if r.opts.Queued != nil {
		r.opts.Queued(r.held)
	}
}

// Close sends the open batch and what waits, retrying as usual until ctx
// ends; it returns the items dropped then.
func (r *Batcher) Close(ctx context.Context) (dropped int) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0
	}
	if r.open != nil {
		r.seal()
	}
	r.closed = true
	r.mu.Unlock()
	r.b.Close(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.pending {
		dropped += s.items
		r.held -= s.weight
	}
	clear(r.pending)
	r.free = nil
	r.queued()
	return dropped
}
