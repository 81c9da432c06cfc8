package mixerclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

// Defaults of Options.
const (
	DefaultCheckTimeout     = time.Second
	DefaultCacheSize        = 10000
	DefaultReportBufferSize = 10000
	DefaultReportBatchSize  = 1000
	DefaultReportInterval   = time.Second
)

// reportTimeout bounds one Report RPC of the background sender; Close bounds
// the final ones by its context instead.
const reportTimeout = 5 * time.Second

// Options configure a Client. Zero fields take the defaults above.
type Options struct {
	// Addr is the mixer's gRPC address, host:port. Required.
	Addr string
	// CheckTimeout bounds one Check from start to decision, RPC included.
	CheckTimeout time.Duration
	// FailOpen allows requests when the mixer cannot be asked; otherwise
	// they are denied with Unavailable.
	FailOpen bool
	// CacheSize is the number of check answers kept; negative disables the
	// check cache.
	CacheSize int
	// ReportBufferSize bounds the bags waiting to be sent, those held back
	// for retry while the mixer is unreachable included. Over the bound,
	// Report drops the new bag, and the sender drops its oldest.
	ReportBufferSize int
	// ReportBatchSize is the number of bags per Report RPC.
	ReportBatchSize int
	// ReportInterval is how often a partial batch is sent.
	ReportInterval time.Duration
	// Logger receives state changes (mixer unreachable, back); nil discards.
	Logger *slog.Logger
	// Registerer receives the client's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Now is the clock of the check cache; nil means time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.ReportBufferSize <= 0 {
		o.ReportBufferSize = DefaultReportBufferSize
	}
	if o.ReportBatchSize <= 0 {
		o.ReportBatchSize = DefaultReportBatchSize
	}
	if o.ReportBatchSize > o.ReportBufferSize {
		o.ReportBatchSize = o.ReportBufferSize
	}
	if o.ReportInterval <= 0 {
		o.ReportInterval = DefaultReportInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// HeaderOpKind is what a HeaderOp does.
type HeaderOpKind int

// The header operations of a route directive.
const (
	// HeaderReplace sets the header to Value, replacing earlier values.
	HeaderReplace HeaderOpKind = iota
	// HeaderRemove deletes the header.
	HeaderRemove
	// HeaderAppend adds Value to the header's values.
	HeaderAppend
)

func (k HeaderOpKind) String() string {
	switch k {
	case HeaderReplace:
		return "REPLACE"
	case HeaderRemove:
		return "REMOVE"
	case HeaderAppend:
		return "APPEND"
	}
	return fmt.Sprintf("HeaderOpKind(%d)", int(k))
}

// HeaderOp is one header edit the mixer asks the proxy to make.
type HeaderOp struct {
	Name  string
	Value string
	Op    HeaderOpKind
}

// Decision is the answer to one Check. Its slices are shared between the
// answers served from the cache: read them, never change them.
type Decision struct {
	// Code is OK when the request may proceed.
	Code codes.Code
	// Message explains a denial.
	Message string
	// RetryAfter is set for exhausted quota: when asking again makes sense.
	RetryAfter time.Duration
	// RequestHeaderOps edit the forwarded request, ResponseHeaderOps the
	// response, of an allowed request.
	RequestHeaderOps, ResponseHeaderOps []HeaderOp
	// DirectResponseCode, when non-zero, tells the proxy to answer with this
	// HTTP status and body instead of forwarding.
	DirectResponseCode int
	DirectResponseBody string
	// Cached tells the answer came from the check cache.
	Cached bool
}

// Allowed reports whether the request may proceed.
func (d Decision) Allowed() bool { return d.Code == codes.OK }

// Client talks to one mixer: Check with a cache in front, Report through a
// bounded buffer and a background sender. It is safe for concurrent use.
type Client struct {
	opts    Options
	conn    *grpc.ClientConn
	rpc     mixerv1.MixerClient
	cache   *cache // nil when disabled
	encPool sync.Pool
	m       *metrics
	log     *slog.Logger

	reports    chan *attribute.Bag
	pendingLen atomic.Int64 // bags the sender holds (for the buffer gauge)
	closed     atomic.Bool
	closeOnce  sync.Once
	quit       chan struct{}   // closed by Close
	closeCtx   context.Context // set before quit closes
	senderDone chan struct{}
	closeErr   error
}

// New connects (lazily) to the mixer and starts the report sender.
func New(opts Options) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("mixerclient: Options.Addr is required")
	}
	opts.setDefaults()
	c := &Client{
		opts:       opts,
		log:        opts.Logger,
		reports:    make(chan *attribute.Bag, opts.ReportBufferSize),
		quit:       make(chan struct{}),
		senderDone: make(chan struct{}),
	}
	if opts.CacheSize > 0 {
		c.cache = newCache(opts.CacheSize)
	}
	c.encPool.New = func() any { return attribute.NewEncoder(attribute.DefaultDictionary()) }
	m, err := newMetrics(opts.Registerer, c)
	if err != nil {
		return nil, err
	}
	c.m = m
	conn, err := grpc.NewClient(opts.Addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly once the mixer is back: the default backoff
		// grows to two minutes, which would hold reports back that long.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   5 * time.Second,
			},
			MinConnectTimeout: opts.CheckTimeout,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("mixerclient: %w", err)
	}
	c.conn = conn
	c.rpc = mixerv1.NewMixerClient(conn)
	go c.sender()
	return c, nil
}

