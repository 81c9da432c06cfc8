package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy/mixerclient"
	"github.com/sidemix/sidemix/proxy/routing"
	ups "github.com/sidemix/sidemix/proxy/upstream"
)

// Response flags of routed requests (Envoy's names).
const (
	flagTimeout        = "UT"  // the route's timeout (or every try's) passed
	flagRetryExhausted = "URX" // retries used up, or refused by the budget
	flagDelayInjected  = "DI"  // fault injection delayed the request
	flagFaultInjected  = "FI"  // fault injection aborted the request
	flagOverflow       = "UO"  // the cluster's connection pool was full
	flagNoHealthy      = "UH"  // no healthy endpoint in the cluster
)

// Defaults of the retry budget (Envoy's retry_budget defaults) and of the
// endpoints' DNS refresh (Istio's dnsRefreshRate).
const (
	DefaultRetryBudgetPercent        = 20
	DefaultRetryBudgetMinConcurrency = 3
	DefaultDNSRefreshRate            = 60 * time.Second
)

const (
	// maxReplayBody is the largest request body buffered so that a retry
	// or a mirror can send it again; larger bodies are sent once.
	maxReplayBody = 64 << 10
	// Jittered exponential backoff between tries (Envoy's defaults).
	retryBaseInterval = 25 * time.Millisecond
	retryMaxInterval  = 250 * time.Millisecond
	// dnsTimeout bounds one lookup of an endpoint's name.
	dnsTimeout = 2 * time.Second
	// mirrorTimeout bounds a mirrored request whose route has no timeout.
	mirrorTimeout = 10 * time.Second
	// retireAfter is how long a cluster no route names any more keeps
	// serving the requests still using it before it is closed.
	retireAfter = 30 * time.Second
)

var (
	errRouteTimeout  = errors.New("route timeout")
	errPerTryTimeout = errors.New("per-try timeout")
)

// router keeps the routes of Config.Routes and one upstream cluster per
// (host, subset, port) they name, updated in place on reload so that
// endpoint health and pools survive.
type router struct {
	p       *Proxy
	w       *routing.Watcher
	state   atomic.Pointer[routeState]
	mu      sync.Mutex // serializes apply
	live    map[routing.ClusterKey]*routeCluster
	retired []*routeCluster
	cancel  context.CancelFunc
	done    chan struct{}
	mirrors sync.WaitGroup
	dns     map[string][]netip.Addr // last good answer per name, under mu
}

type routeState struct {
	table    *routing.Table
	clusters map[routing.ClusterKey]*routeCluster
}

// routeCluster is one upstream cluster and what routing counts on it.
type routeCluster struct {
	key        routing.ClusterKey
	c          *ups.Cluster
	id         *upstream    // the destination's identity, for attributes
	active     atomic.Int64 // requests in flight, for the retry budget
	retries    atomic.Int64 // retries in flight
	maxRetries atomic.Int64 // connectionPool.http.maxRetries; 0 = none
	// passthrough: loadBalancer PASSTHROUGH, each try goes to the
	// request's own Host (originalDestination).
	passthrough atomic.Bool
	// Under router.mu: the endpoints as configured (names included), as
	// resolved and given to the cluster, and its policy.
	raw, eps []ups.Endpoint
	pol      ups.Policy
}

func newRouter(p *Proxy) (*router, error) {
	r := &router{p: p, live: map[routing.ClusterKey]*routeCluster{}, dns: map[string][]netip.Addr{}}
	w, err := routing.NewWatcher(routing.WatchOptions{
		PollInterval: p.cfg.RoutesPollInterval,
		Logger:       p.log.With("component", "routes"),
		OnReload:     r.apply,
	}, p.cfg.Routes)
	if err != nil {
		return nil, err
	}
	r.w = w
	r.apply(w.Table())
	return r, nil
}

func (r *router) current() *routeState {
	if r == nil {
		return nil
	}
	return r.state.Load()
}

