package upstream

import "time"

// record counts one outcome against e and ejects it when it reaches a
// threshold. c.mu held.
func (c *Cluster) record(e *endpoint, fiveXX, gateway bool) {
	if !fiveXX {
		e.cons5xx, e.consGateway = 0, 0
		return
	}
	e.cons5xx++
	if gateway {
		e.consGateway++
	} else {
		e.consGateway = 0 // Envoy: a plain 5xx breaks a run of gateway errors
	}
	o := c.policy.Outlier
	var reason string
	switch {
	case o.ConsecutiveGatewayErrors > 0 && e.consGateway >= o.ConsecutiveGatewayErrors:
		reason = "consecutive_gateway_errors"
	case o.Consecutive5xxErrors > 0 && e.cons5xx >= o.Consecutive5xxErrors:
		reason = "consecutive_5xx_errors"
	default:
		return
	}
	if e.ejected {
		return
	}
	if _, ok := c.byAddr[e.addr]; !ok || c.byAddr[e.addr] != e {
		return // removed by an Update while its request ran
	}
	now := c.now()
	c.returnEjected(now)
	e.cons5xx, e.consGateway = 0, 0
	if c.nEjected*100 >= o.MaxEjectionPercent*len(c.eps) {
		c.m.ejectionsSkipped.Inc()
		c.log.Warn("endpoint not ejected: max ejection percent reached", "endpoint", e.addr, "reason", reason,
			"ejected", c.nEjected, "endpoints", len(c.eps), "max_ejection_percent", o.MaxEjectionPercent)
		return
	}
	// The multiplier fades by one per interval spent back in the set, so
	// an endpoint that fails again soon stays out longer each time.
	if e.ejections > 0 && !e.returned.IsZero() && o.Interval > 0 {
		e.ejections = max(e.ejections-int(now.Sub(e.returned)/o.Interval), 0)
	}
	e.ejections++
	d := min(o.BaseEjectionTime*time.Duration(e.ejections), o.MaxEjectionTime)
	e.ejected, e.ejectedUntil = true, now.Add(d)
	c.nEjected++
	c.m.ejections.Inc()
	c.m.setHealthy(e.addr, false)
	c.log.Warn("endpoint ejected", "endpoint", e.addr, "reason", reason, "for", d, "ejections", e.ejections)
}

// returnEjected brings back endpoints whose ejection time is over. c.mu
// held.
func (c *Cluster) returnEjected(now time.Time) {
	if c.nEjected == 0 {
		return
	}
	for _, e := range c.eps {
		if e.ejected && !now.Before(e.ejectedUntil) {
			e.ejected = false
			e.returned = now
			e.cons5xx, e.consGateway = 0, 0
			c.nEjected--
			c.m.setHealthy(e.addr, e.healthy())
			c.log.Info("endpoint returned after ejection", "endpoint", e.addr, "ejections", e.ejections)
		}
	}
}
