package mixer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/policy"
)

// quotaCall is one allocation from one quota handler.
type quotaCall struct {
	target
	h    *handler
	inst *template.Quota
	args adapters.QuotaArgs
	err  error
	// same is the enforcing call a shadow call shares its allocation with
	// (same handler, quota and terms), or -1. Asking the handler twice would
	// charge the request twice.
	same int
}

func (c *quotaCall) meta() map[string]string {
	return map[string]string{"rule": c.rule, "handler": c.handler, "instance": c.inst.Name}
}

// exhausted reports whether r refuses the call's terms.
func (c *quotaCall) exhausted(r adapters.QuotaResult) bool {
	return r.Amount < c.args.Amount && (!c.args.BestEffort || r.Amount <= 0)
}

// quotaWant is what a request asks of one quota.
type quotaWant struct {
	amount     int64
	bestEffort bool
}

// quotaGrant is the combined result of one quota instance.
type quotaGrant struct {
	name       string
	requested  int64
	bestEffort bool
	// enforced is set once an enforcing rule answered for the quota; until
	// then it is granted in full.
	enforced bool
	granted  int64
	validFor time.Duration
	// The tightest window any enforcing handler reported.
	limit, remaining int64
	reset            time.Duration
	// The first enforcing call that refused, for the denial's details,
	// and its handler's series of the quota.
	deniedBy       *quotaCall
	deniedCounters *quotaCounters
}

func (g *quotaGrant) add(amount int64, validFor time.Duration) {
	// An instance drawn from several handlers gets the least of them.
	if !g.enforced || amount < g.granted {
		g.granted = amount
	}
	if validFor > 0 && (g.validFor == 0 || validFor < g.validFor) {
		g.validFor = validFor
	}
	g.enforced = true
}

// tighten keeps the window with the least left; on a tie, the one that
// takes longer to reset.
func (g *quotaGrant) tighten(r adapters.QuotaResult) {
	if r.Limit <= 0 {
		return
	}
	if g.limit == 0 || r.Remaining < g.remaining || (r.Remaining == g.remaining && r.Reset > g.reset) {
		g.limit, g.remaining, g.reset = r.Limit, r.Remaining, r.Reset
	}
}

func (g *quotaGrant) exhausted() bool {
	return g.enforced && g.granted < g.requested && (!g.bestEffort || g.granted <= 0)
}

// quotaAnswer holds the first quota's messages in a Check's answer: a
// Check asks for one quota or two, and these come with the answer's
// allocation instead of one allocation each.
type quotaAnswer struct {
	result  mixerv1.CheckResponse_QuotaResult
	reset   durationpb.Duration
	valid   durationpb.Duration // a denial's
	charge  mixerv1.CheckResponse_QuotaCharge
	charges [1]*mixerv1.CheckResponse_QuotaCharge
}

// quotaOutcome is the quota part of a Check answer.
type quotaOutcome struct {
	results map[string]*mixerv1.CheckResponse_QuotaResult
	// implicit is set when the request named no quotas: the mixer chose
	// them, charges says which, and refs what the choice looked at.
	implicit bool
	charges  []*mixerv1.CheckResponse_QuotaCharge
}

