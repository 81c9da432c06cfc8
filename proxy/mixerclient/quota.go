package mixerclient

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

// Quota on the proxy side. The mixer tells in quota_charges which quotas a
// request it answered draws on; the cache keeps them with the precondition.
// A request the cache allows must still pay them: from a local pool of
// tokens the mixer granted ahead (prefetch), or by a Check that names the
// quotas. A pool is kept per quota and per value of the attributes the
// quota result referenced (the quota's dimensions), so requests charged to
// different counters at the mixer never share tokens.

// charge is one quota a request draws on.
type charge struct {
	quota  string
	amount int64
	refs   []attribute.Reference // the quota result's: the quota's dimensions
	shape  string                // attribute.Shape(refs)
}

// RateLimit is what the mixer said of the tightest limit a request was
// counted against; a zero Limit means unknown.
type RateLimit struct {
	// Limit is the most the window grants; Remaining what is left of it.
	Limit, Remaining int64
	// Reset is how long until the window frees enough to grant again.
	Reset time.Duration
}

type poolKey struct {
	quota, shape string
	sig          uint64
}

// slot is one grant's tokens that are left.
type slot struct {
	n       int64
	expires time.Time
}

// usageBuckets divide the usage window: the rate is measured over the last
// nine or ten of them.
const usageBuckets = 10

// usageWindow counts tokens used over a sliding window.
type usageWindow struct {
	width int64 // nanoseconds per bucket
	last  int64 // index of the newest bucket
	b     [usageBuckets]int64
}

func (u *usageWindow) advance(now time.Time) {
	i := now.UnixNano() / u.width
	if i <= u.last {
		return
	}
	if i-u.last >= usageBuckets {
		clear(u.b[:])
	} else {
		for j := u.last + 1; j <= i; j++ {
			u.b[j%usageBuckets] = 0
		}
	}
	u.last = i
}

func (u *usageWindow) add(now time.Time, n int64) {
	u.advance(now)
	u.b[u.last%usageBuckets] += n
}

func (u *usageWindow) sum(now time.Time) int64 {
	u.advance(now)
	var s int64
	for _, x := range u.b {
		s += x
	}
	return s
}

// quotaPool holds the tokens of one quota for one value of its dimensions.
type quotaPool struct {
	key  poolKey
	proj *attribute.Bag // the dimensions' values, to confirm a hit
	refs []attribute.Reference

	mu        sync.Mutex
	slots     []slot // soonest expiry first
	avail     int64
	fetching  bool      // a prefetch is under way
	exhausted time.Time // requests are refused locally until then
	life      time.Duration
	limit     int64
	remaining int64
	resetAt   time.Time
	usage     usageWindow
	lastUse   time.Time
}

// expire drops the tokens whose time is up and returns how many; the
// caller holds mu.
func (p *quotaPool) expire(now time.Time) int64 {
	var n int64
	i := 0
	for ; i < len(p.slots) && !now.Before(p.slots[i].expires); i++ {
		n += p.slots[i].n
	}
	if i > 0 {
		p.slots = append(p.slots[:0], p.slots[i:]...)
		p.avail -= n
	}
	return n
}

// insert adds tokens; the caller holds mu.
func (p *quotaPool) insert(s slot) {
	i := sort.Search(len(p.slots), func(i int) bool { return s.expires.Before(p.slots[i].expires) })
	p.slots = append(p.slots, slot{})
	copy(p.slots[i+1:], p.slots[i:])
	p.slots[i] = s
	p.avail += s.n
}

// consume takes n tokens, soonest to expire first, and returns the latest
// expiry among them (for a refund); the caller holds mu and checked avail.
func (p *quotaPool) consume(n int64) time.Time {
	var exp time.Time
	p.avail -= n
	for n > 0 {
		s := &p.slots[0]
		exp = s.expires
		if s.n > n {
			s.n -= n
			break
		}
		n -= s.n
		p.slots = p.slots[1:]
	}
	return exp
}

