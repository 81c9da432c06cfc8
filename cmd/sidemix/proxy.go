package main

import (
	"context"
	"strings"
	"time"

	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/mixerclient"
)

const proxySynopsis = `  sidemix proxy --service NAME --app ADDR [flags]

Runs a sidecar in front of one service instance. Requests to --inbound are
checked with the mixer and, when allowed, forwarded to the app at --app.
With --outbound, the app's own calls sent there are forwarded to the upstream
named by their Host header: first by --routes (a folder of Istio
ServiceEntry, VirtualService and DestinationRule files: weighted and header
routes, timeouts, retries, fault injection, circuit breaking; reloaded when
it changes, an invalid change logged and ignored), then by --upstreams
name=host:port. Every request is reported to the mixer in batches, off the
request path.

--mixer may list several mixers (a,b,c): each Check and Report goes to the
next healthy one, a mixer failing --mixer-eject-after times in a row (or
unreachable) is left out for --mixer-eject-time (doubling while it keeps
failing), and a Check that fails with UNAVAILABLE or DEADLINE_EXCEEDED is
retried once on another mixer with the same deduplication id.

--check-fail-policy is a default (closed or open) optionally followed by
per-service overrides: "closed,inbound=open,ratings=open" answers 503 when
the mixer cannot be asked, except for requests to this service (inbound) and
the app's calls to the upstream ratings, which are forwarded.

Every request gets a span: a server span inbound, a client span outbound,
the child of the caller's span when the request carries W3C traceparent or
B3 headers, else the root of a new trace, sampled with probability
--trace-sampling (a continued trace keeps its caller's decision). The app
and the callee receive traceparent, tracestate and X-B3-* naming that span
as their parent; an app that forwards either set keeps its calls in the
trace. Spans travel in the reports as request.trace.* attributes. A request
whose trace headers or headers in total are too large is answered 431.

--tcp-inbound and --tcp-outbound add plain TCP pass-through listeners
(listen=upstream): each connection is checked with the mixer (context.protocol
tcp), joined to a new connection to the upstream, and reported when it opens,
every --tcp-report-interval while it lasts, and when it closes, with
connection.received.bytes / connection.sent.bytes since the previous report
(and their _total), connection.duration and connection.event (open, continue,
close). A denied connection is closed at once (flag UAEX), an upstream that
cannot be reached closes it with flag UF.`