// runQuotas allocates the quotas of a Check: those the request names, with
// its amounts; when it names none, those the QuotaSpecs bound to its service
// charge, or when none is bound every quota of the matching rules at 1.
// Enforcing rules' refusals and failures deny p (a failure per the rule's
// fail policy); shadow rules only count theirs.
//
// refs collects what the quota rules and the QuotaSpecs looked at.
//
// The first quota's messages in the answer are those of qa.
func (s *Server) runQuotas(ctx context.Context, st *state, bag *attribute.Bag, req *mixerv1.CheckRequest, p *precondition, refs *attribute.Referenced, qa *quotaAnswer) quotaOutcome {
	var out quotaOutcome
	res := st.snap.Evaluate(bag, policy.VarietyQuota, refs)
	s.countEvalErrors(res.Errors)
	// The quota results reference what the quota rules looked at (their
	// matches and dimensions): what tells one counter from another. The
	// QuotaSpec choice below only decides which quotas, so its attributes
	// go to the precondition alone and do not split the proxy's pools.
	refsProto := st.refs.proto(refs)

	// wanted nil: every quota of the matching rules at 1. order lists the
	// quotas in the order they were first asked for.
	var wanted map[string]quotaWant
	var order []string
	if len(req.GetQuotas()) > 0 {
		wanted = make(map[string]quotaWant, len(req.GetQuotas()))
		for name, qp := range req.GetQuotas() {
			w := quotaWant{amount: qp.GetAmount(), bestEffort: qp.GetBestEffort()}
			if w.amount <= 0 {
				w.amount = 1
			}
			wanted[name] = w
		}
	} else {
		out.implicit = true
		if charges, bound := st.snap.QuotaCharges(bag, refs); bound {
			wanted = make(map[string]quotaWant, len(charges))
			for _, c := range charges {
				if c.Charge <= 0 {
					continue
				}
				w, seen := wanted[c.Quota]
				if !seen {
					order = append(order, c.Quota)
				}
				w.amount += c.Charge
				wanted[c.Quota] = w
			}
		}
	}

	var calls []quotaCall
	for _, a := range res.Actions {
		h, err := setupError(st, a.Handler, func(h *handler) bool { return h.quota != nil }, "does not allocate quota")
		for _, inst := range a.Instances {
			q, ok := inst.(*template.Quota)
			if !ok {
				continue
			}
			args := adapters.QuotaArgs{DeduplicationID: req.GetDeduplicationId(), Amount: 1}
			if wanted != nil {
				w, ok := wanted[q.Name]
				if !ok {
					continue
				}
				args.Amount, args.BestEffort = w.amount, w.bestEffort
			} else if !contains(order, q.Name) {
				order = append(order, q.Name)
			}
			calls = append(calls, quotaCall{target: targetOf(a), h: h, inst: q, args: args, err: err, same: -1})
		}
	}
	shareShadowCalls(calls)

	results := allocateAll(ctx, calls)

	// The quotas granted, in the order first asked for. A request asks for
	// a handful: a list does where a map would cost allocations, and a map
	// is made only for a request that names many.
	var grantOrder []*quotaGrant
	var index map[string]*quotaGrant
	find := func(name string) *quotaGrant {
		if index != nil {
			return index[name]
		}
		for _, g := range grantOrder {
			if g.name == name {
				return g
			}
		}
		return nil
	}
	grant := func(name string, w quotaWant) *quotaGrant {
		g := find(name)
		if g == nil {
			g = &quotaGrant{name: name, requested: w.amount, bestEffort: w.bestEffort}
			grantOrder = append(grantOrder, g)
			switch {
			case index != nil:
				index[name] = g
			case len(grantOrder) > maxGrantScan:
				index = make(map[string]*quotaGrant, 2*len(grantOrder))
				for _, g := range grantOrder {
					index[g.name] = g
				}
			}
		}
		return g
	}
	for i := range calls {
		c := &calls[i]
		g := grant(c.inst.Name, quotaWant{amount: c.args.Amount, bestEffort: c.args.BestEffort})
		r := results[i]
		if c.same >= 0 {
			r = results[c.same]
		}
		if reason, msg, failed := callFailure(ctx, c.h, c.handler, c.err, r.done, r.err); failed {
			if c.same < 0 {
				s.m.dispatchErrors.WithLabelValues(c.handler, reason).Inc()
				s.m.quotaAllocations.WithLabelValues(c.handler, c.inst.Name, allocError).Inc()
			}
			s.handlerFailed(p, c.target, msg, c.meta())
			switch {
			case c.shadow:
			case c.failOpen:
				g.add(c.args.Amount, maxErrorValidDuration)
			default:
				g.add(0, maxErrorValidDuration)
			}
			continue
		}
		v := r.val
		exhausted := c.exhausted(v)
		var qc *quotaCounters
		if c.same < 0 || exhausted && !c.shadow {
			qc = c.h.quotaCounters(s.m, c.inst.Name)
		}
		if c.same < 0 {
			result := quotaResultGranted
			if exhausted {
				result = quotaResultDenied
			}
			qc.results[result].Inc()
			qc.granted.Add(float64(max(v.Amount, 0)))
		}
		if !exhausted {
			p.note(c.rule, c.shadow, ruleAllow)
		} else {
			p.note(c.rule, c.shadow, ruleDeny)
		}
		if c.shadow {
			if exhausted {
				s.log.Debug("shadow rule would deny", "rule", c.rule, "handler", c.handler,
					"quota", c.inst.Name, "asked", c.args.Amount, "granted", v.Amount)
			}
			continue
		}
		if exhausted {
			qc.denials(s.m, c.rule, c.handler).Inc()
			if g.deniedBy == nil {
				g.deniedBy, g.deniedCounters = c, qc
			}
		}
		g.add(v.Amount, v.ValidDuration)
		g.tighten(v)
	}
	// A quota asked for (by the request or a QuotaSpec) that no rule limits
	// is granted in full.
	for _, name := range order {
		if w, ok := wanted[name]; ok {
			grant(name, w)
		}
	}
	for name, w := range req.GetQuotas() {
		if find(name) == nil {
			amount := w.GetAmount()
			if amount <= 0 {
				amount = 1
			}
			grant(name, quotaWant{amount: amount, bestEffort: w.GetBestEffort()})
		}
	}
	if out.implicit {
		for i, name := range order {
			c := &qa.charge
			if i == 0 {
				out.charges = qa.charges[:0]
			} else {
				c = new(mixerv1.CheckResponse_QuotaCharge)
			}
			c.Quota, c.Charge = name, find(name).requested
			out.charges = append(out.charges, c)
		}
	}
	if len(grantOrder) == 0 {
		return out
	}

	out.results = make(map[string]*mixerv1.CheckResponse_QuotaResult, len(grantOrder))
	for i, g := range grantOrder {
		granted := g.granted
		if !g.enforced {
			granted = g.requested
		}
		validFor := g.validFor
		if validFor == 0 {
			validFor = s.cfg.DefaultValidDuration
		}
		qr := &qa.result
		if i > 0 {
			qr = new(mixerv1.CheckResponse_QuotaResult)
		}
		if g.exhausted() {
			// A denial's valid duration is its retry delay, counted
			// down to the microsecond: a cache would not hit, and each
			// miss would push out an entry that does.
			v := &qa.valid
			if i > 0 {
				v = new(durationpb.Duration)
			}
			v.Seconds, v.Nanos = int64(validFor/time.Second), int32(validFor%time.Second)
			qr.ValidDuration = v
		} else {
			qr.ValidDuration = s.durations.get(validFor)
		}
		qr.GrantedAmount = granted
		qr.ReferencedAttributes = refsProto
		qr.Limit, qr.Remaining = g.limit, g.remaining
		if g.limit > 0 {
			reset := &qa.reset
			if i > 0 {
				reset = new(durationpb.Duration)
			}
			// durationpb.New's fields.
			reset.Seconds, reset.Nanos = int64(g.reset/time.Second), int32(g.reset%time.Second)
			qr.Reset_ = reset
		}
		out.results[g.name] = qr
		if g.exhausted() && p.code == codes.OK {
			msg := ""
			if g.deniedCounters != nil {
				msg = g.deniedCounters.exhausted
			} else {
				msg = exhaustedMessage(g.name)
			}
			p.deny(codes.ResourceExhausted, msg, exhaustedDetails(g)...)
			// Whether the next request gets quota is not for a cache to say.
			p.noCache = true
		}
	}
	return out
}

