package routing

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Table is a compiled, immutable set of routes: what the outbound listener
// asks for every request. It is safe for concurrent use.
type Table struct {
	exact    map[string]*vhost // by lower-case host without port
	wild     []*vhost          // "*.suffix" hosts, longest suffix first
	clusters map[ClusterKey]*Cluster
	warnings []Issue
	digest   string
}

// vhost is what one host name routes by: a VirtualService's routes or,
// for a ServiceEntry host without one, a default route per port.
type vhost struct {
	host     string // as written, lower case
	suffix   string // for "*.x": ".x"
	routes   []*Route
	defaults map[int]*Route // ServiceEntry default routes by port
	first    *Route         // the default for a Host without a known port
}

// ClusterKey names one upstream cluster: a service host, a subset of its
// endpoints (empty = all) and a port.
type ClusterKey struct {
	Host   string
	Subset string
	Port   int
}

// String renders the key as Envoy names clusters: outbound|PORT|SUBSET|HOST.
func (k ClusterKey) String() string {
	return "outbound|" + strconv.Itoa(k.Port) + "|" + k.Subset + "|" + k.Host
}

// Cluster is the endpoints and traffic policy of one ClusterKey, from
// ServiceEntry endpoints, DestinationRule subsets and trafficPolicy (a
// subset's own trafficPolicy overriding the rule's, section by section).
type Cluster struct {
	Key       ClusterKey
	Endpoints []Endpoint
	Policy    Policy
	// HTTP2 is set when the service port's protocol is HTTP2 or GRPC:
	// forward over h2c.
	HTTP2 bool
}

// Endpoint is one instance of a service.
type Endpoint struct {
	Address string // ip or host name, no port
	Port    int
	Labels  map[string]string
	Weight  uint32 // 0 = 1
}

// Policy is a DestinationRule's trafficPolicy as sidemix applies it. Zero
// values mean unlimited or the default.
type Policy struct {
	// LB is ROUND_ROBIN (default), LEAST_REQUEST, RANDOM or PASSTHROUGH.
	LB string

	MaxConnections           int
	ConnectTimeout           time.Duration
	HTTP1MaxPendingRequests  int
	HTTP2MaxRequests         int
	MaxRequestsPerConnection int
	IdleTimeout              time.Duration
	// MaxRetries bounds the retries outstanding to the cluster at once
	// (connectionPool.http.maxRetries); 0 = only the retry budget.
	MaxRetries int

	Consecutive5xxErrors     int
	ConsecutiveGatewayErrors int
	Interval                 time.Duration
	BaseEjectionTime         time.Duration
	MaxEjectionPercent       int
	// PanicThreshold is outlierDetection.minHealthPercent: below that share
	// of healthy endpoints, balance over all of them (Envoy's panic mode).
	// -1 when not given (the cluster's default applies).
	PanicThreshold int

	Health *HealthCheck
}

// HealthCheck is the sidemix extension trafficPolicy.healthCheck: active
// HTTP checks of every endpoint.
type HealthCheck struct {
	Path               string
	Interval, Timeout  time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
}

// Route is one http[] entry of a VirtualService, compiled, or the default
// route of a ServiceEntry host.
type Route struct {
	// Name is http[].name, else VIRTUALSERVICE.INDEX (or the host for a
	// default route).
	Name           string
	VirtualService string // empty for a default route

	match        []matcher // empty matches everything
	Destinations []Destination
	totalWeight  int

	Timeout  time.Duration // 0 = none
	Retries  RetryPolicy
	Fault    *Fault
	Rewrite  *Rewrite
	Redirect *Redirect
	Headers  HeaderOps // the route's own, applied before the destination's
	Mirror   *Destination
	// MirrorPercent is the share of requests mirrored, 0 to 100.
	MirrorPercent float64
}

// Destination is one route[] entry.
type Destination struct {
	Cluster ClusterKey
	Weight  int
	Headers HeaderOps
}

// HeaderOps are a route's header manipulations (Istio's headers.request and
// headers.response: set, add, remove).
type HeaderOps struct {
	Request, Response HeaderOp
}

// HeaderOp is one direction's operations.
type HeaderOp struct {
	Set, Add map[string]string
	Remove   []string
}

