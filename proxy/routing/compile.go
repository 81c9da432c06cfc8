package routing

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

type compiler struct {
	l        *loader
	t        *Table
	services map[string]*service
	rules    map[string]*rule
	aliases  map[string]bool // exact hosts that are short names of others
}

// resolveHost finds the ServiceEntry host a destination names: the host
// itself, or a short name completed as Kubernetes does (NAME.NS for
// NAME.NS.svc.cluster.local; NAME in the document's namespace, or, for a
// document without one, the only NAME.*.svc.cluster.local there is).
func (c *compiler) resolveHost(h, ns string) string {
	h = strings.ToLower(h)
	if c.services[h] != nil {
		return h
	}
	cands := []string{h + ".svc.cluster.local"}
	if ns != "" {
		cands = append(cands, h+"."+ns+".svc.cluster.local")
	}
	for _, full := range cands {
		if c.services[full] != nil {
			return full
		}
	}
	if ns != "" || strings.Contains(h, ".") {
		return ""
	}
	found := ""
	for full := range c.services {
		if rest, ok := strings.CutPrefix(full, h+"."); ok && strings.Count(rest, ".") == 3 && strings.HasSuffix(rest, ".svc.cluster.local") {
			if found != "" {
				return "" // ambiguous: give the namespace
			}
			found = full
		}
	}
	return found
}

func (c *compiler) rule(host string) *rule { return c.rules[host] }

// addVhost registers v under its host and, for a Kubernetes service name
// NAME.NS.svc.cluster.local, under the short names an app writes in Host
// (NAME.NS.svc, NAME.NS, NAME) unless another host has them.
func (c *compiler) addVhost(v *vhost) {
	if strings.HasPrefix(v.host, "*") {
		v.suffix = strings.TrimPrefix(v.host, "*")
		c.t.wild = append(c.t.wild, v)
		return
	}
	if prev := c.t.exact[v.host]; prev == nil || c.aliases[v.host] {
		c.t.exact[v.host] = v
		delete(c.aliases, v.host)
	}
	if base, ok := strings.CutSuffix(v.host, ".svc.cluster.local"); ok {
		labels := strings.Split(base, ".")
		if len(labels) == 2 {
			for _, a := range []string{base + ".svc", base, labels[0]} {
				if c.t.exact[a] == nil {
					c.t.exact[a] = v
					c.aliases[a] = true
				}
			}
		}
	}
}

