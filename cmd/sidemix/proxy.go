package main

import (
	"context"
	"strings"
	"time"

	"github.com/sidemix/sidemix/proxy"
)

const proxySynopsis = `  sidemix proxy --service NAME --app ADDR [flags]

Runs a sidecar in front of one service instance. Requests to --inbound are
checked with the mixer and, when allowed, forwarded to the app at --app.
With --outbound, the app's own calls sent there are forwarded to the upstream
named by their Host header (--upstreams name=host:port). Every request is
reported to the mixer in batches, off the request path.`

func runProxy(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("proxy", proxySynopsis)
	service := fs.String("service", "", "`name` of the service (workload) this sidecar serves (required)")
	namespace := fs.String("namespace", "default", "`namespace` of the service")
	uid := fs.String("uid", "", "`id` of this instance in reports (default kubernetes://HOSTNAME.NAMESPACE)")
	principal := fs.String("principal", "", "`identity` the app's outbound calls carry (default cluster.local/ns/NAMESPACE/sa/SERVICE)")
	inbound := fs.String("inbound", "127.0.0.1:15006", "listen `address` for requests to the service; empty disables")
	app := fs.String("app", "", "`address` (host:port) of the local app (required with --inbound)")
	outbound := fs.String("outbound", "", "listen `address` for the app's calls to other services; empty disables")
	var upstreams listFlag
	fs.Var(&upstreams, "upstreams", "routes for --outbound, as `name=host:port,...`: a request whose Host is name goes to host:port (repeatable)")
	mixerAddr := fs.String("mixer", "127.0.0.1:9091", "gRPC `address` of the mixer")
	failPolicy := fs.String("check-fail-policy", "closed", "when the mixer cannot be reached: closed (answer 503) or open (forward)")
	checkTimeout := fs.Duration("check-timeout", time.Second, "longest a request waits for the mixer's Check")
	batchSize := fs.Int("report-batch-size", 1000, "requests per Report batch")
	bufferSize := fs.Int("report-buffer-size", 10000, "finished requests buffered for reporting; more are dropped and counted")
	reportInterval := fs.Duration("report-interval", time.Second, "longest a finished request waits before it is reported")
	cacheSize := fs.Int("cache-size", 10000, "check cache entries")
	admin := fs.String("admin", proxy.DefaultAdmin, "admin HTTP listen `address` (/healthz, /metrics); empty disables")
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
	if *inbound == "" && *outbound == "" {
		return usageErrorf("--inbound and --outbound are both empty: nothing to serve")
	}
	var failOpen bool
	switch strings.ToLower(*failPolicy) {
	case "open":
		failOpen = true
	case "closed":
	default:
		return usageErrorf("--check-fail-policy: %q is not open or closed", *failPolicy)
	}
	routes, err := parseKeyValues("upstreams", upstreams)
	if err != nil {
		return err
	}
	if len(routes) > 0 && *outbound == "" {
		return usageErrorf("--upstreams needs --outbound")
	}
	logger, err := lf.logger(e.stderr)
	if err != nil {
		return err
	}
	p, err := proxy.New(proxy.Config{
		Service:          *service,
		Namespace:        *namespace,
		UID:              *uid,
		Principal:        *principal,
		Inbound:          *inbound,
		App:              *app,
		Outbound:         *outbound,
		Upstreams:        routes,
		Mixer:            *mixerAddr,
		CheckTimeout:     *checkTimeout,
		CheckFailOpen:    failOpen,
		ReportBatchSize:  *batchSize,
		ReportBufferSize: *bufferSize,
		ReportInterval:   *reportInterval,
		CacheSize:        *cacheSize,
		Admin:            *admin,
		Logger:           logger,
	})
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return err
	}
	return waitAndShutdown(ctx, logger, *shutdownTimeout, "proxy", p.Shutdown)
}