// Check decides whether the request described by bag may proceed. The
// Decision is always usable: when the mixer cannot be asked within
// CheckTimeout it follows the fail policy (OK when FailOpen, else
// Unavailable "mixer unavailable"), and the error says what went wrong.
func (c *Client) Check(ctx context.Context, bag *attribute.Bag) (Decision, error) {
	if c.cache != nil {
		if d, ok := c.cache.lookup(bag, c.opts.Now); ok {
			c.m.cacheHit.Inc()
			return d, nil
		}
	}
	c.m.cacheMiss.Inc()

	enc := c.encPool.Get().(*attribute.Encoder)
	enc.Reset()
	req := &mixerv1.CheckRequest{
		Attributes:      enc.Encode(bag),
		GlobalWordCount: enc.GlobalWordCount(),
		DeduplicationId: newDedupID(),
	}
	// Reset gives the next user fresh word slices, so req keeps its own.
	enc.Reset()
	c.encPool.Put(enc)

	cctx, cancel := context.WithTimeout(ctx, c.opts.CheckTimeout)
	resp, err := c.rpc.Check(cctx, req)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up, not the mixer: nothing to count.
			return c.policyDecision(), fmt.Errorf("mixerclient: check: %w", ctx.Err())
		}
		if c.opts.FailOpen {
			c.m.failOpen.Inc()
		} else {
			c.m.failClosed.Inc()
		}
		return c.policyDecision(), fmt.Errorf("mixerclient: check: %w", err)
	}
	d, e := decide(resp, c.opts.Now())
	if c.cache != nil && e.cacheable() {
		c.cache.store(bag, e)
	}
	return d, nil
}

// policyDecision is the answer when the mixer cannot be asked.
func (c *Client) policyDecision() Decision {
	if c.opts.FailOpen {
		return Decision{Code: codes.OK}
	}
	return Decision{Code: codes.Unavailable, Message: "mixer unavailable"}
}

// newDedupID returns 16 random bytes in hex.
func newDedupID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// answer is a mixer response as the cache keeps it.
type answer struct {
	d       Decision
	refs    []attribute.Reference
	expires time.Time
	uses    int32 // uses left after the one that asked
	quota   bool
}

// cacheable says whether the answer is worth an entry: reusable, or a
// quota marker that stops older entries from answering for this shape.
func (a *answer) cacheable() bool {
	if a.quota {
		return true
	}
	return a.uses > 0
}

// transient codes are mixer-side failures, not policy: never reuse them.
func transient(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unavailable, codes.DataLoss, codes.Canceled:
		return true
	}
	return false
}

// decide turns a CheckResponse into a Decision and its cache entry.
func decide(resp *mixerv1.CheckResponse, now time.Time) (Decision, *answer) {
	pre := resp.GetPrecondition()
	st := pre.GetStatus()
	d := Decision{Code: codes.Code(st.GetCode()), Message: st.GetMessage()}
	if rd := pre.GetRouteDirective(); rd != nil {
		d.RequestHeaderOps = headerOps(rd.GetRequestHeaderOperations())
		d.ResponseHeaderOps = headerOps(rd.GetResponseHeaderOperations())
		d.DirectResponseCode = int(rd.GetDirectResponseCode())
		d.DirectResponseBody = rd.GetDirectResponseBody()
	}
	a := &answer{refs: attribute.FromProto(pre.GetReferencedAttributes())}

	if quotas := resp.GetQuotas(); len(quotas) > 0 {
		// The cache must not answer for this request again: quota needs the
		// mixer every time. The marker entry keys on every attribute any
		// quota looked at as well.
		a.quota = true
		var refs attribute.Referenced
		addRefs(&refs, a.refs)
		exhausted := false
		var wait time.Duration
		for _, q := range quotas {
			addRefs(&refs, attribute.FromProto(q.GetReferencedAttributes()))
			if q.GetGrantedAmount() < 1 {
				exhausted = true
				wait = max(wait, retryAfter(q.GetValidDuration().AsDuration()))
			}
		}
		switch {
		case exhausted && d.Code == codes.OK:
			d = Decision{Code: codes.ResourceExhausted, Message: "quota exhausted", RetryAfter: wait}
		case exhausted && d.Code == codes.ResourceExhausted:
			// The mixer already denied for the quota; keep its message.
			d.RetryAfter = wait
		}
		a.refs = refs.List()
	}
	a.d = d

	valid := pre.GetValidDuration().AsDuration()
	if pre == nil || valid <= 0 {
		return d, &answer{} // not reusable, nothing to remember
	}
	a.expires = now.Add(valid)
	// The answer's first use is the request that asked.
	if uses := pre.GetValidUseCount(); uses > 1 && !transient(d.Code) {
		a.uses = uses - 1
	}
	return d, a
}

func addRefs(r *attribute.Referenced, refs []attribute.Reference) {
	for _, x := range refs {
		if x.HasKey {
			r.AddMapKey(x.Name, x.MapKey, x.Present)
		} else {
			r.Add(x.Name, x.Present)
		}
	}
}

// retryAfter rounds up to whole seconds, at least one.
func retryAfter(d time.Duration) time.Duration {
	s := math.Ceil(d.Seconds())
	if s < 1 {
		s = 1
	}
	return time.Duration(s) * time.Second
}

func headerOps(ops []*mixerv1.HeaderOperation) []HeaderOp {
	if len(ops) == 0 {
		return nil
	}
	out := make([]HeaderOp, len(ops))
	for i, op := range ops {
		k := HeaderReplace
		switch op.GetOperation() {
		case mixerv1.HeaderOperation_REMOVE:
			k = HeaderRemove
		case mixerv1.HeaderOperation_APPEND:
			k = HeaderAppend
		}
		out[i] = HeaderOp{Name: op.GetName(), Value: op.GetValue(), Op: k}
	}
	return out
}
