package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint is one instance of a service.
type Endpoint struct {
	Address string            // ip or host name, no port
	Port    int               // 1..65535
	Labels  map[string]string // e.g. version: v1
	Weight  uint32            // 0 = 1
}

// HostPort is the endpoint's dial address.
func (e Endpoint) HostPort() string { return net.JoinHostPort(e.Address, strconv.Itoa(e.Port)) }

// LBPolicy is how a cluster spreads requests over its endpoints.
type LBPolicy int

const (
	// RoundRobin takes the endpoints in turn, in proportion to their
	// weights (smooth weighted round robin: no bursts to one endpoint).
	RoundRobin LBPolicy = iota
	// LeastRequest draws two endpoints (weighted) and takes the one with
	// fewer requests in flight per unit of weight ("power of two choices").
	LeastRequest
	// Random draws an endpoint in proportion to its weight.
	Random
	// Passthrough sends the request to its original destination, given
	// with WithOriginalDestination; the endpoint list is not used.
	Passthrough
)

var lbNames = [...]string{"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH"}

func (p LBPolicy) String() string {
	if p >= 0 && int(p) < len(lbNames) {
		return lbNames[p]
	}
	return "LBPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseLBPolicy reads Istio's loadBalancer.simple names (LEAST_CONN is
// Istio's older name for LEAST_REQUEST; UNSPECIFIED is the default).
func ParseLBPolicy(s string) (LBPolicy, error) {
	switch s {
	case "", "UNSPECIFIED", "ROUND_ROBIN":
		return RoundRobin, nil
	case "LEAST_REQUEST", "LEAST_CONN":
		return LeastRequest, nil
	case "RANDOM":
		return Random, nil
	case "PASSTHROUGH":
		return Passthrough, nil
	}
	return 0, fmt.Errorf("unknown load balancer %q (want ROUND_ROBIN, LEAST_REQUEST, RANDOM or PASSTHROUGH)", s)
}

// PoolLimits bound a cluster's connection pool (Istio's connectionPool).
// Zero means unlimited, or net/http's behaviour for the timeouts.
type PoolLimits struct {
	// MaxConnections caps HTTP/1.1 connections to the cluster; as an
	// HTTP/1.1 connection carries one request at a time it is also the
	// number of HTTP/1.1 requests in flight. Further requests wait.
	MaxConnections int
	// ConnectTimeout bounds a dial; a dial that fails or times out is a
	// connect failure (ErrConnectFailure, UF). Zero: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// HTTP1MaxPendingRequests caps the HTTP/1.1 requests waiting for a
	// connection when MaxConnections are busy; one more is ErrOverflow.
	HTTP1MaxPendingRequests int
	// HTTP2MaxRequests caps the requests in flight to the cluster over any
	// protocol (Envoy's max_requests, which Istio sets from this field);
	// one more is ErrOverflow.
	HTTP2MaxRequests int
	// MaxRequestsPerConnection closes an HTTP/1.1 connection after it has
	// carried this many requests.
	MaxRequestsPerConnection int
	// IdleTimeout closes connections idle this long. Zero: 90s.
	IdleTimeout time.Duration
}

// OutlierDetection ejects endpoints that keep failing (Envoy's passive
// outlier detection). An endpoint is ejected as soon as it reaches either
// count of consecutive failures, for BaseEjectionTime times the number of
// times it has been ejected (capped at MaxEjectionTime); the multiplier
// drops by one for every Interval the endpoint then stays in.
type OutlierDetection struct {
	// Consecutive5xxErrors: responses 500-599 and local failures (connect
	// failure, reset) in a row. Zero: off.
	Consecutive5xxErrors int
	// ConsecutiveGatewayErrors: 502, 503, 504 and local failures in a row.
	// Zero: off.
	ConsecutiveGatewayErrors int
	// Interval between sweeps that return endpoints whose ejection time is
	// over. Zero: 10s. Ejected endpoints also return at the first pick
	// after their time, sweep or not.
	Interval time.Duration
	// BaseEjectionTime is the first ejection's length. Zero: 30s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps an ejection's length. Zero: 300s.
	MaxEjectionTime time.Duration
	// MaxEjectionPercent: no ejection when this share of the endpoints is
	// already ejected (Envoy's rule, so the first ejection always happens
	// when the value is above zero). Zero: 10; 100 allows all.
	MaxEjectionPercent int
}

func (o OutlierDetection) enabled() bool {
	return o.Consecutive5xxErrors > 0 || o.ConsecutiveGatewayErrors > 0
}

// HealthCheck is an active HTTP check of every endpoint: GET Path, healthy
// when the answer is 2xx within Timeout. Endpoints start healthy.
type HealthCheck struct {
	Path               string        // default "/"
	Interval, Timeout  time.Duration // defaults 10s and 1s
	HealthyThreshold   int           // passes in a row to become healthy; default 1
	UnhealthyThreshold int           // failures in a row to become unhealthy; default 3
}

// Policy is a cluster's traffic policy.
type Policy struct {
	LB      LBPolicy
	Pool    PoolLimits
	Outlier OutlierDetection
	Health  *HealthCheck // nil: no active checks
	// PanicThreshold in percent (Envoy's healthy_panic_threshold): when
	// fewer than this share of the endpoints are healthy, balance over all
	// of them rather than overload the few or answer "no healthy
	// upstream". Zero: 50; negative: never (ErrNoHealthy when none is).
	PanicThreshold int
	// HTTP2 sends every request over HTTP/2 with prior knowledge (h2c).
	// Otherwise gRPC goes over h2c and everything else over HTTP/1.1.
	HTTP2 bool
}

// Defaults where the zero value means "default".
const (
	DefaultConnectTimeout     = 2 * time.Second
	DefaultIdleTimeout        = 90 * time.Second
	DefaultOutlierInterval    = 10 * time.Second
	DefaultBaseEjectionTime   = 30 * time.Second
	DefaultMaxEjectionTime    = 300 * time.Second
	DefaultMaxEjectionPercent = 10
	DefaultPanicThreshold     = 50
)

// Validate reports negative durations and counts and percentages over 100.
func (p Policy) Validate() error {
	var errs []error
	neg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %d", name, v))
		}
	}
	negD := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %s", name, d))
		}
	}
	if p.LB < RoundRobin || p.LB > Passthrough {
		errs = append(errs, fmt.Errorf("loadBalancer: unknown policy %d", p.LB))
	}
	neg("connectionPool.tcp.maxConnections", int64(p.Pool.MaxConnections))
	negD("connectionPool.tcp.connectTimeout", p.Pool.ConnectTimeout)
	neg("connectionPool.http.http1MaxPendingRequests", int64(p.Pool.HTTP1MaxPendingRequests))
	neg("connectionPool.http.http2MaxRequests", int64(p.Pool.HTTP2MaxRequests))
	neg("connectionPool.http.maxRequestsPerConnection", int64(p.Pool.MaxRequestsPerConnection))
	negD("connectionPool.http.idleTimeout", p.Pool.IdleTimeout)
	neg("outlierDetection.consecutive5xxErrors", int64(p.Outlier.Consecutive5xxErrors))
	neg("outlierDetection.consecutiveGatewayErrors", int64(p.Outlier.ConsecutiveGatewayErrors))
	negD("outlierDetection.interval", p.Outlier.Interval)
	negD("outlierDetection.baseEjectionTime", p.Outlier.BaseEjectionTime)
	negD("outlierDetection.maxEjectionTime", p.Outlier.MaxEjectionTime)
	if v := p.Outlier.MaxEjectionPercent; v < 0 || v > 100 {
		errs = append(errs, fmt.Errorf("outlierDetection.maxEjectionPercent: must be 0..100, got %d", v))
	}
	if p.PanicThreshold > 100 {
		errs = append(errs, fmt.Errorf("panicThreshold: must be at most 100, got %d", p.PanicThreshold))
	}
	if h := p.Health; h != nil {
		negD("healthCheck.interval", h.Interval)
		negD("healthCheck.timeout", h.Timeout)
		neg("healthCheck.healthyThreshold", int64(h.HealthyThreshold))
		neg("healthCheck.unhealthyThreshold", int64(h.UnhealthyThreshold))
		if h.Path != "" && h.Path[0] != '/' {
			errs = append(errs, fmt.Errorf("healthCheck.path: must start with /, got %q", h.Path))
		}
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero values that mean "default".
func (p Policy) withDefaults() Policy {
	if p.Pool.ConnectTimeout == 0 {
		p.Pool.ConnectTimeout = DefaultConnectTimeout
	}
	if p.Pool.IdleTimeout == 0 {
		p.Pool.IdleTimeout = DefaultIdleTimeout
	}
	o := &p.Outlier
	if o.Interval == 0 {
		o.Interval = DefaultOutlierInterval
	}
	if o.BaseEjectionTime == 0 {
		o.BaseEjectionTime = DefaultBaseEjectionTime
	}
	if o.MaxEjectionTime == 0 {
		o.MaxEjectionTime = max(DefaultMaxEjectionTime, o.BaseEjectionTime)
	}
	if o.MaxEjectionPercent == 0 {
		o.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	if p.PanicThreshold == 0 {
		p.PanicThreshold = DefaultPanicThreshold
	}
	if p.Health != nil {
		h := *p.Health
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Interval == 0 {
			h.Interval = 10 * time.Second
		}
		if h.Timeout == 0 {
			h.Timeout = time.Second
		}
		if h.HealthyThreshold == 0 {
			h.HealthyThreshold = 1
		}
		if h.UnhealthyThreshold == 0 {
			h.UnhealthyThreshold = 3
		}
		p.Health = &h
	}
	return p
}

// Errors callers map to response flags.
var (
	ErrNoHealthy      = errors.New("no healthy upstream")      // UH
	ErrOverflow       = errors.New("upstream overflow")        // UO
	ErrConnectFailure = errors.New("upstream connect failure") // UF
)

// Options are a cluster's dependencies. All are optional.
type Options struct {
	Logger *slog.Logger
	// Registerer receives the sidemix_upstream_* metrics. Clusters sharing
	// a Registerer share the series, told apart by the cluster label.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Cluster is one (service host, subset, port): its endpoints, their health,
// its balancer and its connection pool (one http.Transport per protocol).
// All methods are safe for concurrent use.
type Cluster struct {
	name string
	log  *slog.Logger
	now  func() time.Time
	m    *clusterMetrics

	mu        sync.Mutex
	policy    Policy
	eps       []*endpoint
	byAddr    map[string]*endpoint
	nEjected  int
	closed    bool
	stop      context.CancelFunc // the health-check and sweep loops
	loops     sync.WaitGroup
	pool      atomic.Pointer[pool]
	rt        roundTripper
	inFlight  atomic.Int64 // requests between Pick and Done
	outlierOn atomic.Bool  // policy.Outlier.enabled(), read without mu in Done
}

// endpoint is one endpoint and its state; the state is guarded by the
// cluster's mu, except active.
type endpoint struct {
	Endpoint
	addr   string // host:port
	weight int
	active atomic.Int64 // requests in flight, for LeastRequest

	hcHealthy            bool // active health check verdict
	hcPass, hcFail       int  // in a row
	ejected              bool
	ejectedUntil         time.Time
	ejections            int // multiplier for the next ejection time
	returned             time.Time
	cons5xx, consGateway int
	current              int // smooth weighted round robin
}

func (e *endpoint) healthy() bool { return e.hcHealthy && !e.ejected }

// NewCluster builds a cluster; call Validate on the policy first (an
// invalid policy is used with the offending values treated as zero).
// Active health checks start now when the policy has them.
func NewCluster(name string, eps []Endpoint, p Policy, o Options) *Cluster {
	c := &Cluster{name: name, log: o.Logger, now: o.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("cluster", name)
	if c.now == nil {
		c.now = time.Now
	}
	c.m = newClusterMetrics(o.Registerer, name)
	c.rt = roundTripper{c}
	c.byAddr = map[string]*endpoint{}
	c.mu.Lock()
	c.apply(eps, p, true)
	c.mu.Unlock()
	return c
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Update swaps endpoints and policy on reload, keeping the health and
// ejection state of addresses that stay. Requests in flight finish on the
// connections they have.
func (c *Cluster) Update(eps []Endpoint, p Policy) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.apply(eps, p, false)
}

// apply installs eps and p; c.mu held.
func (c *Cluster) apply(eps []Endpoint, p Policy, first bool) {
	p = sanitize(p).withDefaults()
	old := c.policy
	c.policy = p
	c.outlierOn.Store(p.Outlier.enabled())
	next := make([]*endpoint, 0, len(eps))
	byAddr := make(map[string]*endpoint, len(eps))
	for _, ep := range eps {
		addr := ep.HostPort()
		if _, dup := byAddr[addr]; dup {
			continue
		}
		e := c.byAddr[addr]
		if e == nil {
			e = &endpoint{addr: addr, hcHealthy: true}
			if !first {
				c.log.Info("endpoint added", "endpoint", addr)
			}
		}
		e.Endpoint = ep
		e.weight = max(int(ep.Weight), 1)
		next = append(next, e)
		byAddr[addr] = e
	}
	for addr := range c.byAddr {
		if byAddr[addr] == nil {
			c.log.Info("endpoint removed", "endpoint", addr)
			c.m.forget(addr)
		}
	}
	c.eps, c.byAddr = next, byAddr
	c.nEjected = 0
	for _, e := range c.eps {
		if e.ejected {
			c.nEjected++
		}
	}
	for _, e := range c.eps {
		c.m.setHealthy(e.addr, e.healthy())
	}
	if first || old.Pool != p.Pool || old.HTTP2 != p.HTTP2 {
		if prev := c.pool.Swap(newPool(c, p)); prev != nil {
			prev.closeIdle()
		}
	}
	if first || !sameLoops(old, p) {
		c.restartLoops()
	}
	if first {
		c.log.Info("cluster created", "endpoints", len(c.eps), "lb", p.LB.String())
	}
}

// sanitize zeroes invalid values, so a policy that skipped Validate still
// behaves.
func sanitize(p Policy) Policy {
	if p.LB < RoundRobin || p.LB > Passthrough {
		p.LB = RoundRobin
	}
	for _, v := range []*int{&p.Pool.MaxConnections, &p.Pool.HTTP1MaxPendingRequests, &p.Pool.HTTP2MaxRequests,
		&p.Pool.MaxRequestsPerConnection, &p.Outlier.Consecutive5xxErrors, &p.Outlier.ConsecutiveGatewayErrors} {
		*v = max(*v, 0)
	}
	for _, d := range []*time.Duration{&p.Pool.ConnectTimeout, &p.Pool.IdleTimeout, &p.Outlier.Interval,
		&p.Outlier.BaseEjectionTime, &p.Outlier.MaxEjectionTime} {
		*d = max(*d, 0)
	}
	p.Outlier.MaxEjectionPercent = min(max(p.Outlier.MaxEjectionPercent, 0), 100)
	p.PanicThreshold = min(p.PanicThreshold, 100)
	if h := p.Health; h != nil {
		hc := *h
		hc.Interval, hc.Timeout = max(hc.Interval, 0), max(hc.Timeout, 0)
		hc.HealthyThreshold, hc.UnhealthyThreshold = max(hc.HealthyThreshold, 0), max(hc.UnhealthyThreshold, 0)
		p.Health = &hc
	}
	return p
}

func sameLoops(a, b Policy) bool {
	if a.Outlier.enabled() != b.Outlier.enabled() || a.Outlier.Interval != b.Outlier.Interval {
		return false
	}
	if (a.Health == nil) != (b.Health == nil) {
		return false
	}
	return a.Health == nil || *a.Health == *b.Health
}

// Close stops health checks, closes idle connections and drops the
// cluster's metric series. Pick fails with ErrNoHealthy afterwards.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.stop != nil {
		c.stop()
	}
	for _, e := range c.eps {
		c.m.forget(e.addr)
	}
	c.mu.Unlock()
	c.loops.Wait()
	c.pool.Load().closeIdle()
	c.log.Info("cluster closed")
}

// EndpointStatus is an endpoint's state as Status reports it.
type EndpointStatus struct {
	Addr         string
	Labels       map[string]string
	Weight       int
	Healthy      bool // passes active checks (or has none) and is not ejected
	Ejected      bool
	EjectedUntil time.Time
	Ejections    int // the current ejection multiplier
	Active       int64
}

// Status is the state of every endpoint, in the order given.
func (c *Cluster) Status() []EndpointStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.returnEjected(c.now())
	out := make([]EndpointStatus, len(c.eps))
	for i, e := range c.eps {
		out[i] = EndpointStatus{Addr: e.addr, Labels: e.Labels, Weight: e.weight, Healthy: e.healthy(),
			Ejected: e.ejected, EjectedUntil: e.ejectedUntil, Ejections: e.ejections, Active: e.active.Load()}
	}
	return out
}

type ctxKey struct{}

// WithOriginalDestination records the request's original destination
// (host:port) for a Passthrough cluster.
func WithOriginalDestination(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, ctxKey{}, addr)
}

