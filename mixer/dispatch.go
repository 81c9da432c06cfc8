package mixer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

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

// precondition is the combined check decision being built.
type precondition struct {
	code     codes.Code
	message  string
	details  []*anypb.Any
	validFor time.Duration // 0: no handler said yet
	uses     int32         // 0: no handler said yet
	failed   bool          // a handler failed: do not let the answer be cached long
	noCache  bool          // the answer must not be reused at all
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

func errorInfo(reason string, meta map[string]string) []*anypb.Any {
	a, err := anypb.New(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta})
	if err != nil {
		return nil
	}
	return []*anypb.Any{a}
}

func retryInfo(d time.Duration) *anypb.Any {
	a, err := anypb.New(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		return nil
	}
	return a
}

// checkCall is one instance to send to one check handler.
type checkCall struct {
	rule string
	h    *handler
	name string // handler name, also when h is nil
	inst template.Instance
	err  error // set when the call cannot be made
}

// runChecks calls every check action's handler concurrently and folds the
// results into p in rule order.
func (s *Server) runChecks(ctx context.Context, st *state, actions []policy.Action, p *precondition) {
	var calls []checkCall
	for _, a := range actions {
		h := st.handlers[a.Handler]
		var err error
		switch {
		case h == nil:
			err = fmt.Errorf("handler %q unavailable: not in the active config", a.Handler)
		case h.err != nil:
			err = h.unavailable()
		case h.checker == nil:
			err = fmt.Errorf("handler %q unavailable: adapter %q does not check", a.Handler, h.adapter)
		}
		for _, inst := range a.Instances {
			calls = append(calls, checkCall{rule: a.Rule, h: h, name: a.Handler, inst: inst, err: err})
		}
	}
	res := fanOut(ctx, len(calls), func(ctx context.Context, i int) (adapters.CheckResult, error) {
		c := calls[i]
		if c.err != nil {
			return adapters.CheckResult{}, c.err
		}
		return c.h.checker.Check(ctx, c.inst)
	})
	for i, c := range calls {
		meta := map[string]string{"rule": c.rule, "handler": c.name, "instance": c.inst.InstanceName()}
		r := res[i]
		switch {
		case s.handlerFailed(ctx, p, c.h, c.name, c.err, r.done, r.err, meta):
		default:
			p.bound(r.val.ValidDuration, r.val.ValidUseCount)
			if !r.val.OK() {
				msg := r.val.Message
				if msg == "" {
					msg = fmt.Sprintf("denied by rule %q", c.rule)
				}
				p.deny(r.val.Code, msg, errorInfo(reasonPolicyDenied, meta)...)
			}
		}
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

// quotaCall is one allocation from one quota handler.
type quotaCall struct {
	h    *handler
	name string
	inst *template.Quota
	args adapters.QuotaArgs
	err  error
}

// quotaGrant is the combined result of one quota instance.
type quotaGrant struct {
	requested  int64
	bestEffort bool
	granted    int64
	validFor   time.Duration
	seen       bool
}

// runQuotas allocates the quotas of a Check and returns the results by
// instance name. Failures deny the precondition (fail closed).
func (s *Server) runQuotas(ctx context.Context, st *state, bag *attribute.Bag, req *mixerv1.CheckRequest, p *precondition) map[string]*mixerv1.CheckResponse_QuotaResult {
	var refs attribute.Referenced
	res := st.snap.Evaluate(bag, policy.VarietyQuota, &refs)
	s.countEvalErrors(res.Errors)

	explicit := len(req.GetQuotas()) > 0
	var calls []quotaCall
	for _, a := range res.Actions {
		h := st.handlers[a.Handler]
		var err error
		switch {
		case h == nil:
			err = fmt.Errorf("handler %q unavailable: not in the active config", a.Handler)
		case h.err != nil:
			err = h.unavailable()
		case h.quota == nil:
			err = fmt.Errorf("handler %q unavailable: adapter %q does not allocate quota", a.Handler, h.adapter)
		}
		for _, inst := range a.Instances {
			q, ok := inst.(*template.Quota)
			if !ok {
				continue
			}
			args := adapters.QuotaArgs{DeduplicationID: req.GetDeduplicationId(), Amount: 1}
			if explicit {
				qp, wanted := req.GetQuotas()[q.Name]
				if !wanted {
					continue
				}
				args.Amount, args.BestEffort = qp.GetAmount(), qp.GetBestEffort()
				if args.Amount <= 0 {
					args.Amount = 1
				}
			}
			calls = append(calls, quotaCall{h: h, name: a.Handler, inst: q, args: args, err: err})
		}
	}
	out := fanOut(ctx, len(calls), func(ctx context.Context, i int) (adapters.QuotaResult, error) {
		c := calls[i]
		if c.err != nil {
			return adapters.QuotaResult{}, c.err
		}
		return c.h.quota.Allocate(ctx, c.inst, c.args)
	})

	grants := map[string]*quotaGrant{}
	var order []string
	for i, c := range calls {
		g := grants[c.inst.Name]
		if g == nil {
			g = &quotaGrant{requested: c.args.Amount, bestEffort: c.args.BestEffort}
			grants[c.inst.Name] = g
			order = append(order, c.inst.Name)
		}
		r := out[i]
		meta := map[string]string{"handler": c.name, "instance": c.inst.Name}
		var granted int64
		var validFor time.Duration
		switch {
		case s.handlerFailed(ctx, p, c.h, c.name, c.err, r.done, r.err, meta):
		default:
			granted, validFor = r.val.Amount, r.val.ValidDuration
		}
		// An instance drawn from several handlers gets the least of them.
		if !g.seen || granted < g.granted {
			g.granted = granted
		}
		if validFor > 0 && (g.validFor == 0 || validFor < g.validFor) {
			g.validFor = validFor
		}
		g.seen = true
	}
	// A quota asked for by name that no rule limits is granted in full.
	for name, qp := range req.GetQuotas() {
		if _, ok := grants[name]; ok {
			continue
		}
		amount := qp.GetAmount()
		if amount <= 0 {
			amount = 1
		}
		grants[name] = &quotaGrant{requested: amount, bestEffort: qp.GetBestEffort(), granted: amount}
	}
	if len(grants) == 0 {
		return nil
	}
	if !explicit && len(calls) > 0 {
		// The client did not ask for these quotas, so it cannot know to ask
		// again: an answer it reused would skip them.
		p.noCache = true
	}

	refsProto := attribute.ToProto(refs.List())
	results := make(map[string]*mixerv1.CheckResponse_QuotaResult, len(grants))
	for _, name := range order {
		g := grants[name]
		exhausted := g.granted < g.requested && (!g.bestEffort || g.granted <= 0)
		if exhausted && p.code == codes.OK {
			retry := g.validFor
			details := errorInfo(reasonQuotaExhausted, map[string]string{"quota": name})
			if retry > 0 {
				details = append(details, retryInfo(retry))
			}
			p.deny(codes.ResourceExhausted, fmt.Sprintf("quota %q exhausted", name), details...)
			p.noCache = true
		}
	}
	for name, g := range grants {
		validFor := g.validFor
		if validFor == 0 {
			validFor = s.cfg.DefaultValidDuration
		}
		results[name] = &mixerv1.CheckResponse_QuotaResult{
			ValidDuration:        durationpb.New(validFor),
			GrantedAmount:        g.granted,
			ReferencedAttributes: refsProto,
		}
	}
	return results
}

// check answers one Check request on st.
func (s *Server) check(ctx context.Context, st *state, bag *attribute.Bag, req *mixerv1.CheckRequest) *mixerv1.CheckResponse {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
	defer cancel()

	var refs attribute.Referenced
	res := st.snap.Evaluate(bag, policy.VarietyCheck, &refs)
	s.countEvalErrors(res.Errors)

	p := &precondition{code: codes.OK}
	s.runChecks(ctx, st, res.Actions, p)

	var quotas map[string]*mixerv1.CheckResponse_QuotaResult
	if p.code == codes.OK {
		// A denied request draws no quota.
		quotas = s.runQuotas(ctx, st, bag, req, p)
	}

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
	resp := &mixerv1.CheckResponse{
		Precondition: &mixerv1.CheckResponse_PreconditionResult{
			Status:               &rpcstatus.Status{Code: int32(p.code), Message: p.message, Details: p.details},
			ValidDuration:        durationpb.New(validFor),
			ValidUseCount:        uses,
			ReferencedAttributes: attribute.ToProto(refs.List()),
		},
		Quotas: quotas,
	}
	if len(res.RequestHeaderOperations)+len(res.ResponseHeaderOperations) > 0 {
		resp.Precondition.RouteDirective = &mixerv1.RouteDirective{
			RequestHeaderOperations:  headerOps(res.RequestHeaderOperations),
			ResponseHeaderOperations: headerOps(res.ResponseHeaderOperations),
		}
	}
	return resp
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
	for _, bag := range bags {
		res := st.snap.Evaluate(bag, policy.VarietyReport, nil)
		s.countEvalErrors(res.Errors)
		for _, a := range res.Actions {
			h := st.handlers[a.Handler]
			switch {
			case h == nil || (h.err == nil && h.queue == nil):
				s.m.dropped.WithLabelValues(a.Handler, reasonNoHandler).Add(float64(len(a.Instances)))
			case h.err != nil:
				s.m.dropped.WithLabelValues(a.Handler, reasonHandlerError).Add(float64(len(a.Instances)))
			default:
				for _, inst := range a.Instances {
					h.queue.enqueue(inst)
				}
			}
		}
	}
}

// handlerFailed records a handler call that produced no result (it could not
// be set up, did not answer before the deadline, or returned an error) as a
// fail-closed denial, and reports whether it did.
func (s *Server) handlerFailed(ctx context.Context, p *precondition, h *handler, name string, setupErr error,
	done bool, err error, meta map[string]string) bool {
	var reason, msg string
	switch {
	case setupErr != nil:
		reason, msg = setupReason(h), setupErr.Error()
	case !done:
		reason, msg = failReason(ctx, ctx.Err()), fmt.Sprintf("handler %q did not answer in time: %v", name, ctx.Err())
	case err != nil:
		reason, msg = failReason(ctx, err), fmt.Sprintf("handler %q failed: %v", name, err)
	default:
		return false
	}
	s.m.dispatchErrors.WithLabelValues(name, reason).Inc()
	p.failed = true
	p.deny(codes.Unavailable, msg, errorInfo(reasonHandlerFailed, meta)...)
	return true
}