// apply makes t current: clusters it keeps are updated, new ones created,
// the ones it drops retired.
func (r *router) apply(t *routing.Table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[routing.ClusterKey]*routeCluster, len(t.Clusters()))
	for key, cl := range t.Clusters() {
		eps := make([]ups.Endpoint, len(cl.Endpoints))
		for i, e := range cl.Endpoints {
			eps[i] = ups.Endpoint{Address: e.Address, Port: e.Port, Labels: e.Labels, Weight: e.Weight}
		}
		pol := clusterPolicy(cl)
		if err := pol.Validate(); err != nil {
			r.p.log.Warn("routes: cluster policy", "cluster", key.String(), "err", err)
		}
		raw := eps
		eps = r.expand(raw)
		rc := r.live[key]
		if rc != nil {
			rc.c.Update(eps, pol)
		} else {
			rc = &routeCluster{key: key, id: newUpstream(key.Host, "", r.p.cfg.Namespace)}
			rc.id.policy = r.p.cfg.failPolicy(key.Host)
			if rc.id.policy == mixerclient.FailPolicyDefault {
				rc.id.policy = r.p.cfg.failPolicy(rc.id.service)
			}
			rc.id.port = int64(key.Port)
			rc.c = ups.NewCluster(key.String(), eps, pol, ups.Options{
				Logger:     r.p.log.With("component", "upstream", "cluster", key.String()),
				Registerer: r.p.reg,
			})
		}
		rc.maxRetries.Store(int64(cl.Policy.MaxRetries))
		rc.passthrough.Store(pol.LB == ups.Passthrough)
		rc.raw, rc.eps, rc.pol = raw, eps, pol
		next[key] = rc
	}
	for key, rc := range r.live {
		if next[key] == nil {
			r.retired = append(r.retired, rc)
			time.AfterFunc(retireAfter, rc.c.Close)
		}
	}
	r.live = next
	r.state.Store(&routeState{table: t, clusters: next})
}

// clusterPolicy translates a DestinationRule's policy for proxy/upstream.
func clusterPolicy(cl *routing.Cluster) ups.Policy {
	p := cl.Policy
	lb, _ := ups.ParseLBPolicy(p.LB) // the loader checked the name
	out := ups.Policy{
		LB: lb,
		Pool: ups.PoolLimits{
			MaxConnections:           p.MaxConnections,
			ConnectTimeout:           p.ConnectTimeout,
			HTTP1MaxPendingRequests:  p.HTTP1MaxPendingRequests,
			HTTP2MaxRequests:         p.HTTP2MaxRequests,
			MaxRequestsPerConnection: p.MaxRequestsPerConnection,
			IdleTimeout:              p.IdleTimeout,
		},
		Outlier: ups.OutlierDetection{
			Consecutive5xxErrors:     p.Consecutive5xxErrors,
			ConsecutiveGatewayErrors: p.ConsecutiveGatewayErrors,
			Interval:                 p.Interval,
			BaseEjectionTime:         p.BaseEjectionTime,
			MaxEjectionPercent:       p.MaxEjectionPercent,
		},
		HTTP2: cl.HTTP2,
	}
	switch {
	case p.PanicThreshold < 0: // not given: upstream's default
	case p.PanicThreshold == 0: // Istio's minHealthPercent 0: never panic
		out.PanicThreshold = -1
	default:
		out.PanicThreshold = p.PanicThreshold
	}
	if h := p.Health; h != nil {
		out.Health = &ups.HealthCheck{Path: h.Path, Interval: h.Interval, Timeout: h.Timeout,
			HealthyThreshold: h.HealthyThreshold, UnhealthyThreshold: h.UnhealthyThreshold}
	}
	return out
}

func (r *router) start() {
	if r == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.refreshDNS(ctx)
		}()
		r.w.Run(ctx)
		wg.Wait()
	}()
}