// Pick is one chosen endpoint for one request.
type Pick struct {
	Addr     string   // host:port to send the request to
	Endpoint Endpoint // zero for Passthrough
	Panic    bool     // chosen in panic mode (too few healthy endpoints)

	c    *Cluster
	e    *endpoint // nil for Passthrough
	done atomic.Bool
}

// Pick chooses an endpoint (honouring ejection, health, the panic
// threshold and the balancer) and takes a request slot; it returns
// ErrNoHealthy or ErrOverflow. The caller must call Done exactly once.
func (c *Cluster) Pick(ctx context.Context) (*Pick, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("cluster %s closed: %w", c.name, ErrNoHealthy)
	}
	p := c.policy
	if limit := p.Pool.HTTP2MaxRequests; limit > 0 && c.inFlight.Load() >= int64(limit) {
		c.mu.Unlock()
		c.m.overflow("max_requests")
		return nil, fmt.Errorf("cluster %s: %d requests in flight: %w", c.name, limit, ErrOverflow)
	}
	var pk *Pick
	if p.LB == Passthrough {
		addr, _ := ctx.Value(ctxKey{}).(string)
		if addr == "" {
			c.mu.Unlock()
			return nil, fmt.Errorf("cluster %s: passthrough without an original destination: %w", c.name, ErrNoHealthy)
		}
		pk = &Pick{Addr: addr, c: c}
	} else {
		e, panicMode := c.choose(p)
		if e == nil {
			c.mu.Unlock()
			c.m.noHealthy.Inc()
			return nil, fmt.Errorf("cluster %s: %w", c.name, ErrNoHealthy)
		}
		if panicMode {
			c.m.panics.Inc()
		}
		e.active.Add(1)
		pk = &Pick{Addr: e.addr, Endpoint: e.Endpoint, Panic: panicMode, c: c, e: e}
	}
	c.inFlight.Add(1)
	c.mu.Unlock()
	return pk, nil
}