// take uses n tokens when the pool has them. It returns the tokens'
// expiry (zero when it took nothing) and how many expired meanwhile.
func (p *quotaPool) take(n int64, now time.Time) (exp time.Time, expired int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastUse = now
	expired = p.expire(now)
	if p.avail < n {
		return time.Time{}, expired
	}
	p.usage.add(now, n)
	return p.consume(n), expired
}

// refund gives back tokens taken for a request that was then refused.
func (p *quotaPool) refund(n int64, exp, now time.Time) {
	if !now.Before(exp) {
		return
	}
	p.mu.Lock()
	p.insert(slot{n: n, expires: exp})
	p.mu.Unlock()
}

// exhaustedFor is how long requests are still refused locally.
func (p *quotaPool) exhaustedFor(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exhausted.Sub(now)
}

// figures records a quota result's limit figures; the caller holds mu.
func (p *quotaPool) figures(res *mixerv1.CheckResponse_QuotaResult, now time.Time) {
	if res.GetLimit() <= 0 {
		return
	}
	p.limit, p.remaining = res.GetLimit(), res.GetRemaining()
	p.resetAt = now.Add(res.GetReset_().AsDuration())
}

// rateLimit estimates the limit figures as this proxy sees them: what the
// mixer had left at its last answer plus the tokens held here.
func (p *quotaPool) rateLimit(now time.Time) RateLimit {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit <= 0 {
		return RateLimit{}
	}
	return RateLimit{Limit: p.limit, Remaining: min(p.limit, max(0, p.remaining)+p.avail), Reset: max(0, p.resetAt.Sub(now))}
}

// exhaustWait is how long a refusal holds: until asking again makes sense,
// and never past the window's reset.
func exhaustWait(res *mixerv1.CheckResponse_QuotaResult) time.Duration {
	wait := res.GetValidDuration().AsDuration()
	if r := res.GetReset_().AsDuration(); r > 0 && (wait <= 0 || r < wait) {
		wait = r
	}
	return wait
}

// learn records the result of an allocation the mixer made at its own
// initiative (the request named no quotas): exactly the charge, nothing
// pooled.
func (p *quotaPool) learn(res *mixerv1.CheckResponse_QuotaResult, amount int64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastUse = now
	p.figures(res, now)
	if res.GetGrantedAmount() < amount {
		if res.GetGrantedAmount() <= 0 {
			p.exhausted = now.Add(exhaustWait(res))
		}
		return
	}
	p.exhausted = time.Time{}
	p.usage.add(now, amount)
}

// grantResult is what grant did.
type grantResult struct {
	exp     time.Time // expiry of the tokens taken for the request; zero if none
	expired int64     // tokens that had expired meanwhile
}

// grant pools what the mixer granted (living min(valid, maxAge)) and takes
// need from the pool for the request that asked, when it can.
func (p *quotaPool) grant(res *mixerv1.CheckResponse_QuotaResult, granted, need int64, maxAge time.Duration, now time.Time) grantResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	var r grantResult
	r.expired = p.expire(now)
	if res != nil {
		p.figures(res, now)
	}
	if granted <= 0 {
		if res != nil {
			p.exhausted = now.Add(exhaustWait(res))
		}
		return r
	}
	p.exhausted = time.Time{}
	life := res.GetValidDuration().AsDuration()
	if life <= 0 || life > maxAge {
		life = maxAge
	}
	p.life = life
	p.insert(slot{n: granted, expires: now.Add(life)})
	if need > 0 && p.avail >= need {
		p.usage.add(now, need)
		r.exp = p.consume(need)
	}
	return r
}

// predict is the need of the next prediction window (or of a token's
// life, when shorter) at the rate of the last window.
func (p *quotaPool) predict(now time.Time, window time.Duration) int64 {
	used := p.usage.sum(now)
	horizon := window
	if p.life > 0 && p.life < window {
		horizon = p.life
	}
	return int64(math.Ceil(float64(used) * float64(horizon) / float64(window)))
}