// expand replaces every endpoint given by a host name with one endpoint
// per address the name resolves to, as Envoy's STRICT_DNS clusters do. A
// name that does not resolve keeps its last addresses, or, if it never
// resolved, stays a name for the dial to resolve.
func (r *router) expand(raw []ups.Endpoint) []ups.Endpoint {
	out := make([]ups.Endpoint, 0, len(raw))
	for _, e := range raw {
		if _, err := netip.ParseAddr(e.Address); err == nil {
			out = append(out, e)
			continue
		}
		addrs := r.lookup(e.Address)
		if len(addrs) == 0 {
			out = append(out, e)
			continue
		}
		for _, a := range addrs {
			ea := e
			ea.Address = a.String()
			out = append(out, ea)
		}
	}
	return out
}

func (r *router) lookup(name string) []netip.Addr {
	ctx, cancel := context.WithTimeout(context.Background(), dnsTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	if err != nil || len(addrs) == 0 {
		r.p.log.Warn("routes: cannot resolve endpoint; keeping its last addresses", "name", name,
			"addresses", len(r.dns[name]), "err", err)
		return r.dns[name]
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	r.dns[name] = addrs
	return addrs
}

// refreshDNS resolves the names among the endpoints again every
// Config.DNSRefreshRate and updates the clusters whose addresses changed.
func (r *router) refreshDNS(ctx context.Context) {
	t := time.NewTicker(r.p.cfg.DNSRefreshRate)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		for key, rc := range r.live {
			if !slices.ContainsFunc(rc.raw, func(e ups.Endpoint) bool { _, err := netip.ParseAddr(e.Address); return err != nil }) {
				continue
			}
			eps := r.expand(rc.raw)
			if slices.EqualFunc(eps, rc.eps, func(a, b ups.Endpoint) bool { return a.Address == b.Address && a.Port == b.Port }) {
				continue
			}
			rc.c.Update(eps, rc.pol)
			rc.eps = eps
			r.p.log.Info("routes: endpoint addresses changed", "cluster", key.String(), "endpoints", len(eps))
		}
		r.mu.Unlock()
	}
}

// stop ends the watch, waits for mirrored requests (bounded by ctx) and
// closes every cluster.
func (r *router) stop(ctx context.Context) {
	if r == nil {
		return
	}
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	waited := make(chan struct{})
	go func() { r.mirrors.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rc := range r.live {
		rc.c.Close()
	}
	for _, rc := range r.retired {
		rc.c.Close()
	}
}

// lookupRoute routes an outbound request by its Host: Config.Routes first,
// then Config.Upstreams.
func (s *side) lookupRoute(r *http.Request, ex *exchange) {
	if st := s.p.routes.current(); st != nil {
		if m, ok := st.table.Lookup(r); ok {
			ex.routed = true
			ex.route, ex.prefix = m.Route, m.URIPrefix
			if m.Route != nil && m.Route.Redirect == nil {
				ex.dst = m.Route.PickRandom()
				ex.rc = st.clusters[ex.dst.Cluster]
				ex.up = ex.rc.id
				ex.state = st
			}
			return
		}
	}
	ex.up = s.route(r.Host)
}

// hit draws whether a request falls into a percentage.
func hit(percent float64) bool {
	return percent >= 100 || (percent > 0 && rand.Float64()*100 < percent)
}

// forwardRouted applies a matched route: fault injection, redirect, header
// operations, mirroring, then the forward with timeout and retries.
func (s *side) forwardRouted(rec *recorder, r *http.Request, ex *exchange) {
	rt := ex.route
	if f := rt.Fault; f != nil {
		if f.Delay > 0 && hit(f.DelayPercent) {
			ex.flag = flagDelayInjected
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				ex.flag = flagDownstream
				rec.WriteHeader(499)
				return
			}
		}
		if f.AbortStatus != 0 && hit(f.AbortPercent) {
			ex.flag = flagFaultInjected
			writeText(rec, f.AbortStatus, "fault filter abort")
			return
		}
	}
	if rd := rt.Redirect; rd != nil {
		rec.Header().Set("Location", rd.Location(r))
		rec.WriteHeader(rd.Code)
		return
	}
	rt.Headers.Request.Apply(r.Header)
	ex.dst.Headers.Request.Apply(r.Header)

	ex.replayable = r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	if !ex.replayable && (rt.Retries.Attempts > 0 || rt.Mirror != nil) && r.ContentLength > 0 && r.ContentLength <= maxReplayBody {
		buf, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		if err != nil || int64(len(buf)) != r.ContentLength {
			ex.flag = flagDownstream
			writeText(rec, http.StatusBadRequest, "request body cut short")
			return
		}
		ex.bodyBuf, ex.replayable = buf, true
		r.Body = http.NoBody
	}
	if rt.Mirror != nil && ex.replayable && hit(rt.MirrorPercent) {
		s.mirror(r, ex)
	}
	s.rrp.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex)))
}