// Apply sets, adds and removes headers in h, in that order.
func (o HeaderOp) Apply(h http.Header) {
	for k, v := range o.Set {
		h.Set(k, v)
	}
	for k, v := range o.Add {
		h.Add(k, v)
	}
	for _, k := range o.Remove {
		h.Del(k)
	}
}

// RetryPolicy says when a failed attempt is tried again.
type RetryPolicy struct {
	Attempts      int           // retries after the first try; 0 = none
	PerTryTimeout time.Duration // 0 = the route's timeout only
	// On holds the retryOn conditions: 5xx, gateway-error,
	// connect-failure, reset, retriable-status-codes.
	On map[string]bool
	// Codes are the statuses that retriable-status-codes retries (the
	// numbers given in retryOn).
	Codes map[int]bool
}

// Retry conditions.
const (
	Retry5xx            = "5xx"
	RetryGatewayError   = "gateway-error"
	RetryConnectFailure = "connect-failure"
	RetryReset          = "reset"
	RetryStatusCodes    = "retriable-status-codes"
)

// RetryStatus reports whether a response status asks for another attempt.
func (p RetryPolicy) RetryStatus(code int) bool {
	switch {
	case p.On[Retry5xx] && code >= 500:
		return true
	case p.On[RetryGatewayError] && (code == 502 || code == 503 || code == 504):
		return true
	case p.On[RetryStatusCodes] && p.Codes[code]:
		return true
	}
	return false
}

// Fault is fault injection: a delay and/or an abort, each for a share of
// requests.
type Fault struct {
	DelayPercent float64 // 0 to 100
	Delay        time.Duration
	AbortPercent float64
	AbortStatus  int // 0 = no abort
}

// Rewrite replaces the path (or the prefix the match matched) and/or the
// authority before forwarding.
type Rewrite struct {
	URI       string
	Authority string
}

// Redirect answers with a redirect instead of forwarding.
type Redirect struct {
	URI, Authority, Scheme string
	Port                   int
	Code                   int // default 301
}

// Match is the result of routing one request.
type Match struct {
	Route *Route
	// URIPrefix is the prefix the matching uri condition matched, which a
	// rewrite.uri replaces; empty when the match was not by prefix.
	URIPrefix string
}

// Lookup finds the route of a request by its Host (port optional) and the
// VirtualService's match conditions, first match wins. ok is false when no
// VirtualService or ServiceEntry has the host; a host whose routes all miss
// gives ok true with a nil Route.
func (t *Table) Lookup(r *http.Request) (m Match, ok bool) {
	host, port := splitHost(r.Host)
	v := t.vhost(host)
	if v == nil {
		return Match{}, false
	}
	if v.routes == nil {
		rt := v.defaults[port]
		if rt == nil {
			rt = v.first
		}
		return Match{Route: rt}, true
	}
	for _, rt := range v.routes {
		if len(rt.match) == 0 {
			return Match{Route: rt}, true
		}
		for i := range rt.match {
			if prefix, ok := rt.match[i].matches(r, port); ok {
				return Match{Route: rt, URIPrefix: prefix}, true
			}
		}
	}
	return Match{}, true
}

// Has reports whether host (port optional) has routes.
func (t *Table) Has(host string) bool {
	h, _ := splitHost(host)
	return t.vhost(h) != nil
}

func (t *Table) vhost(host string) *vhost {
	if t == nil {
		return nil
	}
	if v := t.exact[host]; v != nil {
		return v
	}
	for _, v := range t.wild {
		if v.suffix == "" || strings.HasSuffix(host, v.suffix) {
			return v
		}
	}
	return nil
}

// Clusters lists every cluster routes of this table may send to.
func (t *Table) Clusters() map[ClusterKey]*Cluster { return t.clusters }

// Warnings lists the fields of the loaded files that sidemix read but does
// not act on, each naming its file and line.
func (t *Table) Warnings() []Issue { return t.warnings }

// Digest identifies the loaded sources: equal digests, equal tables.
func (t *Table) Digest() string { return t.digest }

