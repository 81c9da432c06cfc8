package mixer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/policy"
)

// ErrorInfo reasons the mixer puts in the details of a denial, with the
// rule and handler in its metadata, so a proxy can name them.
const (
	errorDomain          = "sidemix.dev"
	reasonPolicyDenied   = "POLICY_DENIED"
	reasonHandlerFailed  = "HANDLER_UNAVAILABLE"
	reasonQuotaExhausted = "QUOTA_EXHAUSTED"
)

// outcome is one handler call's result; done is false when the deadline
// came first.
type outcome[T any] struct {
	val  T
	err  error
	done bool
}

// fanOut runs call(ctx, i) for i in [0, n) concurrently and returns when all
// have returned or ctx ends, whichever is first: a handler that ignores its
// context cannot hold the request past the deadline. A panicking call
// counts as an error.
func fanOut[T any](ctx context.Context, n int, call func(ctx context.Context, i int) (T, error)) []outcome[T] {
	out := make([]outcome[T], n)
	if n == 0 {
		return out
	}
	type msg struct {
		i   int
		val T
		err error
	}
	ch := make(chan msg, n) // buffered: late calls never block
	for i := range n {
		go func() {
			m := msg{i: i}
			defer func() {
				if r := recover(); r != nil {
					m.err = fmt.Errorf("handler panicked: %v", r)
				}
				ch <- m
			}()
			m.val, m.err = call(ctx, i)
		}()
	}
	for range n {
		select {
		case m := <-ch:
			out[m.i] = outcome[T]{val: m.val, err: m.err, done: true}
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// failReason classifies a failed call for the dispatch error counter.
func failReason(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return reasonTimeout
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return reasonCanceled
	}
	return reasonHandlerError
}

// ruleResult is what one rule made of one Check, for
// sidemix_mixer_rule_checks_total. A rule whose calls disagree counts as
// the highest: deny over error over allow.
type ruleResult int8

const (
	ruleAllow ruleResult = iota
	ruleError
	ruleDeny
)

func (r ruleResult) String() string {
	switch r {
	case ruleDeny:
		return "deny"
	case ruleError:
		return "error"
	}
	return "allow"
}

// ruleTally is one rule's part in a Check.
type ruleTally struct {
	rule   string
	shadow bool
	result ruleResult
}

// precondition is the combined check decision being built.
type precondition struct {
	code     codes.Code
	message  string
	details  []*anypb.Any
	validFor time.Duration // 0: no handler said yet
	uses     int32         // 0: no handler said yet
	failed   bool          // a handler failed: do not let the answer be cached long
	noCache  bool          // the answer must not be reused at all
	// rules holds each rule once, in the order it first answered;
	// checkRules of them answered in the check phase.
	rules      []ruleTally
	checkRules int
}

func (p *precondition) deny(code codes.Code, msg string, details ...*anypb.Any) {
	if p.code != codes.OK {
		return // first deny wins
	}
	p.code, p.message, p.details = code, msg, details
}

func (p *precondition) bound(d time.Duration, uses int32) {
	if d > 0 && (p.validFor == 0 || d < p.validFor) {
		p.validFor = d
	}
	if uses > 0 && (p.uses == 0 || uses < p.uses) {
		p.uses = uses
	}
}

// note records what a call of rule made of the request. Calls come in
// rule order (the snapshot evaluates rules by name), so a rule's calls are
// adjacent within each phase; a rule with both check and quota actions
// comes back in the quota phase and is found among the check phase's
// entries, which are sorted.
func (p *precondition) note(rule string, shadow bool, r ruleResult) {
	if n := len(p.rules); n > 0 && p.rules[n-1].rule == rule {
		p.rules[n-1].result = max(p.rules[n-1].result, r)
		return
	}
	if i, ok := slices.BinarySearchFunc(p.rules[:p.checkRules], rule, func(t ruleTally, rule string) int {
		return strings.Compare(t.rule, rule)
	}); ok {
		p.rules[i].result = max(p.rules[i].result, r)
		return
	}
	p.rules = append(p.rules, ruleTally{rule: rule, shadow: shadow, result: r})
}

func errorInfo(reason string, meta map[string]string) []*anypb.Any {
	a, err := anypb.New(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta})
	if err != nil {
		return nil
	}
	return []*anypb.Any{a}
}

// target is the rule side of one handler call: which rule asked and what a
// denial or a failure of the call means for the request.
type target struct {
	rule     string
	handler  string // the action's handler name, also when it does not exist
	failOpen bool
	shadow   bool
}

func targetOf(a policy.Action) target {
	return target{rule: a.Rule, handler: a.Handler, failOpen: a.FailOpen, shadow: a.Shadow}
}

// setupError says why a call to the named handler cannot even be made, or
// nil. lacks says which role is missing (as in "does not check").
func setupError(st *state, name string, has func(*handler) bool, lacks string) (*handler, error) {
	h := st.handlers[name]
	switch {
	case h == nil:
		return nil, fmt.Errorf("handler %q unavailable: not in the active config", name)
	case h.err != nil:
		return h, h.unavailable()
	case !has(h):
		return h, fmt.Errorf("handler %q unavailable: adapter %q %s", name, h.adapter, lacks)
	}
	return h, nil
}

// checkCall is one instance to send to one check handler.
type checkCall struct {
	target
	h    *handler
	inst template.Instance
	err  error // set when the call cannot be made
}

func (c *checkCall) meta() map[string]string {
	return map[string]string{"rule": c.rule, "handler": c.handler, "instance": c.inst.InstanceName()}
}

// runChecks calls every check action's handler concurrently and folds the
// results into p in rule order.
func (s *Server) runChecks(ctx context.Context, st *state, actions []policy.Action, p *precondition) {
	var calls []checkCall
	for _, a := range actions {
		h, err := setupError(st, a.Handler, func(h *handler) bool { return h.checker != nil }, "does not check")
		for _, inst := range a.Instances {
			calls = append(calls, checkCall{target: targetOf(a), h: h, inst: inst, err: err})
		}
	}
	if len(calls) == 0 {
		return
	}
	res := fanOut(ctx, len(calls), func(ctx context.Context, i int) (adapters.CheckResult, error) {
		c := calls[i]
		if c.err != nil {
			return adapters.CheckResult{}, c.err
		}
		defer observeSince(c.h.checkDuration, time.Now())
		return c.h.checker.Check(ctx, c.inst)
	})
	for i := range calls {
		c, r := &calls[i], res[i]
		if reason, msg, failed := callFailure(ctx, c.h, c.handler, c.err, r.done, r.err); failed {
			s.m.dispatchErrors.WithLabelValues(c.handler, reason).Inc()
			s.handlerFailed(p, c.target, msg, c.meta())
			continue
		}
		// A shadow rule bounds the answer's reuse like any other, so that
		// it is asked as often as it would be if it enforced.
		p.bound(r.val.ValidDuration, r.val.ValidUseCount)
		if r.val.OK() {
			p.note(c.rule, c.shadow, ruleAllow)
			continue
		}
		p.note(c.rule, c.shadow, ruleDeny)
		msg := r.val.Message
		if msg == "" {
			msg = fmt.Sprintf("denied by rule %q", c.rule)
		}
		if c.shadow {
			s.log.Debug("shadow rule would deny", "rule", c.rule, "handler", c.handler,
				"instance", c.inst.InstanceName(), "code", r.val.Code.String(), "message", msg)
			continue
		}
		s.m.denials.WithLabelValues(c.rule, c.handler, denyPolicy).Inc()
		p.deny(r.val.Code, msg, errorInfo(reasonPolicyDenied, c.meta())...)
	}
}

// setupReason names why a call could not even be made: the handler exists
// but lacks the role, or it is unavailable (failed to create, or missing).
func setupReason(h *handler) string {
	if h != nil && h.err == nil {
		return reasonWrongRole
	}
	return reasonUnavailable
}

// callFailure says whether a handler call produced no result (it could not
// be set up, did not answer before the deadline, or returned an error), and
// why.
func callFailure(ctx context.Context, h *handler, name string, setupErr error, done bool, err error) (reason, msg string, failed bool) {
	switch {
	case setupErr != nil:
		reason, msg = setupReason(h), setupErr.Error()
	case !done:
		reason, msg = failReason(ctx, ctx.Err()), fmt.Sprintf("handler %q did not answer in time: %v", name, ctx.Err())
	case err != nil:
		reason, msg = failReason(ctx, err), fmt.Sprintf("handler %q failed: %v", name, err)
	default:
		return "", "", false
	}
	// The message goes to the client; a backend's error may quote its URL.
	return reason, redactURLs(msg), true
}

// handlerFailed applies the rule's fail policy to a call that produced no
// result (the caller counts the failed call itself): a shadow rule's failure
// changes nothing; a fail-open rule lets the request through; any other
// denies it with UNAVAILABLE. Fail open or closed, the answer rests on a
// failure and may only be reused briefly.
func (s *Server) handlerFailed(p *precondition, t target, msg string, meta map[string]string) {
	p.note(t.rule, t.shadow, ruleError)
	switch {
	case t.shadow:
		s.log.Debug("shadow rule's handler failed", "rule", t.rule, "handler", t.handler, "error", msg)
	case t.failOpen:
		s.m.denials.WithLabelValues(t.rule, t.handler, denyFailOpen).Inc()
		p.failed = true
	default:
		s.m.denials.WithLabelValues(t.rule, t.handler, denyUnavailable).Inc()
		p.failed = true
		p.deny(codes.Unavailable, msg, errorInfo(reasonHandlerFailed, meta)...)
	}
}

// countRules adds each rule's part in one Check to the rule metrics.
func (s *Server) countRules(st *state, p *precondition) {
	for _, t := range p.rules {
		c := st.ruleCounters(s.m, t.rule)
		c.results[t.result].Inc()
		if t.shadow && t.result == ruleDeny {
			c.shadow.Inc()
		}
	}
}

// observeSince records a handler call that began at start; deferred, it
// sees panicking calls too.
func observeSince(o prometheus.Observer, start time.Time) {
	o.Observe(time.Since(start).Seconds())
}

// check answers one Check request on st.
func (s *Server) check(ctx context.Context, st *state, bag *attribute.Bag, req *mixerv1.CheckRequest) *mixerv1.CheckResponse {
	// The answer's messages, and the context bounding the Check by the
	// check timeout, in one allocation.
	a := new(checkAnswer)
	// A caller's deadline sooner than the check timeout bounds the handlers
	// already; a context of our own would change nothing.
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > s.cfg.CheckTimeout {
		a.ctx.init(ctx, time.Now().Add(s.cfg.CheckTimeout))
		ctx = &a.ctx
		defer a.ctx.stop()
	}

	sc := scratchPool.Get().(*checkScratch)
	defer sc.put()
	refs := &sc.refs
	res := st.snap.Evaluate(bag, policy.VarietyCheck, refs)
	s.countEvalErrors(res.Errors)

	p := &sc.pre
	p.code = codes.OK
	s.runChecks(ctx, st, res.Actions, p)
	p.checkRules = len(p.rules)

	// A denied request draws no quota, not even from shadow rules: denied
	// requests consume nothing, and a shadow copy of a quota rule sees
	// exactly the requests its enforcing twin would.
	var q quotaOutcome
	if p.code == codes.OK {
		q = s.runQuotas(ctx, st, bag, req, p, &sc.quotaRefs, &a.quota)
		if q.implicit {
			// The client learns the charges with the precondition and
			// asks for them by name on its next request of this shape; the
			// shape includes what the choice of quotas looked at.
			refs.Merge(&sc.quotaRefs)
		}
	}
	s.countRules(st, p)

	validFor, uses := p.validFor, p.uses
	if validFor == 0 {
		validFor = s.cfg.DefaultValidDuration
	}
	if uses == 0 {
		uses = s.cfg.DefaultValidUseCount
	}
	if p.failed {
		validFor, uses = min(validFor, maxErrorValidDuration), 1
	}
	if p.noCache {
		validFor, uses = 0, 1
	}
	a.status.Code, a.status.Message, a.status.Details = int32(p.code), p.message, p.details
	a.pre.Status = &a.status
	a.pre.ValidDuration = s.durations.get(validFor)
	a.pre.ValidUseCount = uses
	a.pre.ReferencedAttributes = st.refs.proto(refs)
	a.resp.Precondition = &a.pre
	a.resp.Quotas, a.resp.QuotaCharges = q.results, q.charges
	resp := &a.resp
	if len(res.RequestHeaderOperations)+len(res.ResponseHeaderOperations) > 0 {
		resp.Precondition.RouteDirective = &mixerv1.RouteDirective{
			RequestHeaderOperations:  headerOps(res.RequestHeaderOperations),
			ResponseHeaderOperations: headerOps(res.ResponseHeaderOperations),
		}
	}
	return resp
}

// checkAnswer holds a CheckResponse and the messages it points to, and the
// Check's context when the mixer bounds it.
type checkAnswer struct {
	resp   mixerv1.CheckResponse
	pre    mixerv1.CheckResponse_PreconditionResult
	status rpcstatus.Status
	quota  quotaAnswer
	ctx    checkCtx
}

// checkScratch is what one Check collects and drops when answered, kept
// between Checks. Nothing in it outlives the Check: the answer gets copies
// or shared immutable messages.
type checkScratch struct {
	refs      attribute.Referenced // what the answer's precondition depends on
	quotaRefs attribute.Referenced // what the quota rules and QuotaSpecs looked at
	pre       precondition
}

var scratchPool = sync.Pool{New: func() any { return new(checkScratch) }}

func (sc *checkScratch) put() {
	sc.refs.Reset()
	sc.quotaRefs.Reset()
	rules := sc.pre.rules
	clear(rules)
	sc.pre = precondition{rules: rules[:0]}
	scratchPool.Put(sc)
}

func headerOps(ops []policy.HeaderOperation) []*mixerv1.HeaderOperation {
	if len(ops) == 0 {
		return nil
	}
	out := make([]*mixerv1.HeaderOperation, len(ops))
	for i, o := range ops {
		op := mixerv1.HeaderOperation_REPLACE
		switch o.Operation {
		case policy.HeaderRemove:
			op = mixerv1.HeaderOperation_REMOVE
		case policy.HeaderAppend:
			op = mixerv1.HeaderOperation_APPEND
		}
		out[i] = &mixerv1.HeaderOperation{Name: o.Name, Value: o.Value, Operation: op}
	}
	return out
}

func (s *Server) countEvalErrors(errs []*policy.EvalError) {
	for _, e := range errs {
		s.m.evalErrors.WithLabelValues(e.Rule).Inc()
		s.log.Debug("expression not evaluated", "error", e.Error())
	}
}

// report evaluates every bag and enqueues the instances to their handlers'
// queues. It never waits for a handler.
func (s *Server) report(st *state, bags []*attribute.Bag) {
	d := s.newReportDispatcher(st)
	defer d.done()
	for _, bag := range bags {
		d.add(st.snap.Evaluate(bag, policy.VarietyReport, nil))
	}
}

// dispatchChunk is how many instances a reportDispatcher gathers before it
// hands them to their queues: a Report of 1000 bags with a few actions
// each is one hand-over, at its end.
const dispatchChunk = 8192

// reportDispatcher hands the instances of a run of report evaluations (a
// Report's bags) to their handlers' queues, gathered by queue and handed
// over every dispatchChunk instances and at the end: one lock and at most
// one wake-up of a queue's worker per chunk instead of per bag and action,
// a handler found by name once per Report, and the workers' batches
// larger. Telemetry waits for at most a chunk's evaluation. A queue
// with nothing waiting takes a gathered slice as it is (reportQueue.put),
// so the instances are written once, not gathered and then copied; the
// slices start with the capacity the queue's worker took last.
type reportDispatcher struct {
	s    *Server
	st   *state
	outs []queueOut
	n    int // instances gathered
}

// queueOut is one handler's part of a reportDispatcher.
type queueOut struct {
	handler string
	q       *reportQueue // nil: the handler is missing or failed
	reason  string       // why q is nil
	insts   []template.Instance
}

var reportDispatchers = sync.Pool{New: func() any { return new(reportDispatcher) }}

func (s *Server) newReportDispatcher(st *state) *reportDispatcher {
	d := reportDispatchers.Get().(*reportDispatcher)
	d.s, d.st = s, st
	return d
}

// add gathers the instances of a bag's report evaluation.
func (d *reportDispatcher) add(res policy.Result) {
	d.s.countEvalErrors(res.Errors)
	for _, a := range res.Actions {
		o := d.out(a.Handler)
		if o.q == nil {
			d.s.m.dropped.WithLabelValues(a.Handler, o.reason).Add(float64(len(a.Instances)))
			continue
		}
		if o.insts == nil {
			o.insts = o.q.newBatch(max(o.q.sizeHint(), len(a.Instances), 64))
		}
		o.insts = append(o.insts, a.Instances...)
		d.n += len(a.Instances)
	}
	if d.n >= dispatchChunk {
		d.flush()
	}
}

// out is the part of the named handler.
func (d *reportDispatcher) out(handler string) *queueOut {
	for i := range d.outs {
		if d.outs[i].handler == handler {
			return &d.outs[i]
		}
	}
	q, reason := queueFor(d.st, handler)
	if len(d.outs) < cap(d.outs) {
		d.outs = d.outs[:len(d.outs)+1]
	} else {
		d.outs = append(d.outs, queueOut{})
	}
	o := &d.outs[len(d.outs)-1]
	o.handler, o.q, o.reason = handler, q, reason
	return o
}

// flush hands what is gathered to the queues.
func (d *reportDispatcher) flush() {
	for i := range d.outs {
		o := &d.outs[i]
		if len(o.insts) == 0 {
			continue
		}
		if o.q.put(o.insts, true) {
			o.insts = nil // the queue's now
		} else {
			clear(o.insts)
			o.insts = o.insts[:0]
		}
	}
	d.n = 0
}

// done flushes and puts d back in the pool.
func (d *reportDispatcher) done() {
	d.flush()
	for i := range d.outs {
		d.outs[i] = queueOut{insts: d.outs[i].insts[:0]}
	}
	d.outs = d.outs[:0]
	d.s, d.st = nil, nil
	reportDispatchers.Put(d)
}

// queueFor is the queue of the named report handler, or nil and the reason
// its instances are dropped, when the handler is missing or failed.
func queueFor(st *state, handler string) (*reportQueue, string) {
	h := st.handlers[handler]
	switch {
	case h == nil || (h.err == nil && h.queue == nil):
		return nil, reasonNoHandler
	case h.err != nil:
		return nil, reasonHandlerError
	}
	return h.queue, ""
}

// queueOf is the queue of the handler of a report action, or nil, with the
// action's instances counted as dropped, when the handler is missing or
// failed.
func (s *Server) queueOf(st *state, a policy.Action) *reportQueue {
	q, reason := queueFor(st, a.Handler)
	if q == nil {
		s.m.dropped.WithLabelValues(a.Handler, reason).Add(float64(len(a.Instances)))
	}
	return q
}
