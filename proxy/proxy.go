package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sidemix/sidemix/proxy/mixerclient"
)

// Transport tuning: the app and the upstreams are near, connections to them
// are reused heavily, and a dial that does not complete quickly is a
// failure worth reporting (UF) rather than waiting for.
const (
	dialTimeout         = 2 * time.Second
	maxIdleConnsPerHost = 256
	idleConnTimeout     = 90 * time.Second
	readHeaderTimeout   = 30 * time.Second
)

// Proxy is the sidecar: inbound and outbound listeners that check every
// request with the mixer, forward it, and report it.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	errLog  *log.Logger
	reg     *prometheus.Registry
	m       *metrics
	mixer   *mixerclient.Client
	sampler sampler

	labelsHeader string     // Config.Labels as the labels headers carry them
	peerLabels   labelCache // parsed labels headers of callers and callees

	h1, h2c  *http.Transport
	inbound  *side   // nil when disabled
	outbound *side   // nil when disabled
	routes   *router // nil without Config.Routes
	tcp      []*tcpListener
	tcpm     *tcpMetrics

	admin   *http.Server
	adminLn net.Listener
	ready   atomic.Bool

	mu       sync.Mutex
	started  bool
	shutdown bool
}

// New validates cfg and builds the proxy; Start opens the listeners.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	cfg.setDefaults()
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		errLog:  slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		reg:     prometheus.NewRegistry(),
		sampler: newSampler(cfg.TraceSampling),

		labelsHeader: encodeLabels(cfg.Labels),
	}
	p.m = newMetrics(p.reg)
	mc, err := mixerclient.New(mixerclient.Options{
		Addr:             cfg.Mixer,
		CheckTimeout:     cfg.CheckTimeout,
		FailOpen:         cfg.CheckFailOpen,
		CacheSize:        cfg.CacheSize,
		PrefetchMax:      cfg.QuotaPrefetchMax,
		PrefetchWindow:   cfg.QuotaPrefetchWindow,
		PrefetchMaxAge:   cfg.QuotaPrefetchMaxAge,
		EjectAfter:       cfg.MixerEjectAfter,
		EjectTime:        cfg.MixerEjectTime,
		ReportBufferSize: cfg.ReportBufferSize,
		ReportBatchSize:  cfg.ReportBatchSize,
		ReportInterval:   cfg.ReportInterval,
		Logger:           cfg.Logger.With("component", "mixerclient"),
		Registerer:       p.reg,
	})
	if err != nil {
		return nil, err
	}
	p.mixer = mc

	p.h1 = newTransport(false)
	p.h2c = newTransport(true)
	rt := protocolSplit{h1: p.h1, h2c: p.h2c}
	if cfg.Routes != "" {
		if p.routes, err = newRouter(p); err != nil {
			_ = mc.Close(context.Background()) // nothing was reported yet
			return nil, fmt.Errorf("proxy routes: %w", err)
		}
	}
	if cfg.Inbound != "" {
		p.inbound = newSide(p, kindInbound, rt)
		p.inbound.app = &url.URL{Scheme: "http", Host: cfg.App}
		p.inbound.policy = cfg.failPolicy(InboundFailKey)
	}
	if cfg.Outbound != "" {
		p.outbound = newSide(p, kindOutbound, rt)
		p.outbound.upstreams = make(map[string]*upstream, len(cfg.Upstreams))
		for name, addr := range cfg.Upstreams {
			u := newUpstream(name, addr, cfg.Namespace)
			u.policy = cfg.failPolicy(name)
			p.outbound.upstreams[u.name] = u
		}
	}
	p.tcpm = newTCPMetrics(p.reg)
	for _, t := range cfg.TCP {
		p.tcp = append(p.tcp, newTCPListener(p, t))
	}
	return p, nil
}

func newTransport(h2c bool) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 nil, // never route through HTTP_PROXY from the environment
		DialContext:           d.DialContext,
		MaxIdleConns:          4 * maxIdleConnsPerHost,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		ExpectContinueTimeout: time.Second,
		// Pass bodies through as they are: no Accept-Encoding of our own.
		DisableCompression: true,
	}
	if h2c {
		var ps http.Protocols
		ps.SetUnencryptedHTTP2(true)
		t.Protocols = &ps
	}
	return t
}

// protocolSplit forwards gRPC over HTTP/2 without TLS (h2c), as gRPC needs,
// and everything else over HTTP/1.1, which every app speaks.
type protocolSplit struct{ h1, h2c http.RoundTripper }

func (t protocolSplit) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor == 2 && isGRPC(r) {
		return roundTripStream(t.h2c, r)
	}
	return t.h1.RoundTrip(r)
}

// setPeerHeaders names this workload in an inbound answer's headers.
func (p *Proxy) setPeerHeaders(h http.Header) {
	for i, v := range [...]string{p.cfg.Service, p.cfg.Namespace, p.cfg.Principal, p.cfg.UID, p.labelsHeader} {
		if v != "" {
			h.Set(peerHeaders[i], v)
		}
	}
}

func (p *Proxy) newServer(h http.Handler) *http.Server {
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetUnencryptedHTTP2(true) // gRPC callers use h2c with prior knowledge
	return &http.Server{
		Handler:           h,
		Protocols:         &ps,
		ReadHeaderTimeout: readHeaderTimeout,
		// net/http refuses larger heads itself with 431 (it allows 4 KiB
		// over this); the handler enforces the exact limit.
		MaxHeaderBytes: p.cfg.MaxRequestHeaderBytes,
		ErrorLog:       p.errLog,
	}
}