// extra is how much a Check that must get need anyway asks for on top to
// refill the pool, at most max in all; it marks a prefetch under way (the
// caller ends it) and is 0 when one already is.
func (p *quotaPool) extra(need, maxAmount int64, window time.Duration, now time.Time) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fetching {
		return 0
	}
	want := min(p.predict(now, window)-p.avail, maxAmount-need, p.ahead()-p.avail)
	if want <= 0 {
		return 0
	}
	p.fetching = true
	return want
}

// refill says how much to prefetch in the background: when the pool is
// below half the predicted need, no prefetch is under way and the quota is
// not known exhausted. It marks the prefetch under way.
func (p *quotaPool) refill(need, maxAmount int64, window time.Duration, now time.Time) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fetching || now.Before(p.exhausted) || maxAmount < need {
		return 0
	}
	want := p.predict(now, window)
	if 2*p.avail >= want {
		return 0
	}
	room := p.ahead() - p.avail
	amount := max(need, min(want-p.avail, maxAmount, room))
	if amount > room {
		return 0
	}
	p.fetching = true
	return amount
}

// PrefetchLimitShare bounds prefetch by the quota's own size: a proxy
// never pools more than the limit divided by this (as the mixer last told
// the limit), so that a small limit (under this many per window) is never
// prefetched and stays exact, and a large one loses at most this share per
// proxy to tokens pooled but unused when the window ends.
const PrefetchLimitShare = 20

// ahead is the most tokens the pool may hold: PrefetchLimitShare of the
// quota's limit when the mixer told it, else unbounded here (the caller's
// maxAmount still bounds each Check); the caller holds mu.
func (p *quotaPool) ahead() int64 {
	if p.limit <= 0 {
		return math.MaxInt64
	}
	return p.limit / PrefetchLimitShare
}

func (p *quotaPool) endFetch() {
	p.mu.Lock()
	p.fetching = false
	p.mu.Unlock()
}

// idle says whether the pool holds nothing worth keeping.
func (p *quotaPool) idle(now time.Time, window time.Duration) (bool, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	expired := p.expire(now)
	return p.avail == 0 && !p.fetching && !now.Before(p.exhausted) && now.Sub(p.lastUse) > window, expired
}

// quotaPools are the client's pools, bounded in number.
type quotaPools struct {
	max       int
	window    time.Duration
	mu        sync.Mutex
	pools     map[poolKey]*quotaPool
	lastSweep time.Time
}

func newQuotaPools(max int, window time.Duration) *quotaPools {
	return &quotaPools{max: max, window: window, pools: make(map[poolKey]*quotaPool)}
}

// get returns the pool of ch for bag, making it if need be. It returns nil
// when the pools are full, or for the rare hash collision with another
// dimension value: the request then asks the mixer.
func (q *quotaPools) get(ch charge, bag *attribute.Bag, now time.Time, m *metrics) *quotaPool {
	k := poolKey{quota: ch.quota, shape: ch.shape, sig: attribute.Signature(bag, ch.refs)}
	q.mu.Lock()
	defer q.mu.Unlock()
	if p := q.pools[k]; p != nil {
		if !attribute.EqualOn(p.proj, bag, ch.refs) {
			return nil
		}
		return p
	}
	if len(q.pools) >= q.max {
		if now.Sub(q.lastSweep) < q.window {
			return nil
		}
		q.lastSweep = now
		for k, p := range q.pools {
			idle, expired := p.idle(now, q.window)
			m.tokensExpired.Add(float64(expired))
			if idle {
				delete(q.pools, k)
			}
		}
		if len(q.pools) >= q.max {
			return nil
		}
	}
	p := &quotaPool{key: k, proj: project(bag, ch.refs), refs: ch.refs, lastUse: now}
	p.usage.width = max(1, int64(q.window)/usageBuckets)
	q.pools[k] = p
	return p
}

