package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sidemix/sidemix/proxy/mixerclient"
)

// DefaultAdmin is the admin address the command line uses unless told
// otherwise. In a Config, an empty Admin disables the admin listener.
const DefaultAdmin = "127.0.0.1:15000"

// Config configures a Proxy.
type Config struct {
	// Service and Namespace name the workload this proxy runs beside.
	// Service is required; Namespace defaults to "default".
	Service, Namespace string
	// UID identifies this instance (destination.uid inbound, source.uid
	// outbound, context.reporter.uid); default kubernetes://HOSTNAME.NAMESPACE.
	UID string
	// Principal is the identity this proxy claims for its app's outbound
	// calls (source.principal at the callee); default
	// cluster.local/ns/NAMESPACE/sa/SERVICE.
	Principal string
	// Labels are the workload's labels (e.g. version: v1), reported as
	// destination.labels of the requests it serves and source.labels of
	// its app's calls.
	Labels map[string]string

	// Inbound is the listen address for callers of the app; App is the
	// app's host:port it forwards to. Empty Inbound disables the inbound side.
	Inbound, App string
	// Outbound is the listen address the app sends its own calls to, naming
	// the callee in the Host header; empty disables the outbound side.
	Outbound string
	// Upstreams maps the names the app uses as Host to host:port.
	Upstreams map[string]string
	// TCP lists plain TCP pass-through listeners (see TCPListener);
	// TCPReportInterval is how often a long connection is reported
	// (default DefaultTCPReportInterval).
	TCP               []TCPListener
	TCPReportInterval time.Duration
	// Routes is a folder of ServiceEntry, VirtualService and
	// DestinationRule files (proxy/routing) that route the outbound side
	// by Host before Upstreams is consulted; watched and reloaded.
	Routes string
	// RoutesPollInterval is how often the routes folder is polled besides
	// file system events (default 5s).
	RoutesPollInterval time.Duration
	// RetryBudgetPercent bounds the retries in flight to a cluster to this
	// share of its requests in flight, but allows at least
	// RetryBudgetMinConcurrency; zero takes DefaultRetryBudgetPercent and
	// DefaultRetryBudgetMinConcurrency.
	RetryBudgetPercent        float64
	RetryBudgetMinConcurrency int
	// DNSRefreshRate is how often the host names among the routes'
	// endpoints are resolved again (default DefaultDNSRefreshRate).
	DNSRefreshRate time.Duration

	// Mixer is the mixer's gRPC address, host:port, or several separated
	// by commas: each call goes to the next healthy one (see mixerclient).
	// Required.
	Mixer string
	// CheckTimeout bounds each Check (default 1s); CheckFailOpen lets
	// requests through when the mixer cannot answer in time.
	CheckTimeout  time.Duration
	CheckFailOpen bool
	// CheckFailOpenFor overrides CheckFailOpen per service: the key
	// "inbound" for requests to this service, an Upstreams name for the
	// app's calls to that upstream, and with Routes a routed service host
	// (its full name or its first label); true is open, false closed.
	CheckFailOpenFor map[string]bool
	// QuotaPrefetchMax, QuotaPrefetchWindow and QuotaPrefetchMaxAge tune
	// quota prefetch (mixerclient.Options PrefetchMax, PrefetchWindow,
	// PrefetchMaxAge); a zero QuotaPrefetchMax disables it (the command
	// line defaults it to mixerclient.DefaultPrefetchMax).
	QuotaPrefetchMax    int64
	QuotaPrefetchWindow time.Duration
	QuotaPrefetchMaxAge time.Duration
	// MixerEjectAfter and MixerEjectTime tune the ejection of failing
	// mixers (mixerclient.Options EjectAfter, EjectTime).
	MixerEjectAfter int
	MixerEjectTime  time.Duration
	// ReportBatchSize, ReportInterval, ReportBufferSize and CacheSize tune
	// the mixer client (see mixerclient.Options; zero takes its default).
	ReportBatchSize  int
	ReportInterval   time.Duration
	ReportBufferSize int
	CacheSize        int

	// TraceSampling is the fraction of new traces (requests arriving
	// without a trace context that decides sampling) that are sampled,
	// from 0 to 1; the command line defaults it to 1. A request that
	// carries a context keeps its caller's decision.
	TraceSampling float64
	// MaxRequestHeaderBytes bounds a request's headers (names, values and
	// the request line, approximately as on the wire); a request over it
	// is refused with 431 and never forwarded. Zero means
	// DefaultMaxRequestHeaderBytes.
	MaxRequestHeaderBytes int

	// Admin is the listen address of /healthz, /readyz and /metrics; empty
	// disables it (the command line defaults it to DefaultAdmin).
	Admin string

	// Logger receives start, stop and state changes; nil discards.
	Logger *slog.Logger
}

// DefaultMaxRequestHeaderBytes is Envoy's default limit, 60 KiB.
const DefaultMaxRequestHeaderBytes = 60 << 10

// upstream is one resolved entry of Config.Upstreams.
type upstream struct {
	name      string // as the app writes it in Host, lower case
	addr      string // host:port
	service   string // destination.service.name
	namespace string // destination.service.namespace
	host      string // destination.service.host
	ip        netip.Addr
	port      int64
	policy    mixerclient.FailPolicy
}

// InboundFailKey names the inbound side in Config.CheckFailOpenFor.
const InboundFailKey = "inbound"