// cluster builds (once) the cluster of key from the service's endpoints
// and the host's DestinationRule.
func (c *compiler) cluster(s *service, key ClusterKey) *Cluster {
	if cl := c.t.clusters[key]; cl != nil {
		return cl
	}
	var sp servicePort
	for _, p := range s.ports {
		if p.Number == key.Port {
			sp = p
		}
	}
	cl := &Cluster{Key: key, Policy: Policy{PanicThreshold: -1}, HTTP2: sp.Protocol == "HTTP2" || sp.Protocol == "GRPC"}
	r := c.rule(key.Host)
	var ss *subset
	if r != nil {
		ss = r.subsets[key.Subset]
		applyPolicy(&cl.Policy, r.spec.TrafficPolicy)
		if ss != nil {
			applyPolicy(&cl.Policy, ss.TrafficPolicy)
		}
	}
	for i, ep := range s.endpoints {
		if ss != nil && !hasLabels(ep.Labels, ss.Labels) {
			continue
		}
		port := key.Port
		if sp.TargetPort != 0 {
			port = sp.TargetPort
		}
		if p, ok := s.epPorts[i][sp.Name]; ok && sp.Name != "" {
			port = p
		}
		ep.Port = port
		cl.Endpoints = append(cl.Endpoints, ep)
	}
	c.t.clusters[key] = cl
	return cl
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// applyPolicy lays tp over p, section by section, as a subset's policy
// overrides its rule's.
func applyPolicy(p *Policy, tp *trafficPolicy) {
	if tp == nil {
		return
	}
	if lb := tp.LoadBalancer; lb != nil {
		p.LB = strings.ToUpper(lb.Simple)
		if p.LB == "UNSPECIFIED" {
			p.LB = ""
		} else if p.LB == "LEAST_CONN" {
			p.LB = "LEAST_REQUEST"
		}
	}
	if cp := tp.ConnectionPool; cp != nil {
		if t := cp.TCP; t != nil {
			p.MaxConnections = t.MaxConnections
			p.ConnectTimeout = d(t.ConnectTimeout)
		}
		if h := cp.HTTP; h != nil {
			p.HTTP1MaxPendingRequests = h.HTTP1MaxPendingRequests
			p.HTTP2MaxRequests = h.HTTP2MaxRequests
			p.MaxRequestsPerConnection = h.MaxRequestsPerConnection
			p.MaxRetries = h.MaxRetries
			p.IdleTimeout = d(h.IdleTimeout)
		}
	}
	if od := tp.OutlierDetection; od != nil {
		p.Consecutive5xxErrors = deref(od.Consecutive5xxErrors)
		p.ConsecutiveGatewayErrors = deref(od.ConsecutiveGatewayErrors)
		p.Interval = d(od.Interval)
		p.BaseEjectionTime = d(od.BaseEjectionTime)
		p.MaxEjectionPercent = deref(od.MaxEjectionPercent)
		p.PanicThreshold = -1
		if od.MinHealthPercent != nil {
			p.PanicThreshold = *od.MinHealthPercent
		}
	}
	if hc := tp.HealthCheck; hc != nil {
		p.Health = &HealthCheck{Path: hc.Path, Interval: d(hc.Interval), Timeout: d(hc.Timeout),
			HealthyThreshold: hc.HealthyThreshold, UnhealthyThreshold: hc.UnhealthyThreshold}
	}
}

func d(v *duration) time.Duration {
	if v == nil {
		return 0
	}
	return v.D
}

func deref(v *int) int {
	if v == nil {
		return 0
	}
	return *v
}

// retryConditions are the retryOn values sidemix implements; the others
// Envoy knows are warned of.
var retryConditions = map[string]bool{Retry5xx: true, RetryGatewayError: true, RetryConnectFailure: true,
	RetryReset: true, RetryStatusCodes: true}
var envoyRetryConditions = map[string]bool{"refused-stream": true, "retriable-4xx": true, "cancelled": true,
	"deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
	"retriable-headers": true, "envoy-ratelimited": true, "http3-post-connect-failure": true}

// DefaultRetries is what a route without retries gets, as in Istio: two
// more attempts on connect failures and resets.
var DefaultRetries = RetryPolicy{Attempts: 2, On: map[string]bool{RetryConnectFailure: true, RetryReset: true}}

func (c *compiler) virtualService(d *document, spec *virtualServiceSpec, vsHosts map[string]*document) {
	l := c.l
	n := len(l.issues)
	if len(spec.Hosts) == 0 {
		l.add(d, d.spec.Line, "spec.hosts", "required: at least one host")
	}
	var hosts []string
	for i, h := range spec.Hosts {
		f := fmt.Sprintf("spec.hosts[%d]", i)
		if err := checkHost(h); err != nil {
			l.add(d, lineAt(d.spec, f), f, "%v", err)
			continue
		}
		h = strings.ToLower(h)
		if full := c.resolveHost(h, d.namespace); full != "" {
			h = full
		}
		if prev := vsHosts[h]; prev != nil {
			l.add(d, lineAt(d.spec, f), f, "host %q already has VirtualService %s (%s:%d)", h, prev.name, prev.file, prev.nameLine)
			continue
		}
		vsHosts[h] = d
		hosts = append(hosts, h)
	}
	if len(spec.HTTP) == 0 {
		l.add(d, d.spec.Line, "spec.http", "required: at least one route (sidemix routes HTTP only)")
	}
	var routes []*Route
	for i := range spec.HTTP {
		if rt := c.httpRoute(d, &spec.HTTP[i], fmt.Sprintf("spec.http[%d]", i), i); rt != nil {
			routes = append(routes, rt)
		}
	}
	if len(l.issues) > n {
		return
	}
	for _, h := range hosts {
		c.addVhost(&vhost{host: h, routes: routes})
	}
}

func (c *compiler) httpRoute(d *document, hr *httpRoute, f string, index int) *Route {
	l := c.l
	n := len(l.issues)
	at := func(p string) int { return lineAt(d.spec, p) }
	rt := &Route{Name: hr.Name, VirtualService: d.name, Retries: DefaultRetries}
	if rt.Name == "" {
		rt.Name = d.name + "." + strconv.Itoa(index)
	}
	for j := range hr.Match {
		if m := c.match(d, &hr.Match[j], fmt.Sprintf("%s.match[%d]", f, j)); m != nil {
			rt.match = append(rt.match, *m)
		}
	}
	switch {
	case len(hr.Route) == 0 && hr.Redirect == nil:
		l.add(d, at(f), f+".route", "required: a route or a redirect")
	case len(hr.Route) > 0 && hr.Redirect != nil:
		l.add(d, at(f+".redirect"), f+".redirect", "a route cannot have both route and redirect")
	}
	sum, weighted := 0, false
	for j, rd := range hr.Route {
		df := fmt.Sprintf("%s.route[%d]", f, j)
		key, ok := c.destination(d, &rd.Destination, df+".destination")
		w := 0
		if rd.Weight != nil {
			weighted = true
			w = *rd.Weight
			if w < 0 || w > 100 {
				l.add(d, at(df+".weight"), df+".weight", "%d is not between 0 and 100", w)
			}
		}
		sum += w
		dst := Destination{Cluster: key, Weight: w}
		if rd.Headers != nil {
			dst.Headers = compileHeaders(rd.Headers)
		}
		if ok {
			rt.Destinations = append(rt.Destinations, dst)
		}
	}
	switch {
	case len(hr.Route) == 1 && (!weighted || sum == 100 || sum == 0):
		if len(rt.Destinations) == 1 {
			rt.Destinations[0].Weight = 100
		}
		sum = 100
	case len(hr.Route) > 1 && sum != 100:
		l.add(d, at(f+".route"), f+".route", "weights sum to %d, want 100", sum)
	case len(hr.Route) == 1 && sum != 100:
		l.add(d, at(f+".route[0].weight"), f+".route[0].weight", "the only destination's weight is %d, want 100", sum)
	}
	rt.totalWeight = sum
	if hr.Timeout != nil {
		if hr.Timeout.D < 0 {
			l.add(d, hr.Timeout.Line, f+".timeout", "negative: %v", hr.Timeout.D)
		}
		rt.Timeout = hr.Timeout.D
	}
	if r := hr.Retries; r != nil {
		rf := f + ".retries"
		rt.Retries = RetryPolicy{Attempts: r.Attempts, On: map[string]bool{}, Codes: map[int]bool{}}
		if r.Attempts < 0 {
			l.add(d, at(rf+".attempts"), rf+".attempts", "negative: %d", r.Attempts)
		}
		if r.PerTryTimeout != nil {
			if r.PerTryTimeout.D < 0 {
				l.add(d, r.PerTryTimeout.Line, rf+".perTryTimeout", "negative: %v", r.PerTryTimeout.D)
			}
			rt.Retries.PerTryTimeout = r.PerTryTimeout.D
		}
		on := r.RetryOn
		if on == "" && r.Attempts > 0 {
			on = "connect-failure,reset,retriable-status-codes,503" // Istio's default, as far as sidemix implements it
		}
		for _, cond := range strings.Split(on, ",") {
			cond = strings.TrimSpace(cond)
			switch {
			case cond == "":
			case retryConditions[cond]:
				rt.Retries.On[cond] = true
			case statusRE.MatchString(cond):
				code, _ := strconv.Atoi(cond)
				rt.Retries.Codes[code] = true
				rt.Retries.On[RetryStatusCodes] = true
			case envoyRetryConditions[cond]:
				l.warn(d, at(rf+".retryOn"), rf+".retryOn", "condition %q is not implemented by sidemix; ignored", cond)
			default:
				l.add(d, at(rf+".retryOn"), rf+".retryOn", "unknown condition %q (want 5xx, gateway-error, connect-failure, reset, retriable-status-codes or status codes)", cond)
			}
		}
	}
	if ft := hr.Fault; ft != nil {
		rt.Fault = &Fault{}
		ff := f + ".fault"
		if dl := ft.Delay; dl != nil {
			rt.Fault.DelayPercent = c.percent(d, dl.Percentage, dl.Percent, ff+".delay")
			if dl.FixedDelay == nil {
				l.add(d, at(ff+".delay"), ff+".delay.fixedDelay", "required")
			} else if dl.FixedDelay.D <= 0 {
				l.add(d, dl.FixedDelay.Line, ff+".delay.fixedDelay", "must be positive, got %v", dl.FixedDelay.D)
			} else {
				rt.Fault.Delay = dl.FixedDelay.D
			}
		}
		if ab := ft.Abort; ab != nil {
			rt.Fault.AbortPercent = c.percent(d, ab.Percentage, nil, ff+".abort")
			if ab.HTTPStatus < 200 || ab.HTTPStatus > 599 {
				l.add(d, at(ff+".abort.httpStatus"), ff+".abort.httpStatus", "%d is not an HTTP status (200 to 599)", ab.HTTPStatus)
			}
			rt.Fault.AbortStatus = ab.HTTPStatus
		}
	}
	if rw := hr.Rewrite; rw != nil {
		rt.Rewrite = &Rewrite{URI: rw.URI, Authority: rw.Authority}
	}
	if rd := hr.Redirect; rd != nil {
		rt.Redirect = &Redirect{URI: rd.URI, Authority: rd.Authority, Scheme: rd.Scheme, Port: rd.Port, Code: rd.RedirectCode}
		switch rd.RedirectCode {
		case 0:
			rt.Redirect.Code = 301
		case 301, 302, 303, 307, 308:
		default:
			l.add(d, at(f+".redirect.redirectCode"), f+".redirect.redirectCode", "%d is not a redirect status (301, 302, 303, 307, 308)", rd.RedirectCode)
		}
		if rd.Port < 0 || rd.Port > 65535 {
			l.add(d, at(f+".redirect.port"), f+".redirect.port", "%d is not a port", rd.Port)
		}
	}
	if hr.Headers != nil {
		rt.Headers = compileHeaders(hr.Headers)
	}
	if hr.Mirror != nil {
		key, ok := c.destination(d, hr.Mirror, f+".mirror")
		if ok {
			rt.Mirror = &Destination{Cluster: key, Weight: 100}
			rt.MirrorPercent = 100
			switch {
			case hr.MirrorPercentage != nil:
				rt.MirrorPercent = c.percent(d, hr.MirrorPercentage, nil, f+".mirrorPercentage")
			case hr.MirrorPercent != nil:
				rt.MirrorPercent = c.percent(d, nil, hr.MirrorPercent, f+".mirrorPercent")
			}
		}
	}
	if len(l.issues) > n {
		return nil
	}
	return rt
}

// percent reads percentage.value (or a deprecated integer percent); both
// absent means 100, as in Istio.
func (c *compiler) percent(d *document, p *percent, old *int, f string) float64 {
	v := 100.0
	field := f + ".percentage"
	switch {
	case p != nil:
		v = p.Value
		if !strings.HasSuffix(f, "Percentage") {
			field += ".value"
		} else {
			field = f + ".value"
		}
	case old != nil:
		v = float64(*old)
		if !strings.HasSuffix(f, "Percent") {
			field = f + ".percent"
		} else {
			field = f
		}
	}
	if v < 0 || v > 100 {
		c.l.add(d, lineAt(d.spec, field), field, "%v is not a percentage (0 to 100)", v)
	}
	return v
}

func compileHeaders(h *headers) HeaderOps {
	var out HeaderOps
	if h.Request != nil {
		out.Request = HeaderOp{Set: h.Request.Set, Add: h.Request.Add, Remove: h.Request.Remove}
	}
	if h.Response != nil {
		out.Response = HeaderOp{Set: h.Response.Set, Add: h.Response.Add, Remove: h.Response.Remove}
	}
	return out
}

// destination checks a destination against the ServiceEntries and
// DestinationRules and returns its cluster.
func (c *compiler) destination(d *document, dst *destination, f string) (ClusterKey, bool) {
	l := c.l
	if dst.Host == "" {
		l.add(d, lineAt(d.spec, f), f+".host", "required")
		return ClusterKey{}, false
	}
	host := c.resolveHost(dst.Host, d.namespace)
	if host == "" {
		l.add(d, lineAt(d.spec, f+".host"), f+".host", "no ServiceEntry has host %q", dst.Host)
		return ClusterKey{}, false
	}
	s := c.services[host]
	key := ClusterKey{Host: host, Subset: dst.Subset, Port: dst.Port.Number}
	ok := true
	if dst.Subset != "" {
		r := c.rule(host)
		switch {
		case r == nil:
			l.add(d, lineAt(d.spec, f+".subset"), f+".subset", "unknown subset %q: no DestinationRule has host %q", dst.Subset, dst.Host)
			ok = false
		case r.subsets[dst.Subset] == nil:
			names := make([]string, 0, len(r.subsets))
			for n := range r.subsets {
				names = append(names, n)
			}
			sort.Strings(names)
			l.add(d, lineAt(d.spec, f+".subset"), f+".subset", "unknown subset %q (DestinationRule %s defines %s)", dst.Subset, r.doc.name, strings.Join(names, ", "))
			ok = false
		}
	}
	switch {
	case key.Port == 0 && len(s.ports) == 1:
		key.Port = s.ports[0].Number
	case key.Port == 0:
		l.add(d, lineAt(d.spec, f), f+".port.number", "required: host %q has several ports", dst.Host)
		ok = false
	default:
		found := false
		for _, p := range s.ports {
			found = found || p.Number == key.Port
		}
		if !found {
			l.add(d, lineAt(d.spec, f+".port.number"), f+".port.number", "host %q has no port %d", dst.Host, key.Port)
			ok = false
		}
	}
	if !ok {
		return ClusterKey{}, false
	}
	if cl := c.cluster(s, key); len(cl.Endpoints) == 0 {
		l.warn(d, lineAt(d.spec, f), f, "cluster %s has no endpoints: its requests will fail with no healthy upstream", key)
	}
	return key, true
}

func (c *compiler) match(d *document, hm *httpMatch, f string) *matcher {
	l := c.l
	n := len(l.issues)
	m := &matcher{port: hm.Port}
	sm := func(s *stringMatch, field string, ignoreCase bool) *strMatcher {
		if s == nil {
			return nil
		}
		set := 0
		out := &strMatcher{kind: matchAny, ignoreCase: ignoreCase}
		if s.Exact != nil {
			set++
			out.kind, out.value = matchExact, *s.Exact
		}
		if s.Prefix != nil {
			set++
			out.kind, out.value = matchPrefix, *s.Prefix
		}
		if s.Regex != nil {
			set++
			expr := *s.Regex
			if ignoreCase {
				expr = "(?i)" + expr
			}
			re, err := regexp.Compile("^(?:" + expr + ")$") // RE2, whole value, as Envoy's safe_regex
			if err != nil {
				l.add(d, lineAt(d.spec, field+".regex"), field+".regex", "invalid regex: %v", err)
			}
			out.kind, out.re = matchRegex, re
		}
		if set > 1 {
			l.add(d, s.line, field, "give only one of exact, prefix or regex")
		}
		return out
	}
	m.uri = sm(hm.URI, f+".uri", hm.IgnoreURICase)
	m.method = sm(hm.Method, f+".method", false)
	m.authority = sm(hm.Authority, f+".authority", false)
	mapOf := func(in map[string]stringMatch, field string) map[string]*strMatcher {
		if len(in) == 0 {
			return nil
		}
		out := map[string]*strMatcher{}
		for k, v := range in {
			out[strings.ToLower(k)] = sm(&v, field+"."+k, false)
		}
		return out
	}
	m.headers = mapOf(hm.Headers, f+".headers")
	m.without = mapOf(hm.WithoutHeaders, f+".withoutHeaders")
	m.query = mapOf(hm.QueryParams, f+".queryParams")
	if m.port < 0 || m.port > 65535 {
		l.add(d, lineAt(d.spec, f+".port"), f+".port", "%d is not a port", m.port)
	}
	if len(l.issues) > n {
		return nil
	}
	return m
}