// Pick chooses a destination by weight; r is a number in [0, 1).
func (rt *Route) Pick(r float64) *Destination {
	if len(rt.Destinations) == 1 || rt.totalWeight <= 0 {
		return &rt.Destinations[0]
	}
	x := int(r * float64(rt.totalWeight))
	for i := range rt.Destinations {
		x -= rt.Destinations[i].Weight
		if x < 0 {
			return &rt.Destinations[i]
		}
	}
	return &rt.Destinations[len(rt.Destinations)-1]
}

// PickRandom is Pick with a random number.
func (rt *Route) PickRandom() *Destination { return rt.Pick(rand.Float64()) }

// RewritePath applies rewrite.uri to a request path, given the prefix the
// match matched (empty: the whole path is replaced).
func (rw *Rewrite) RewritePath(u *url.URL, prefix string) {
	if rw == nil || rw.URI == "" {
		return
	}
	if prefix != "" && len(u.Path) >= len(prefix) && strings.EqualFold(u.Path[:len(prefix)], prefix) {
		u.Path = rw.URI + u.Path[len(prefix):]
	} else {
		u.Path = rw.URI
	}
	if strings.HasPrefix(u.Path, "//") {
		u.Path = u.Path[1:]
	}
	u.RawPath = ""
}

// Location is the redirect target for a request.
func (rd *Redirect) Location(r *http.Request) string {
	u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	if rd.Scheme != "" {
		u.Scheme = rd.Scheme
	}
	if rd.Authority != "" {
		u.Host = rd.Authority
	}
	if rd.Port != 0 {
		h, _ := splitHost(u.Host)
		u.Host = net.JoinHostPort(h, strconv.Itoa(rd.Port))
	}
	if rd.URI != "" {
		u.Path = rd.URI
	}
	return u.String()
}

// splitHost lower-cases a Host header and splits off its port (0 when
// absent).
func splitHost(hostport string) (string, int) {
	h := strings.ToLower(hostport)
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		p, err := strconv.Atoi(h[i+1:])
		if err == nil {
			return strings.Trim(h[:i], "[]"), p
		}
	}
	return strings.Trim(h, "[]"), 0
}

// matcher is one match[] entry: all its conditions must hold.
type matcher struct {
	uri, method, authority *strMatcher
	headers, without       map[string]*strMatcher // lower-case names
	query                  map[string]*strMatcher
	port                   int
}

func (m *matcher) matches(r *http.Request, port int) (prefix string, ok bool) {
	if m.port != 0 && port != m.port {
		return "", false
	}
	if m.uri != nil {
		if !m.uri.match(r.URL.Path) {
			return "", false
		}
		if m.uri.kind == matchPrefix {
			prefix = m.uri.value
		}
	}
	if m.method != nil && !m.method.match(r.Method) {
		return "", false
	}
	if m.authority != nil && !m.authority.match(r.Host) {
		return "", false
	}
	for name, sm := range m.headers {
		v, present := headerValue(r, name)
		if !present || !sm.match(v) {
			return "", false
		}
	}
	for name, sm := range m.without {
		if v, present := headerValue(r, name); present && sm.match(v) {
			return "", false
		}
	}
	if len(m.query) > 0 {
		q := r.URL.Query()
		for name, sm := range m.query {
			vs, present := q[name]
			if !present || !sm.match(vs[0]) {
				return "", false
			}
		}
	}
	return prefix, true
}

func headerValue(r *http.Request, name string) (string, bool) {
	if name == ":authority" || name == "host" {
		return r.Host, true
	}
	vs := r.Header.Values(name)
	if len(vs) == 0 {
		return "", false
	}
	return strings.Join(vs, ","), true
}

type matchKind uint8

const (
	matchAny matchKind = iota // an empty match: the value must be present
	matchExact
	matchPrefix
	matchRegex
)

type strMatcher struct {
	kind       matchKind
	value      string
	re         *regexp.Regexp
	ignoreCase bool
}

func (s *strMatcher) match(v string) bool {
	switch s.kind {
	case matchExact:
		if s.ignoreCase {
			return strings.EqualFold(v, s.value)
		}
		return v == s.value
	case matchPrefix:
		if s.ignoreCase {
			return len(v) >= len(s.value) && strings.EqualFold(v[:len(s.value)], s.value)
		}
		return strings.HasPrefix(v, s.value)
	case matchRegex:
		return s.re.MatchString(v)
	}
	return true
}