// mirror sends a copy of the request to the route's mirror cluster, with
// "-shadow" appended to the Host as Envoy does, and forgets the answer.
func (s *side) mirror(r *http.Request, ex *exchange) {
	rc := ex.state.clusters[ex.route.Mirror.Cluster]
	if rc == nil {
		return
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, ""
	}
	orig, shadow := r.Host, host+"-shadow"
	if port != "" {
		shadow = net.JoinHostPort(shadow, port)
	}
	u := *r.URL
	ex.route.Rewrite.RewritePath(&u, ex.prefix)
	hdr := r.Header.Clone()
	body, method := ex.bodyBuf, r.Method
	timeout := ex.route.Timeout
	if timeout <= 0 {
		timeout = mirrorTimeout
	}
	router := s.p.routes
	router.mirrors.Add(1)
	go func() {
		defer router.mirrors.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if rc.passthrough.Load() {
			ctx = ups.WithOriginalDestination(ctx, originalDestination(orig, rc.key.Port))
		}
		pk, err := rc.c.Pick(ctx)
		if err != nil {
			return
		}
		u.Scheme, u.Host = "http", pk.Addr
		req := (&http.Request{Method: method, URL: &u, Header: hdr, Host: shadow, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(ctx)
		if len(body) > 0 {
			req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		resp, err := rc.c.Transport().RoundTrip(req)
		if err != nil {
			pk.Done(0, err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		pk.Done(resp.StatusCode, nil)
	}()
}

// routeError is a routed request's failure: the flag, status and message
// the caller gets.
type routeError struct {
	flag string
	code int
	msg  string
	err  error
}

func (e *routeError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *routeError) Unwrap() error { return e.err }

// routedTransport forwards a routed request to its cluster: an endpoint
// per try, the route's timeout over all tries and perTryTimeout over each,
// retries on the route's retryOn conditions within the retry budget, with
// jittered exponential backoff.
type routedTransport struct{ s *side }

func (t routedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeOf(req.Context())
	rc, rt := ex.rc, ex.route
	cfg := &t.s.p.cfg
	rc.active.Add(1)
	ctx, cancel := req.Context(), context.CancelFunc(func() {})
	if rt.Timeout > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, rt.Timeout, errRouteTimeout)
	}
	end := func() { cancel(); rc.active.Add(-1) }
	tries := 1
	if ex.replayable {
		tries += rt.Retries.Attempts
	}
	// retry takes a slot of the budget and waits the backoff; on false,
	// last says why not.
	var last *routeError
	retry := func(try int) bool {
		if !rc.allowRetry(cfg.RetryBudgetPercent, cfg.RetryBudgetMinConcurrency) {
			return false
		}
		if !sleepBackoff(ctx, try) {
			rc.retries.Add(-1)
			last = classifyRouteError(ctx, req.Context(), context.Cause(ctx))
			return false
		}
		return true
	}
	for try := 0; ; try++ {
		resp, pk, done, err := t.attempt(ctx, req, ex, try)
		if try > 0 {
			rc.retries.Add(-1)
		}
		if err == nil {
			code := resp.StatusCode
			switch {
			case rt.Retries.RetryStatus(code) && try+1 < tries:
				last = nil
				if retry(try + 1) {
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
					resp.Body.Close()
					pk.Done(code, nil)
					done()
					continue
				}
				if last != nil { // the backoff was cut short: the route's timeout or the caller
					resp.Body.Close()
					pk.Done(code, nil)
					done()
					end()
					return nil, last
				}
				ex.flag = flagRetryExhausted // refused by the budget
			case try > 0 && rt.Retries.RetryStatus(code):
				ex.flag = flagRetryExhausted // the tries are used up
			}
			wrapBody(resp, func() { pk.Done(code, nil); done(); end() })
			return resp, nil
		}
		if pk != nil {
			pk.Done(0, err)
		}
		done()
		last = classifyRouteError(ctx, req.Context(), err)
		if ctx.Err() != nil || !retriable(rt.Retries, last.flag) {
			break
		}
		if try+1 >= tries {
			if try > 0 {
				last.flag = flagRetryExhausted
			}
			break
		}
		prev := last
		if !retry(try + 1) {
			if last == prev {
				last.flag = flagRetryExhausted // refused by the budget
			}
			break
		}
	}
	end()
	return nil, last
}

// attempt is one try: pick an endpoint, forward within perTryTimeout. done
// releases the try's context; call it after the response body is finished.
func (t routedTransport) attempt(ctx context.Context, req *http.Request, ex *exchange, try int) (*http.Response, *ups.Pick, func(), error) {
	rc, rt := ex.rc, ex.route
	actx, acancel := ctx, context.CancelFunc(func() {})
	if rt.Retries.PerTryTimeout > 0 {
		actx, acancel = context.WithTimeoutCause(ctx, rt.Retries.PerTryTimeout, errPerTryTimeout)
	}
	pctx := actx
	if rc.passthrough.Load() {
		pctx = ups.WithOriginalDestination(actx, originalDestination(req.Host, rc.key.Port))
	}
	pk, err := rc.c.Pick(pctx)
	if err != nil {
		return nil, nil, acancel, err
	}
	// A shallow copy: RoundTrippers only read the request, so the tries
	// share its headers; each gets its own URL.
	out := req.WithContext(actx)
	u := *req.URL
	u.Scheme, u.Host = "http", pk.Addr
	out.URL = &u
	switch {
	case ex.bodyBuf != nil:
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(ex.bodyBuf)), int64(len(ex.bodyBuf))
	case try > 0:
		out.Body = nil // replayable without a buffer: there was none
	}
	ex.picked = pk
	resp, err := rc.c.Transport().RoundTrip(out)
	if err != nil {
		return nil, pk, acancel, err
	}
	return resp, pk, acancel, nil
}

// originalDestination is where a PASSTHROUGH cluster sends a request: the
// Host it is sent with (after a rewrite of the authority), on the Host's
// port, else the port of the service the route chose, else 80.
func originalDestination(host string, port int) string {
	if h, p, err := net.SplitHostPort(host); err == nil && p != "" {
		return net.JoinHostPort(h, p)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if port <= 0 {
		port = 80
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// allowRetry takes a retry slot if the budget has one: retries in flight
// stay under percent of the requests in flight (at least minConcurrency),
// and under the cluster's maxRetries.
func (rc *routeCluster) allowRetry(percent float64, minConcurrency int) bool {
	limit := max(int64(float64(rc.active.Load())*percent/100), int64(minConcurrency))
	if m := rc.maxRetries.Load(); m > 0 {
		limit = min(limit, m)
	}
	for {
		n := rc.retries.Load()
		if n >= limit {
			return false
		}
		if rc.retries.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// sleepBackoff waits before try number try (1 = the first retry): a random
// time up to base·2^(try-1), capped (full jitter). false when ctx ended.
func sleepBackoff(ctx context.Context, try int) bool {
	ceil := min(retryBaseInterval<<(try-1), retryMaxInterval)
	d := time.Duration(rand.Int64N(int64(ceil)) + 1)
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// classifyRouteError maps a failed try to its flag and answer. ctx is the
// route's (its timeout), reqCtx the caller's.
func classifyRouteError(ctx, reqCtx context.Context, err error) *routeError {
	var op *net.OpError
	switch {
	case reqCtx.Err() != nil:
		return &routeError{flag: flagDownstream, code: 499, msg: "client went away", err: err}
	case ctx.Err() != nil:
		return &routeError{flag: flagTimeout, code: http.StatusGatewayTimeout, msg: "upstream request timeout", err: err}
	case errors.Is(err, ups.ErrNoHealthy):
		return &routeError{flag: flagNoHealthy, code: http.StatusServiceUnavailable, msg: "no healthy upstream", err: err}
	case errors.Is(err, ups.ErrOverflow):
		return &routeError{flag: flagOverflow, code: http.StatusServiceUnavailable, msg: "upstream overflow", err: err}
	case errors.Is(err, ups.ErrConnectFailure), errors.As(err, &op) && op.Op == "dial":
		return &routeError{flag: flagConnect, code: http.StatusServiceUnavailable, msg: "upstream connect error", err: err}
	case errors.Is(err, errPerTryTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// Neither the caller's nor the route's context ended: the try's
		// own perTryTimeout did.
		return &routeError{flag: flagTimeout, code: http.StatusGatewayTimeout, msg: "upstream request timeout", err: err}
	}
	return &routeError{flag: flagReset, code: http.StatusServiceUnavailable, msg: "upstream disconnected before responding", err: err}
}

// retriable says whether retryOn covers a failed try: connect failures
// under connect-failure, 5xx and gateway-error; resets and per-try
// timeouts under reset, 5xx and gateway-error.
func retriable(p routing.RetryPolicy, flag string) bool {
	switch flag {
	case flagConnect:
		return p.On[routing.RetryConnectFailure] || p.On[routing.Retry5xx] || p.On[routing.RetryGatewayError]
	case flagReset, flagTimeout:
		return p.On[routing.RetryReset] || p.On[routing.Retry5xx] || p.On[routing.RetryGatewayError]
	}
	return false
}

// wrapBody calls finish once when the response body is closed, keeping an
// upgraded connection's body writable.
func wrapBody(resp *http.Response, finish func()) {
	fb := &finishBody{ReadCloser: resp.Body, finish: finish}
	if w, ok := resp.Body.(io.Writer); ok {
		resp.Body = &finishRWBody{finishBody: fb, w: w}
		return
	}
	resp.Body = fb
}

type finishBody struct {
	io.ReadCloser
	once   sync.Once
	finish func()
}

func (b *finishBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.finish)
	return err
}

type finishRWBody struct {
	*finishBody
	w io.Writer
}

func (b *finishRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// setRouteAttributes adds a routed request's decisions to its report:
// route.name, and the endpoint of the last try with its labels (the
// subset's version among them) as destination.ip, .port and .labels.
func setRouteAttributes(b *attribute.Builder, ex *exchange) {
	if ex.route != nil {
		b.SetString(attribute.RouteName, ex.route.Name)
	}
	pk := ex.picked
	if pk == nil {
		return
	}
	if ip, port := pickedAddr(pk); port > 0 {
		if a, err := netip.ParseAddr(ip); err == nil {
			b.SetIP(attribute.DestinationIP, a)
		}
		b.SetInt64(attribute.DestinationPort, port)
	}
	if len(pk.Endpoint.Labels) > 0 {
		b.SetStringMap(attribute.DestinationLabels, pk.Endpoint.Labels)
	}
}

// pickedAddr splits the chosen endpoint's address for the report.
func pickedAddr(pk *ups.Pick) (ip string, port int64) {
	h, p, err := net.SplitHostPort(pk.Addr)
	if err != nil {
		return "", 0
	}
	port, _ = strconv.ParseInt(p, 10, 64)
	return h, port
}