// exhaustedMessage is the message of a Check denied for quota name.
func exhaustedMessage(name string) string {
	return "quota " + strconv.Quote(name) + " exhausted"
}

// denials returns the quota's series of sidemix_mixer_denials_total for
// rule, resolved once per state.
func (qc *quotaCounters) denials(m *metrics, rule, handler string) prometheus.Counter {
	if c, ok := qc.byRule.Load(rule); ok {
		return c.(prometheus.Counter)
	}
	c, _ := qc.byRule.LoadOrStore(rule, m.denials.WithLabelValues(rule, handler, denyQuota))
	return c.(prometheus.Counter)
}

// maxGrantScan is how many quotas a Check's grants are looked up among by
// scanning, before a map is made.
const maxGrantScan = 8

// ContextBound is implemented by quota handlers whose Allocate returns by
// the time its context ends, whatever their backend does (memquota,
// redisquota). The mixer calls such a handler on the request's own
// goroutine when it is the request's only allocation, instead of on a
// goroutine of its own that could be abandoned at the deadline.
type ContextBound interface {
	AllocateReturnsByDeadline()
}

// allocateAll makes the calls' allocations, concurrently unless there is
// only one, to a ContextBound handler.
func allocateAll(ctx context.Context, calls []quotaCall) []outcome[adapters.QuotaResult] {
	inline := -1
	for i := range calls {
		c := &calls[i]
		if c.err != nil || c.same >= 0 {
			continue
		}
		if _, ok := c.h.quota.(ContextBound); !ok || inline >= 0 {
			return fanOut(ctx, len(calls), func(ctx context.Context, i int) (adapters.QuotaResult, error) {
				return allocate(ctx, &calls[i])
			})
		}
		inline = i
	}
	out := make([]outcome[adapters.QuotaResult], len(calls))
	for i := range calls {
		if i != inline {
			out[i].val, out[i].err = allocate(ctx, &calls[i])
			out[i].done = true
		}
	}
	if inline >= 0 {
		out[inline] = allocateInline(ctx, &calls[inline])
	}
	return out
}

// allocate makes one call's allocation; a call that cannot be made, or
// shares another's, returns its setup error (or nothing).
func allocate(ctx context.Context, c *quotaCall) (adapters.QuotaResult, error) {
	if c.err != nil || c.same >= 0 {
		return adapters.QuotaResult{}, c.err
	}
	defer observeSince(c.h.quotaDuration, time.Now())
	return c.h.quota.Allocate(ctx, c.inst, c.args)
}

// allocateInline is fanOut for one call on the caller's goroutine: a panic
// is an error, and an answer after the deadline counts as none.
func allocateInline(ctx context.Context, c *quotaCall) (o outcome[adapters.QuotaResult]) {
	defer func() {
		if r := recover(); r != nil {
			o = outcome[adapters.QuotaResult]{err: fmt.Errorf("handler panicked: %v", r), done: true}
		}
		if ctx.Err() != nil && o.err != nil {
			o.done = false
		}
	}()
	o.val, o.err = allocate(ctx, c)
	o.done = true
	return o
}

// durationString renders d as protobuf's JSON form of a Duration ("1.5s").
func durationString(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// shareShadowCalls points every shadow call at an enforcing call to the
// same handler for the same quota and terms, if there is one: the shadow
// rule then sees that allocation's outcome instead of charging again.
func shareShadowCalls(calls []quotaCall) {
	for i := range calls {
		c := &calls[i]
		if !c.shadow || c.err != nil {
			continue
		}
		for j := range calls {
			e := &calls[j]
			if !e.shadow && e.handler == c.handler && e.inst.Name == c.inst.Name && e.args == c.args {
				c.same = j
				break
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