// Start opens the listeners and serves in the background.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.shutdown {
		return errors.New("proxy: already started")
	}
	var opened []net.Listener
	fail := func(err error) error {
		for _, ln := range opened {
			ln.Close()
		}
		return err
	}
	for _, s := range []*side{p.inbound, p.outbound} {
		if s == nil {
			continue
		}
		addr := p.cfg.Inbound
		if s.kind == kindOutbound {
			addr = p.cfg.Outbound
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("proxy: %s listener: %w", s.kind, err))
		}
		opened = append(opened, ln)
		s.ln = ln
		s.srv = p.newServer(s)
	}
	if err := p.listenTCP(); err != nil {
		return fail(err)
	}
	for _, l := range p.tcp {
		opened = append(opened, l.ln)
	}
	if p.cfg.Admin != "" {
		ln, err := net.Listen("tcp", p.cfg.Admin)
		if err != nil {
			return fail(fmt.Errorf("proxy: admin listener: %w", err))
		}
		p.adminLn = ln
		p.admin = &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: readHeaderTimeout, ErrorLog: p.errLog}
	}
	p.started = true
	p.routes.start()
	for _, s := range []*side{p.inbound, p.outbound} {
		if s != nil {
			go p.serve(s.kind, s.srv, s.ln)
		}
	}
	for _, l := range p.tcp {
		go l.serve()
	}
	if p.admin != nil {
		go p.serve("admin", p.admin, p.adminLn)
	}
	p.ready.Store(true)
	p.log.Info("proxy started", "service", p.cfg.Service, "namespace", p.cfg.Namespace,
		"inbound", p.InboundAddr(), "app", p.cfg.App, "outbound", p.OutboundAddr(),
		"upstreams", len(p.cfg.Upstreams), "mixer", p.cfg.Mixer, "admin", p.AdminAddr(),
		"fail_open", p.cfg.CheckFailOpen, "quota_prefetch_max", p.cfg.QuotaPrefetchMax,
		"trace_sampling", p.cfg.TraceSampling, "tcp", p.TCPAddrs())
	return nil
}

func (p *Proxy) serve(name string, srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		p.log.Error("listener failed", "listener", name, "err", err)
	}
}

func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.ready.Load() {
			writeText(w, http.StatusServiceUnavailable, "shutting down")
			return
		}
		writeText(w, http.StatusOK, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{ErrorLog: p.errLog}))
	mountPprof(mux)
	return mux
}

// mountPprof serves Go's profiles (net/http/pprof) under /debug/pprof/ to
// loopback callers only: a profile shows memory and code an operator on
// the machine may see, nobody else (403 otherwise, whatever address the
// admin listener is bound to).
func mountPprof(mux *http.ServeMux) {
	loopback := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ip, ok := remoteIP(r); !ok || !ip.IsLoopback() {
				writeText(w, http.StatusForbidden, "profiles are served to loopback callers only")
				return
			}
			h(w, r)
		})
	}
	mux.Handle("GET /debug/pprof/", loopback(pprof.Index))
	mux.Handle("GET /debug/pprof/cmdline", loopback(pprof.Cmdline))
	mux.Handle("GET /debug/pprof/profile", loopback(pprof.Profile))
	mux.Handle("GET /debug/pprof/symbol", loopback(pprof.Symbol))
	mux.Handle("POST /debug/pprof/symbol", loopback(pprof.Symbol))
	mux.Handle("GET /debug/pprof/trace", loopback(pprof.Trace))
}

func lnAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// InboundAddr is the inbound listener's address once started ("" if none).
func (p *Proxy) InboundAddr() string {
	if p.inbound == nil {
		return ""
	}
	return lnAddr(p.inbound.ln)
}

// OutboundAddr is the outbound listener's address once started ("" if none).
func (p *Proxy) OutboundAddr() string {
	if p.outbound == nil {
		return ""
	}
	return lnAddr(p.outbound.ln)
}

// AdminAddr is the admin listener's address once started ("" if none).
func (p *Proxy) AdminAddr() string { return lnAddr(p.adminLn) }

// Shutdown stops accepting, lets requests in flight finish (bounded by
// ctx), flushes their reports to the mixer, and closes the admin listener
// last so that metrics stay scrapeable while draining.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.shutdown {
		p.mu.Unlock()
		return nil
	}
	p.shutdown = true
	started := p.started
	p.mu.Unlock()
	p.ready.Store(false)
	p.log.Info("proxy shutting down")

	var errs []error
	if started {
		// Keep part of the time for the report flush: connections that
		// outlast the rest are cut, their requests still reported.
		lctx := ctx
		if dl, ok := ctx.Deadline(); ok {
			reserve := min(time.Until(dl)/4, 2*time.Second)
			var cancel context.CancelFunc
			lctx, cancel = context.WithDeadline(ctx, dl.Add(-reserve))
			defer cancel()
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range []*side{p.inbound, p.outbound} {
			if s == nil || s.srv == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.srv.Shutdown(lctx); err != nil {
					_ = s.srv.Close()
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s listener: %w", s.kind, err))
					mu.Unlock()
				}
			}()
		}
		for _, l := range p.tcp {
			wg.Go(func() {
				if err := l.shutdown(lctx); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("tcp listener %s: %w", l.listen, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	p.routes.stop(ctx)
	if err := p.mixer.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("mixer client: %w", err))
	}
	if p.admin != nil {
		if err := p.admin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin listener: %w", err))
		}
	}
	p.h1.CloseIdleConnections()
	p.h2c.CloseIdleConnections()
	if err := errors.Join(errs...); err != nil {
		p.log.Warn("proxy shut down with errors", "err", err)
		return err
	}
	p.log.Info("proxy stopped")
	return nil
}