func runProxy(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("proxy", proxySynopsis)
	service := fs.String("service", "", "`name` of the service (workload) this sidecar serves (required)")
	namespace := fs.String("namespace", "default", "`namespace` of the service")
	uid := fs.String("uid", "", "`id` of this instance in reports (default kubernetes://HOSTNAME.NAMESPACE)")
	principal := fs.String("principal", "", "`identity` the app's outbound calls carry (default cluster.local/ns/NAMESPACE/sa/SERVICE)")
	var labels listFlag
	fs.Var(&labels, "labels", "labels of this workload, as `key=value,...` (e.g. version=v1): destination.labels of the requests it serves, source.labels of its calls (repeatable)")
	inbound := fs.String("inbound", "127.0.0.1:15006", "listen `address` for requests to the service; empty disables")
	app := fs.String("app", "", "`address` (host:port) of the local app (required with --inbound)")
	outbound := fs.String("outbound", "", "listen `address` for the app's calls to other services; empty disables")
	var upstreams listFlag
	fs.Var(&upstreams, "upstreams", "routes for --outbound, as `name=host:port,...`: a request whose Host is name goes to host:port (repeatable)")
	routesDir := fs.String("routes", "", "`folder` of ServiceEntry, VirtualService and DestinationRule files (Istio's networking.istio.io or networking.sidemix.dev/v1) routing --outbound; watched and reloaded, tried before --upstreams")
	retryBudget := fs.Float64("retry-budget-percent", proxy.DefaultRetryBudgetPercent, "most retries in flight to a cluster, as a `percentage` of its requests in flight (at least --retry-budget-min-concurrency)")
	retryMin := fs.Int("retry-budget-min-concurrency", proxy.DefaultRetryBudgetMinConcurrency, "retries in flight to a cluster that the budget always allows")
	dnsRefresh := fs.Duration("dns-refresh-rate", proxy.DefaultDNSRefreshRate, "how often host names among the --routes endpoints are resolved again")
	var tcpInbound, tcpOutbound listFlag
	fs.Var(&tcpInbound, "tcp-inbound", "plain TCP listeners for connections to the service, as `listen=host:port,...`: each connection to listen is checked, passed through to the app's host:port and reported (context.protocol tcp) (repeatable)")
	fs.Var(&tcpOutbound, "tcp-outbound", "plain TCP listeners for the app's connections to other services, as `listen=upstream,...` where upstream is host:port or an --upstreams name (repeatable)")
	tcpReportInterval := fs.Duration("tcp-report-interval", proxy.DefaultTCPReportInterval, "how often a TCP connection that stays open is reported with the bytes since its previous report")
	mixerAddr := fs.String("mixer", "127.0.0.1:9091", "gRPC `addresses` of the mixers, comma-separated; calls are balanced over the healthy ones")
	failPolicy := fs.String("check-fail-policy", "closed", "`policy` when the mixer cannot be reached: closed (answer 503) or open (forward), optionally followed by name=closed|open overrides for inbound or an --upstreams name, comma-separated")
	checkTimeout := fs.Duration("check-timeout", time.Second, "longest a request waits for the mixer's Check (a retry on another mixer included)")
	prefetchMax := fs.Int64("quota-prefetch-max", mixerclient.DefaultPrefetchMax, "most quota units one Check asks for: the request's charge plus what is fetched ahead so that later requests are answered from a local pool (never more than 1/20 of the quota's limit, so limits under 20 per window stay exact); 0 disables prefetch (each request asks the mixer for its charge)")
	prefetchWindow := fs.Duration("quota-prefetch-window", time.Second, "sliding window over which quota usage is measured to predict the next window's need")
	prefetchMaxAge := fs.Duration("quota-prefetch-max-age", time.Second, "longest a prefetched quota token is kept before it expires unused")
	ejectAfter := fs.Int("mixer-eject-after", 3, "failures in a row that take a mixer out of the rotation")
	ejectTime := fs.Duration("mixer-eject-time", time.Second, "how long a mixer is first left out; doubles while it keeps failing, up to 30s")
	batchSize := fs.Int("report-batch-size", 1000, "requests per Report batch")
	bufferSize := fs.Int("report-buffer-size", 10000, "finished requests buffered for reporting; more are dropped and counted")
	reportInterval := fs.Duration("report-interval", time.Second, "longest a finished request waits before it is reported")
	cacheSize := fs.Int("cache-size", 10000, "check cache entries")
	traceSampling := fs.Float64("trace-sampling", 1, "`fraction` (0 to 1) of new traces that are sampled; requests carrying a trace context keep their caller's decision")
	maxHeaderBytes := fs.Int("max-request-header-bytes", proxy.DefaultMaxRequestHeaderBytes, "largest request head (request line and headers) forwarded; larger requests are answered 431")
	admin := fs.String("admin", proxy.DefaultAdmin, "admin HTTP listen `address` (/healthz, /metrics, /debug/pprof/ for loopback callers); empty disables")
	shutdownTimeout := fs.Duration("shutdown-timeout", 15*time.Second, "how long SIGTERM may take to finish requests and flush reports")
	lf := addLogFlags(fs)
	if err := fs.parse(e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	if *service == "" {
		return usageErrorf("--service is required")
	}
	if *inbound != "" && *app == "" {
		return usageErrorf("--app is required (or disable the inbound side with --inbound '')")
	}
	tcp, err := parseTCPListeners(tcpInbound, tcpOutbound)
	if err != nil {
		return err
	}
	if *inbound == "" && *outbound == "" && len(tcp) == 0 {
		return usageErrorf("--inbound and --outbound are both empty and there is no --tcp-inbound or --tcp-outbound: nothing to serve")
	}
	failOpen, failOpenFor, err := parseFailPolicy(*failPolicy)
	if err != nil {
		return err
	}
	workloadLabels, err := parseKeyValues("labels", labels)
	if err != nil {
		return err
	}
	routes, err := parseKeyValues("upstreams", upstreams)
	if err != nil {
		return err
	}
	if len(routes) > 0 && *outbound == "" {
		return usageErrorf("--upstreams needs --outbound")
	}
	if *routesDir != "" && *outbound == "" {
		return usageErrorf("--routes needs --outbound")
	}
	logger, err := lf.logger(e.stderr)
	if err != nil {
		return err
	}
	p, err := proxy.New(proxy.Config{
		Service:                   *service,
		Namespace:                 *namespace,
		UID:                       *uid,
		Principal:                 *principal,
		Labels:                    workloadLabels,
		Inbound:                   *inbound,
		App:                       *app,
		Outbound:                  *outbound,
		Upstreams:                 routes,
		TCP:                       tcp,
		TCPReportInterval:         *tcpReportInterval,
		Routes:                    *routesDir,
		RetryBudgetPercent:        *retryBudget,
		RetryBudgetMinConcurrency: *retryMin,
		DNSRefreshRate:            *dnsRefresh,
		Mixer:                     *mixerAddr,
		CheckTimeout:              *checkTimeout,
		CheckFailOpen:             failOpen,
		CheckFailOpenFor:          failOpenFor,
		QuotaPrefetchMax:          *prefetchMax,
		QuotaPrefetchWindow:       *prefetchWindow,
		QuotaPrefetchMaxAge:       *prefetchMaxAge,
		MixerEjectAfter:           *ejectAfter,
		MixerEjectTime:            *ejectTime,
		ReportBatchSize:           *batchSize,
		ReportBufferSize:          *bufferSize,
		ReportInterval:            *reportInterval,
		CacheSize:                 *cacheSize,
		TraceSampling:             *traceSampling,
		MaxRequestHeaderBytes:     *maxHeaderBytes,
		Admin:                     *admin,
		Logger:                    logger,
	})
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return err
	}
	return waitAndShutdown(ctx, logger, *shutdownTimeout, "proxy", p.Shutdown)
}