func (q *quotaPools) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pools)
}

// tightest is the limit with the least remaining among the pools'.
func tightest(pools []*quotaPool, now time.Time) RateLimit {
	var out RateLimit
	for _, p := range pools {
		if p == nil {
			continue
		}
		rl := p.rateLimit(now)
		if rl.Limit > 0 && (out.Limit == 0 || rl.Remaining < out.Remaining) {
			out = rl
		}
	}
	return out
}

// learnCharges records an answer to a Check that named no quotas.
func (c *Client) learnCharges(bag *attribute.Bag, charges []charge, resp *mixerv1.CheckResponse, now time.Time) {
	for _, ch := range charges {
		res := resp.GetQuotas()[ch.quota]
		if res == nil {
			continue
		}
		if p := c.pools.get(ch, bag, now, c.m); p != nil {
			p.learn(res, ch.amount, now)
		}
	}
}

// quotaCheck gets the quota a request the cache allowed must still pay:
// from the pools when they hold enough, else from the mixer by a Check
// that names the quotas (asking ahead, best effort, when prefetch is on).
func (c *Client) quotaCheck(ctx context.Context, bag *attribute.Bag, base Decision, charges []charge, failOpen bool) (Decision, string, error) {
	now := c.opts.Now()
	n := len(charges)
	pools := make([]*quotaPool, n)
	taken := make([]time.Time, n) // expiry of the tokens taken; zero: none yet
	short := 0
	for i, ch := range charges {
		p := c.pools.get(ch, bag, now, c.m)
		pools[i] = p
		if p != nil {
			exp, expired := p.take(ch.amount, now)
			c.m.tokensExpired.Add(float64(expired))
			if !exp.IsZero() {
				taken[i] = exp
				continue
			}
		}
		short++
	}
	prefetch := c.opts.PrefetchMax > 0
	// used counts the tokens an admitted request took from the pools.
	used := func() {
		var n int64
		for i, ch := range charges {
			if pools[i] != nil {
				n += ch.amount
			}
		}
		c.m.tokensUsed.Add(float64(n))
	}
	if short == 0 {
		c.m.prefetchHit.Inc()
		used()
		for i, ch := range charges {
			c.maybeRefill(bag, ch, pools[i], now)
		}
		d := base
		d.RateLimit = tightest(pools, now)
		return d, sourceLocal, nil
	}
	refund := func() {
		for i, exp := range taken {
			if !exp.IsZero() {
				pools[i].refund(charges[i].amount, exp, now)
				taken[i] = time.Time{}
			}
		}
	}
	// A quota the mixer refused lately is refused here until its
	// Retry-After, without asking again.
	for i := range charges {
		if !taken[i].IsZero() || pools[i] == nil {
			continue
		}
		if wait := pools[i].exhaustedFor(now); wait > 0 {
			refund()
			return Decision{Code: codes.ResourceExhausted, Message: "quota exhausted", RetryAfter: retryAfter(wait),
				RateLimit: pools[i].rateLimit(now)}, sourceLocal, nil
		}
	}

	if prefetch {
		c.m.prefetchMiss.Inc()
	}
	req := c.newRequest(bag)
	req.Quotas = make(map[string]*mixerv1.CheckRequest_QuotaParams, short)
	fetching := make([]bool, n)
	endFetches := func() {
		for i, f := range fetching {
			if f {
				pools[i].endFetch()
				fetching[i] = false
			}
		}
	}
	for i, ch := range charges {
		if !taken[i].IsZero() {
			continue
		}
		qp := &mixerv1.CheckRequest_QuotaParams{Amount: ch.amount}
		if p := pools[i]; p != nil && prefetch {
			if extra := p.extra(ch.amount, c.opts.PrefetchMax, c.opts.PrefetchWindow, now); extra > 0 {
				qp.Amount += extra
				qp.BestEffort = true
				fetching[i] = true
			}
		}
		req.Quotas[ch.quota] = qp
	}
	resp, err := c.send(ctx, req, c.m.sentQuota)
	now = c.opts.Now()
	if err != nil {
		refund()
		endFetches()
		d, err := c.unavailable(ctx, err, failOpen)
		if d.Allowed() {
			d = base // unpaid, as the fail policy allows
		}
		return d, sourceUnavailable, err
	}
	code := codes.Code(resp.GetPrecondition().GetStatus().GetCode())
	if code != codes.OK && code != codes.ResourceExhausted {
		// The policy changed since the cached answer: follow the mixer now,
		// and learn anew next time.
		refund()
		endFetches()
		if c.cache != nil {
			c.cache.forget(bag)
		}
		d, _ := decide(resp, now)
		return d, sourceMixer, nil
	}
	var denied *Decision
	for i, ch := range charges {
		if !taken[i].IsZero() {
			continue
		}
		res := resp.GetQuotas()[ch.quota]
		granted := req.Quotas[ch.quota].GetAmount() // the mixer grants a quota no rule limits in full
		if res != nil {
			granted = res.GetGrantedAmount()
		}
		p := pools[i]
		if p == nil {
			if granted >= ch.amount {
				continue
			}
			if denied == nil {
				denied = &Decision{Code: codes.ResourceExhausted, Message: "quota exhausted", RetryAfter: retryAfter(exhaustWait(res))}
			}
			continue
		}
		g := p.grant(res, granted, ch.amount, c.opts.PrefetchMaxAge, now)
		c.m.tokensExpired.Add(float64(g.expired))
		c.m.tokensGranted.Add(float64(max(granted, 0)))
		if fetching[i] {
			p.endFetch()
			fetching[i] = false
		}
		if !g.exp.IsZero() {
			taken[i] = g.exp
			continue
		}
		if denied == nil {
			denied = &Decision{Code: codes.ResourceExhausted, Message: "quota exhausted", RetryAfter: retryAfter(exhaustWait(res)),
				RateLimit: p.rateLimit(now)}
		}
	}
	endFetches()
	if denied != nil {
		refund()
		return *denied, sourceMixer, nil
	}
	if code != codes.OK {
		// Denied as exhausted by a check, not by these quotas.
		refund()
		d, _ := decide(resp, now)
		return d, sourceMixer, nil
	}
	used()
	d := base
	d.Cached = false
	d.RateLimit = tightest(pools, now)
	return d, sourceMixer, nil
}

