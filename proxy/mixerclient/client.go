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
	"google.golang.org/grpc/codes"

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
	DefaultPrefetchWindow   = time.Second
	DefaultPrefetchMaxAge   = time.Second
	DefaultEjectAfter       = 3
	DefaultEjectTime        = time.Second
	// DefaultPrefetchMax is what the command line sets Options.PrefetchMax
	// to (Istio's mixer client prefetched by default too); the zero
	// Options keep prefetch off.
	DefaultPrefetchMax = 100
)

// maxEjectTime caps the ejection time, which doubles with every ejection
// in a row.
const maxEjectTime = 30 * time.Second

// reportTimeout bounds one Report RPC of the background sender; Close bounds
// the final ones by its context instead.
const reportTimeout = 5 * time.Second

// Options configure a Client. Zero fields take the defaults above.
type Options struct {
	// Addr is the mixer's gRPC address, host:port, or several separated by
	// commas: each call goes to the next healthy one. Required.
	Addr string
	// CheckTimeout bounds one Check from start to decision, RPCs included
	// (a retry on another mixer too).
	CheckTimeout time.Duration
	// FailOpen allows requests when the mixer cannot be asked; otherwise
	// they are denied with Unavailable. CheckWithPolicy overrides it per
	// call.
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

	// PrefetchMax is the most quota one Check asks for (a request's own
	// charge, when larger, excepted) so that later requests are answered
	// from the local pool; 0 disables prefetch: every request that draws on
	// a quota asks the mixer for exactly its charge. A pool never holds more
	// than PrefetchLimitShare of the quota's limit either.
	PrefetchMax int64
	// PrefetchWindow is the sliding window over which usage is measured to
	// predict the next window's need.
	PrefetchWindow time.Duration
	// PrefetchMaxAge caps the life of pooled tokens (besides the grant's
	// own validity), which bounds how late a token charged at the mixer
	// may be used.
	PrefetchMaxAge time.Duration

	// EjectAfter is the number of failures in a row that take a mixer out
	// of the rotation (an unreachable one is out at once).
	EjectAfter int
	// EjectTime is how long the first ejection lasts; each ejection in a
	// row doubles it, up to 30s. After it the mixer gets calls again, and
	// its next failure ejects it again.
	EjectTime time.Duration

	// Logger receives state changes (mixer unreachable, back); nil discards.
	Logger *slog.Logger
	// Registerer receives the client's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Now is the clock of the check cache and the quota pools; nil means
	// time.Now.
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
	if o.PrefetchMax < 0 {
		o.PrefetchMax = 0
	}
	if o.PrefetchWindow <= 0 {
		o.PrefetchWindow = DefaultPrefetchWindow
	}
	if o.PrefetchMaxAge <= 0 {
		o.PrefetchMaxAge = DefaultPrefetchMaxAge
	}
	if o.EjectAfter <= 0 {
		o.EjectAfter = DefaultEjectAfter
	}
	if o.EjectTime <= 0 {
		o.EjectTime = DefaultEjectTime
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

// FailPolicy is what a Check answers when the mixer cannot be asked.
type FailPolicy int8

// The fail policies of CheckWithPolicy.
const (
	// FailPolicyDefault follows Options.FailOpen.
	FailPolicyDefault FailPolicy = iota
	// FailPolicyClosed denies with Unavailable "mixer unavailable".
	FailPolicyClosed
	// FailPolicyOpen allows.
	FailPolicyOpen
)

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
	// RateLimit is the tightest quota limit the request was counted
	// against, when the mixer told it (Limit > 0).
	RateLimit RateLimit
	// RequestHeaderOps edit the forwarded request, ResponseHeaderOps the
	// response, of an allowed request.
	RequestHeaderOps, ResponseHeaderOps []HeaderOp
	// DirectResponseCode, when non-zero, tells the proxy to answer with this
	// HTTP status and body instead of forwarding.
	DirectResponseCode int
	DirectResponseBody string
	// Cached tells the answer came from the check cache (and its quota, if
	// any, from the local pool).
	Cached bool
}

// Allowed reports whether the request may proceed.
func (d Decision) Allowed() bool { return d.Code == codes.OK }

// Client talks to the mixers: Check with a cache and quota pools in front,
// Report through a bounded buffer and a background sender. It is safe for
// concurrent use.
type Client struct {
	opts    Options
	lb      *balancer
	cache   *cache // nil when disabled
	pools   *quotaPools
	encPool sync.Pool
	m       *metrics
	log     *slog.Logger

	refillMu   sync.Mutex     // orders refills.Add before Close's Wait
	noRefills  bool           // set by Close; guarded by refillMu
	refills    sync.WaitGroup // background prefetches
	reports    reportBuffer
	pendingLen atomic.Int64 // bags the sender holds (for the buffer gauge)
	closed     atomic.Bool
	closeOnce  sync.Once
	quit       chan struct{}   // closed by Close
	closeCtx   context.Context // set before quit closes
	senderDone chan struct{}
	closeErr   error
}

// New connects (lazily) to the mixers and starts the report sender.
func New(opts Options) (*Client, error) {
	if len(splitAddrs(opts.Addr)) == 0 {
		return nil, errors.New("mixerclient: Options.Addr is required")
	}
	opts.setDefaults()
	c := &Client{
		opts:       opts,
		log:        opts.Logger,
		reports:    newReportBuffer(opts.ReportBufferSize, opts.ReportBatchSize),
		quit:       make(chan struct{}),
		senderDone: make(chan struct{}),
	}
	if opts.CacheSize > 0 {
		c.cache = newCache(opts.CacheSize)
	}
	c.pools = newQuotaPools(max(opts.CacheSize, DefaultCacheSize), opts.PrefetchWindow)
	c.encPool.New = func() any { return attribute.NewEncoder(attribute.DefaultDictionary()) }
	m, err := newMetrics(opts.Registerer, c)
	if err != nil {
		return nil, err
	}
	c.m = m
	lb, err := newBalancer(&c.opts, opts.Registerer)
	if err != nil {
		return nil, err
	}
	c.lb = lb
	go c.sender()
	return c, nil
}

// Where a Decision came from, for the denial metric.
const (
	sourceCache       = "cache"
	sourceMixer       = "mixer"
	sourceLocal       = "local" // the quota pools, or a remembered exhaustion
	sourceUnavailable = "unavailable"
)

// Check decides whether the request described by bag may proceed, under
// Options.FailOpen; see CheckWithPolicy.
func (c *Client) Check(ctx context.Context, bag *attribute.Bag) (Decision, error) {
	return c.CheckWithPolicy(ctx, bag, FailPolicyDefault)
}

// CheckWithPolicy decides whether the request described by bag may
// proceed. The Decision is always usable: when the mixer cannot be asked
// within CheckTimeout it follows fp (OK when open, else Unavailable "mixer
// unavailable"), and the error says what went wrong.
func (c *Client) CheckWithPolicy(ctx context.Context, bag *attribute.Bag, fp FailPolicy) (Decision, error) {
	d, source, err := c.check(ctx, bag, c.failOpen(fp))
	if !d.Allowed() && source != sourceUnavailable {
		c.m.denials.WithLabelValues(d.Code.String(), source).Inc()
	}
	return d, err
}

func (c *Client) failOpen(fp FailPolicy) bool {
	switch fp {
	case FailPolicyOpen:
		return true
	case FailPolicyClosed:
		return false
	}
	return c.opts.FailOpen
}

func (c *Client) check(ctx context.Context, bag *attribute.Bag, failOpen bool) (Decision, string, error) {
	if c.cache != nil {
		if d, charges, ok := c.cache.lookup(bag, c.opts.Now); ok {
			c.m.cacheHit.Inc()
			if !d.Allowed() || len(charges) == 0 {
				return d, sourceCache, nil
			}
			return c.quotaCheck(ctx, bag, d, charges, failOpen)
		}
	}
	c.m.cacheMiss.Inc()

	resp, err := c.send(ctx, c.newRequest(bag), c.m.sentCheck)
	if err != nil {
		d, err := c.unavailable(ctx, err, failOpen)
		return d, sourceUnavailable, err
	}
	now := c.opts.Now()
	d, e := decide(resp, now)
	if len(e.charges) > 0 {
		c.learnCharges(bag, e.charges, resp, now)
	}
	if c.cache != nil && e.cacheable() {
		c.cache.store(bag, e)
	}
	return d, sourceMixer, nil
}

// newRequest encodes bag into a Check request with a fresh deduplication
// id.
func (c *Client) newRequest(bag *attribute.Bag) *mixerv1.CheckRequest {
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
	return req
}

// send sends one Check within CheckTimeout. A Check that fails with
// UNAVAILABLE or DEADLINE_EXCEEDED is retried once on another mixer with
// the same request, deduplication id included, so that a quota the mixers
// share is charged once. With several mixers the first attempt gets half
// the timeout, so that the retry fits in it.
func (c *Client) send(ctx context.Context, req *mixerv1.CheckRequest, sent prometheus.Counter) (*mixerv1.CheckResponse, error) {
	sent.Inc()
	start := time.Now()
	defer func() { c.m.checkDuration.Observe(time.Since(start).Seconds()) }()
	deadline := start.Add(c.opts.CheckTimeout)
	tctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	attempt := c.opts.CheckTimeout
	if len(c.lb.eps) > 1 {
		attempt /= 2
	}
	ep := c.lb.pick(nil)
	for try := 0; ; try++ {
		actx, acancel := context.WithTimeout(tctx, attempt)
		resp, err := ep.rpc.Check(actx, req)
		acancel()
		c.lb.done(ctx, ep, err)
		if err == nil {
			return resp, nil
		}
		if try > 0 || ctx.Err() != nil || !retryable(err) || time.Until(deadline) <= 0 {
			return nil, err
		}
		next := c.lb.pick(ep)
		if next == nil {
			return nil, err
		}
		c.m.checkRetries.Inc()
		ep = next
		attempt = time.Until(deadline)
	}
}

// unavailable is the answer when the mixer cannot be asked.
func (c *Client) unavailable(ctx context.Context, err error, failOpen bool) (Decision, error) {
	if ctx.Err() != nil {
		// The caller gave up, not the mixer: nothing to count.
		return policyDecision(failOpen), fmt.Errorf("mixerclient: check: %w", ctx.Err())
	}
	if failOpen {
		c.m.failOpen.Inc()
	} else {
		c.m.failClosed.Inc()
	}
	return policyDecision(failOpen), fmt.Errorf("mixerclient: check: %w", err)
}

// policyDecision is the answer when the mixer cannot be asked.
func policyDecision(failOpen bool) Decision {
	if failOpen {
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
	charges []charge
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
	a.charges = charges(resp)

	if quotas := resp.GetQuotas(); len(quotas) > 0 {
		var refs attribute.Referenced
		addRefs(&refs, a.refs)
		exhausted := false
		var wait time.Duration
		var rl, exhaustedRL RateLimit
		for _, q := range quotas {
			addRefs(&refs, attribute.FromProto(q.GetReferencedAttributes()))
			r := RateLimit{Limit: q.GetLimit(), Remaining: q.GetRemaining(), Reset: q.GetReset_().AsDuration()}
			if r.Limit > 0 && (rl.Limit == 0 || r.Remaining < rl.Remaining) {
				rl = r
			}
			if q.GetGrantedAmount() < 1 {
				exhausted = true
				wait = max(wait, retryAfter(q.GetValidDuration().AsDuration()))
				if r.Limit > 0 {
					exhaustedRL = r
				}
			}
		}
		d.RateLimit = rl
		switch {
		case exhausted && d.Code == codes.OK:
			d = Decision{Code: codes.ResourceExhausted, Message: "quota exhausted", RetryAfter: wait, RateLimit: exhaustedRL}
		case exhausted && d.Code == codes.ResourceExhausted:
			// The mixer already denied for the quota; keep its message.
			d.RetryAfter = wait
			d.RateLimit = exhaustedRL
		}
		if len(a.charges) == 0 {
			// The mixer did not say which quotas to ask for next time, so
			// the cache must not answer for this request again: the marker
			// entry keys on every attribute any quota looked at as well.
			a.quota = true
			a.refs = refs.List()
		}
	}
	a.d = d
	// The limit figures are this answer's; a reuse gets its own or none.
	a.d.RateLimit = RateLimit{}

	valid := pre.GetValidDuration().AsDuration()
	if pre == nil || valid <= 0 {
		return d, &answer{charges: a.charges} // not reusable; the charges still teach the pools
	}
	a.expires = now.Add(valid)
	// The answer's first use is the request that asked.
	if uses := pre.GetValidUseCount(); uses > 1 && !transient(d.Code) {
		a.uses = uses - 1
	}
	return d, a
}

// charges reads the quota charges of an answer, one per quota, with the
// references of the quota's result (its dimensions).
func charges(resp *mixerv1.CheckResponse) []charge {
	qc := resp.GetQuotaCharges()
	if len(qc) == 0 {
		return nil
	}
	out := make([]charge, 0, len(qc))
next:
	for _, x := range qc {
		amount := x.GetCharge()
		if amount <= 0 {
			amount = 1
		}
		for i := range out {
			if out[i].quota == x.GetQuota() { // charged twice: pay both
				out[i].amount += amount
				continue next
			}
		}
		refs := attribute.FromProto(resp.GetQuotas()[x.GetQuota()].GetReferencedAttributes())
		out = append(out, charge{quota: x.GetQuota(), amount: amount, refs: refs, shape: attribute.Shape(refs)})
	}
	return out
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
