package upstream

import "math/rand/v2"

// choose picks an endpoint for the policy's balancer and says whether it
// did so in panic mode; nil when there is none to pick. c.mu held.
func (c *Cluster) choose(p Policy) (*endpoint, bool) {
	if len(c.eps) == 0 {
		return nil, false
	}
	c.returnEjected(c.now())
	healthy := 0
	for _, e := range c.eps {
		if e.healthy() {
			healthy++
		}
	}
	// Envoy's rule: below the threshold, spread over all endpoints as if
	// all were healthy, so a partial outage does not overload the rest and
	// a total one does not black-hole the cluster.
	panicMode := p.PanicThreshold > 0 && healthy*100 < p.PanicThreshold*len(c.eps)
	if healthy == 0 && !panicMode {
		return nil, false
	}
	var e *endpoint
	switch p.LB {
	case LeastRequest:
		e = c.leastRequest(panicMode)
	case Random:
		e = c.weightedRandom(panicMode)
	default:
		e = c.roundRobin(panicMode)
	}
	return e, panicMode
}

// roundRobin is nginx's smooth weighted round robin: every candidate gains
// its weight, the richest is taken and pays the total. Equal weights give
// plain rotation; unequal ones interleave instead of bursting.
func (c *Cluster) roundRobin(all bool) *endpoint {
	var best *endpoint
	total := 0
	for _, e := range c.eps {
		if !all && !e.healthy() {
			continue
		}
		e.current += e.weight
		total += e.weight
		if best == nil || e.current > best.current {
			best = e
		}
	}
	if best != nil {
		best.current -= total
	}
	return best
}

// weightedRandom draws a candidate in proportion to its weight.
func (c *Cluster) weightedRandom(all bool) *endpoint {
	total := 0
	for _, e := range c.eps {
		if all || e.healthy() {
			total += e.weight
		}
	}
	if total == 0 {
		return nil
	}
	r := rand.IntN(total)
	for _, e := range c.eps {
		if !all && !e.healthy() {
			continue
		}
		if r < e.weight {
			return e
		}
		r -= e.weight
	}
	return nil
}

// leastRequest draws two candidates by weight and keeps the one with fewer
// requests in flight per unit of weight (power of two choices).
func (c *Cluster) leastRequest(all bool) *endpoint {
	a, b := c.weightedRandom(all), c.weightedRandom(all)
	if a == nil || b == nil || a == b {
		return a
	}
	// a.active/a.weight <= b.active/b.weight, counting the new request.
	if (a.active.Load()+1)*int64(b.weight) <= (b.active.Load()+1)*int64(a.weight) {
		return a
	}
	return b
}