// Done ends the request: status is the upstream's HTTP status, or 0 with
// err when there was none (connect failure, reset, overflow, timeout).
// It feeds outlier detection and the least-request balancer; calls after
// the first are ignored.
func (pk *Pick) Done(status int, err error) {
	if pk == nil || !pk.done.CompareAndSwap(false, true) {
		return
	}
	c := pk.c
	c.inFlight.Add(-1)
	if pk.e == nil {
		return
	}
	pk.e.active.Add(-1)
	if !c.outlierOn.Load() {
		return
	}
	fiveXX, gateway, counted := classify(status, err)
	if !counted {
		return
	}
	c.mu.Lock()
	c.record(pk.e, fiveXX, gateway)
	c.mu.Unlock()
}

// classify says whether an outcome is a 5xx, a gateway error, or neither,
// and whether it counts at all: overflow and the caller's own cancellation
// say nothing about the endpoint. Local failures (connect failure, reset,
// timeout) count as both, as Envoy counts them by default.
func classify(status int, err error) (fiveXX, gateway, counted bool) {
	if err != nil {
		if errors.Is(err, ErrOverflow) || errors.Is(err, context.Canceled) || errors.Is(err, ErrNoHealthy) {
			return false, false, false
		}
		return true, true, true
	}
	switch {
	case status == 502 || status == 503 || status == 504:
		return true, true, true
	case status >= 500 && status <= 599:
		return true, false, true
	}
	return false, false, true
}