// Validate reports every problem of the config, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Service == "" {
		add("service", "required")
	}
	mixers := 0
	for _, m := range strings.Split(c.Mixer, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		mixers++
		if err := checkHostPort(m); err != nil {
			add("mixer", "%v", err)
		}
	}
	if mixers == 0 {
		add("mixer", "required")
	}
	if c.Inbound == "" && c.Outbound == "" && len(c.TCP) == 0 {
		add("inbound", "one of inbound, outbound or tcp is required")
	}
	c.validateTCP(add)
	if c.Inbound != "" {
		if err := checkHostPort(c.Inbound); err != nil {
			add("inbound", "%v", err)
		}
		if c.App == "" {
			add("app", "required with inbound")
		} else if err := checkHostPort(c.App); err != nil {
			add("app", "%v", err)
		}
	}
	if c.Outbound != "" {
		if err := checkHostPort(c.Outbound); err != nil {
			add("outbound", "%v", err)
		}
	}
	if c.Routes != "" && c.Outbound == "" {
		add("routes", "needs outbound")
	}
	if !(c.RetryBudgetPercent >= 0 && c.RetryBudgetPercent <= 100) {
		add("retry_budget_percent", "%v is not between 0 and 100", c.RetryBudgetPercent)
	}
	if c.RetryBudgetMinConcurrency < 0 {
		add("retry_budget_min_concurrency", "negative: %d", c.RetryBudgetMinConcurrency)
	}
	names := make([]string, 0, len(c.Upstreams))
	for n := range c.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, ":/ ") {
			add("upstreams", "invalid name %q", n)
		}
		if err := checkHostPort(c.Upstreams[n]); err != nil {
			add("upstreams."+n, "%v", err)
		}
	}
	keys := make([]string, 0, len(c.CheckFailOpenFor))
	for k := range c.CheckFailOpenFor {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case k == InboundFailKey:
			if c.Inbound == "" {
				add("check_fail_open_for."+k, "the inbound side is disabled")
			}
		case !hasUpstream(c.Upstreams, k) && c.Routes == "": // routed hosts are known only once loaded
			add("check_fail_open_for."+k, "no such upstream (want %q or a name of upstreams)", InboundFailKey)
		}
	}
	if c.QuotaPrefetchMax < 0 {
		add("quota_prefetch_max", "negative: %d", c.QuotaPrefetchMax)
	}
	if c.Admin != "" {
		if err := checkHostPort(c.Admin); err != nil {
			add("admin", "%v", err)
		}
	}
	if c.CheckTimeout < 0 {
		add("check_timeout", "negative: %v", c.CheckTimeout)
	}
	if c.ReportInterval < 0 {
		add("report_interval", "negative: %v", c.ReportInterval)
	}
	if !(c.TraceSampling >= 0 && c.TraceSampling <= 1) {
		add("trace_sampling", "%v is not between 0 and 1", c.TraceSampling)
	}
	if c.MaxRequestHeaderBytes < 0 {
		add("max_request_header_bytes", "negative: %d", c.MaxRequestHeaderBytes)
	}
	return errors.Join(errs...)
}

func hasUpstream(ups map[string]string, name string) bool {
	for n := range ups {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// failPolicy is the fail policy of the side or upstream named key.
func (c *Config) failPolicy(key string) mixerclient.FailPolicy {
	for k, open := range c.CheckFailOpenFor {
		if strings.EqualFold(k, key) {
			if open {
				return mixerclient.FailPolicyOpen
			}
			return mixerclient.FailPolicyClosed
		}
	}
	return mixerclient.FailPolicyDefault
}

func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has an invalid port", s)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.UID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = c.Service
		}
		c.UID = "kubernetes://" + host + "." + c.Namespace
	}
	if c.Principal == "" {
		c.Principal = "cluster.local/ns/" + c.Namespace + "/sa/" + c.Service
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxRequestHeaderBytes == 0 {
		c.MaxRequestHeaderBytes = DefaultMaxRequestHeaderBytes
	}
	if c.TCPReportInterval == 0 {
		c.TCPReportInterval = DefaultTCPReportInterval
	}
	if c.RetryBudgetPercent == 0 {
		c.RetryBudgetPercent = DefaultRetryBudgetPercent
	}
	if c.RetryBudgetMinConcurrency == 0 {
		c.RetryBudgetMinConcurrency = DefaultRetryBudgetMinConcurrency
	}
	if c.DNSRefreshRate <= 0 {
		c.DNSRefreshRate = DefaultDNSRefreshRate
	}
}

// serviceHost is the cluster DNS name of a service.
func serviceHost(name, namespace string) string {
	return name + "." + namespace + ".svc.cluster.local"
}

// newUpstream derives the destination identity from the name the app uses:
// "reviews" (this namespace), "reviews.shop", or a full
// "reviews.shop.svc.cluster.local".
func newUpstream(name, addr, namespace string) *upstream {
	u := &upstream{name: strings.ToLower(name), addr: addr}
	labels := strings.Split(u.name, ".")
	switch {
	case len(labels) == 1:
		u.service, u.namespace = labels[0], namespace
		u.host = serviceHost(u.service, u.namespace)
	case len(labels) == 2:
		u.service, u.namespace = labels[0], labels[1]
		u.host = serviceHost(u.service, u.namespace)
	default:
		u.service, u.namespace, u.host = labels[0], labels[1], u.name
	}
	if h, p, err := net.SplitHostPort(addr); err == nil {
		u.ip, _ = netip.ParseAddr(h)
		u.port, _ = strconv.ParseInt(p, 10, 64)
	}
	return u
}