// parseTCPListeners reads --tcp-inbound and --tcp-outbound, listen=upstream
// pairs, in the order given.
func parseTCPListeners(inbound, outbound []string) ([]proxy.TCPListener, error) {
	var out []proxy.TCPListener
	seen := map[string]bool{}
	for _, side := range []struct {
		flag    string
		items   []string
		inbound bool
	}{{"tcp-inbound", inbound, true}, {"tcp-outbound", outbound, false}} {
		for _, it := range side.items {
			listen, up, ok := strings.Cut(it, "=")
			listen, up = strings.TrimSpace(listen), strings.TrimSpace(up)
			if !ok || listen == "" || up == "" {
				return nil, usageErrorf("--%s: %q is not listen=upstream", side.flag, it)
			}
			if seen[listen] && !strings.HasSuffix(listen, ":0") {
				return nil, usageErrorf("--%s: listen address %q given twice", side.flag, listen)
			}
			seen[listen] = true
			out = append(out, proxy.TCPListener{Listen: listen, Upstream: up, Inbound: side.inbound})
		}
	}
	return out, nil
}

// parseFailPolicy reads --check-fail-policy: "closed" or "open", then
// name=closed|open overrides, all comma-separated.
func parseFailPolicy(s string) (open bool, overrides map[string]bool, err error) {
	policy := func(v string) (bool, error) {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "open":
			return true, nil
		case "closed":
			return false, nil
		}
		return false, usageErrorf("--check-fail-policy: %q is not open or closed", v)
	}
	seenDefault := false
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		if !ok {
			if seenDefault {
				return false, nil, usageErrorf("--check-fail-policy: more than one default in %q", s)
			}
			seenDefault = true
			if open, err = policy(part); err != nil {
				return false, nil, err
			}
			continue
		}
		name = strings.TrimSpace(name)
		if name == "" {
			return false, nil, usageErrorf("--check-fail-policy: %q is not name=open|closed", part)
		}
		if _, dup := overrides[name]; dup {
			return false, nil, usageErrorf("--check-fail-policy: %q given twice", name)
		}
		o, err := policy(v)
		if err != nil {
			return false, nil, err
		}
		if overrides == nil {
			overrides = map[string]bool{}
		}
		overrides[name] = o
	}
	return open, overrides, nil
}