// maybeRefill prefetches for p in the background when it runs low.
func (c *Client) maybeRefill(bag *attribute.Bag, ch charge, p *quotaPool, now time.Time) {
	if c.opts.PrefetchMax <= 0 || p == nil {
		return
	}
	amount := p.refill(ch.amount, c.opts.PrefetchMax, c.opts.PrefetchWindow, now)
	if amount <= 0 {
		return
	}
	// Close waits for the refills: none may start once it has begun.
	c.refillMu.Lock()
	if c.noRefills {
		c.refillMu.Unlock()
		p.endFetch()
		return
	}
	c.refills.Add(1)
	c.refillMu.Unlock()
	go func() {
		defer c.refills.Done()
		defer p.endFetch()
		req := c.newRequest(bag)
		req.Quotas = map[string]*mixerv1.CheckRequest_QuotaParams{ch.quota: {Amount: amount, BestEffort: true}}
		resp, err := c.send(context.Background(), req, c.m.sentPrefetch)
		if err != nil {
			return
		}
		res := resp.GetQuotas()[ch.quota]
		if res == nil {
			return // denied by a check: nothing was allocated
		}
		g := p.grant(res, res.GetGrantedAmount(), 0, c.opts.PrefetchMaxAge, c.opts.Now())
		c.m.tokensExpired.Add(float64(g.expired))
		c.m.tokensGranted.Add(float64(max(res.GetGrantedAmount(), 0)))
	}()
}
