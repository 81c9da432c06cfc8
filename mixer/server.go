package mixer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/internal/fswatch"
	"github.com/sidemix/sidemix/internal/vtcodec"
	"github.com/sidemix/sidemix/policy"
)

// Server is the mixer: the gRPC Mixer API over the active config snapshot,
// the config watcher and the admin HTTP endpoints.
type Server struct {
	cfg  Config
	log  *slog.Logger
	reg  *prometheus.Registry
	m    *metrics
	dict *attribute.Dictionary
	// durations holds the wire form of the valid durations answers carry.
	durations durationCache
	// filesDigest summarizes the config files as they were just before the
	// initial load, so a change made before the watcher runs is still seen.
	filesDigest string

	active     atomic.Pointer[state]
	reloadMu   sync.Mutex // serializes reloads with each other and with Shutdown
	closed     bool       // guarded by reloadMu: no more reloads
	lastReload atomic.Pointer[reloadStatus]
	retiring   sync.WaitGroup // states being retired after a reload

	mu       sync.Mutex // guards the lifecycle fields below
	started  bool
	stopping bool
	grpcSrv  *grpc.Server
	grpcLn   net.Listener
	health   *health.Server
	adminSrv *http.Server
	adminLn  net.Listener
	// OTLP receivers; nil when disabled.
	otlpGRPCSrv *grpc.Server
	otlpGRPCLn  net.Listener
	otlpHTTPSrv *http.Server
	otlpHTTPLn  net.Listener
	stopWatch   context.CancelFunc
	watchDone   chan struct{}
	ready       atomic.Bool
}

// reloadStatus is the outcome of the last config load, shown on
// /debug/config.
type reloadStatus struct {
	Time    time.Time `json:"time"`
	Success bool      `json:"success"`
	Digest  string    `json:"digest,omitempty"`
	Errors  []string  `json:"errors,omitempty"`
	err     error
}

// New loads the config and creates its handlers. An invalid config is an
// error (a *policy.LoadError listing every issue, wrapped); a handler whose
// adapter fails to create it is not: its rules fail per their failPolicy
// until a reload creates it.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mixer config: %w", err)
	}
	s := &Server{
		cfg:  cfg,
		log:  cfg.Logger,
		reg:  prometheus.NewRegistry(),
		dict: attribute.DefaultDictionary(),
	}
	s.m = newMetrics(s.reg, s.queueLengths)
	s.filesDigest = fswatch.Digest(cfg.ConfigPaths)
	snap, err := policy.Load(cfg.ConfigPaths, policy.Options{Adapters: cfg.Adapters, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("loading %v: %w", cfg.ConfigPaths, err)
	}
	s.active.Store(s.newState(snap))
	s.lastReload.Store(&reloadStatus{Time: cfg.Now(), Success: true, Digest: snap.Digest()})
	return s, nil
}

// Registry is the mixer's own metrics registry, served on /metrics; the
// handlers register their self metrics on it too.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Snapshot is the active config.
func (s *Server) Snapshot() *policy.Snapshot { return s.active.Load().snap }

// LastReloadError is the error of the last config load when it failed
// (a *policy.LoadError naming file and line of every issue), nil when it
// succeeded.
func (s *Server) LastReloadError() error {
	if st := s.lastReload.Load(); st != nil && !st.Success {
		return st.err
	}
	return nil
}

// GRPCAddr is the address the Mixer API listens on, once started.
func (s *Server) GRPCAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return lnAddr(s.grpcLn, s.cfg.GRPCAddr)
}

// AdminAddr is the address of the admin endpoints, once started.
func (s *Server) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return lnAddr(s.adminLn, s.cfg.AdminAddr)
}

// lnAddr is the address ln listens on, or the configured one before it
// does.
func lnAddr(ln net.Listener, configured string) string {
	if ln == nil {
		return configured
	}
	return ln.Addr().String()
}

// Start listens on the gRPC and admin addresses and starts watching the
// config paths. It returns once both listen.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopping {
		return errors.New("mixer: Start called twice or after Shutdown")
	}
	gl, err := net.Listen("tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("mixer: grpc listener: %w", err)
	}
	al, err := net.Listen("tcp", s.cfg.AdminAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("mixer: admin listener: %w", err)
	}
	ogl, ohl, err := s.listenOTLP()
	if err != nil {
		gl.Close()
		al.Close()
		return err
	}
	s.started = true
	s.grpcLn, s.adminLn = gl, al
	s.otlpGRPCLn, s.otlpHTTPLn = ogl, ohl

	s.grpcSrv = grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.recoverUnary),
		grpc.MaxRecvMsgSize(maxGRPCMessageSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Requests run on long-lived goroutines whose stacks have grown
		// already, instead of a fresh goroutine per request that grows its
		// stack from the minimum every time; gRPC starts a goroutine when
		// every worker is busy.
		grpc.NumStreamWorkers(streamWorkers),
		// A Report batch is ~200 kB (1000 bags): windows that take one
		// whole spare the sender stalls and both sides the window
		// updates mid-message. Windows are credit, not buffers: a Check
		// connection costs no more for them.
		grpc.InitialWindowSize(reportWindow),
		grpc.InitialConnWindowSize(2*reportWindow),
		// The Mixer API's messages through their generated vtprotobuf
		// code, a Check request's strings pointing into its body (they
		// are not kept past the Check but for the deduplication id, which
		// is cloned; a Report's are copied, many to an array
		// (reportBody): instances queued for report handlers keep them);
		// the health service's messages through protobuf-go.
		grpc.ForceServerCodecV2(vtcodec.New((*mixerv1.CheckRequest)(nil))),
	)
	svc := &service{s: s}
	s.grpcSrv.RegisterService(svc.mixerDesc(), svc)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpcSrv, s.health)
	s.adminSrv = &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.stopWatch, s.watchDone = cancel, make(chan struct{})
	go s.watch(ctx, s.watchDone)

	go func() {
		if err := s.grpcSrv.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc server stopped", "error", err)
		}
	}()
	go func() {
		if err := s.adminSrv.Serve(al); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "error", err)
		}
	}()
	s.serveOTLP()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(mixerv1.Mixer_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.ready.Store(true)

	st := s.active.Load()
	h, i, r := st.snap.Counts()
	s.log.Info("mixer started", "grpc", gl.Addr().String(), "admin", al.Addr().String(),
		"otlpGRPC", addrOf(ogl), "otlpHTTP", addrOf(ohl),
		"config", s.cfg.ConfigPaths, "digest", st.snap.Digest(), "handlers", h, "instances", i, "rules", r)
	return nil
}

// Shutdown stops accepting requests, lets those in flight finish, drains
// the report queues into their handlers and closes the handlers. When ctx
// ends first, in-flight calls are cut off and what is still queued is
// dropped (counted with reason "shutdown").
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	started := s.started
	s.mu.Unlock()

	s.ready.Store(false)
	s.log.Info("mixer shutting down")
	var errs []error
	if started {
		s.health.Shutdown()
		stopped := make(chan struct{})
		go func() {
			s.grpcSrv.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			s.grpcSrv.Stop()
			<-stopped
			errs = append(errs, fmt.Errorf("grpc: requests cut off: %w", ctx.Err()))
		}
		errs = append(errs, s.stopOTLP(ctx)...)
		s.stopWatch()
		<-s.watchDone
	}

	s.reloadMu.Lock()
	s.closed = true
	s.reloadMu.Unlock()

	retired := make(chan struct{})
	go func() {
		s.retiring.Wait()
		close(retired)
	}()
	select {
	case <-retired:
	case <-ctx.Done():
	}
	if err := s.active.Load().retire(ctx); err != nil {
		errs = append(errs, err)
	}

	if started {
		if err := s.adminSrv.Shutdown(ctx); err != nil {
			s.adminSrv.Close()
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		s.log.Warn("mixer stopped", "error", err)
	} else {
		s.log.Info("mixer stopped")
	}
	return err
}

// addrOf is a listener's address, "" for none (a disabled receiver).
func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func (s *Server) queueLengths(fn func(handler string, n int)) {
	st := s.active.Load()
	if st == nil {
		return
	}
	for _, h := range st.order {
		if h.queue != nil {
			fn(h.name, h.queue.len())
		}
	}
}

// recoverUnary turns a panic in a request into an Internal error instead of
// a crashed mixer.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("request panicked", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
		}
	}()
	return handler(ctx, req)
}

// streamWorkers is how many goroutines serve the Mixer API's requests: as
// many as a busy mixer has Checks waiting on a backend at once.
const streamWorkers = 64

// service implements mixerv1.MixerServer.
type service struct {
	mixerv1.UnimplementedMixerServer
	s *Server

	// What Check's handler passes the interceptor (mixerDesc).
	checkInfo  *grpc.UnaryServerInfo
	checkUnary grpc.UnaryHandler
}

var _ mixerv1.MixerServer = (*service)(nil)

func codeName(c int32) string {
	if n, ok := rpccode.Code_name[c]; ok {
		return n
	}
	return fmt.Sprint(c)
}

func (g *service) Check(ctx context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	s := g.s
	start := time.Now()
	defer func() { s.m.checkDuration.Observe(time.Since(start).Seconds()) }()

	if err := checkRequestUTF8(req); err != nil {
		s.m.checkAnswered(int32(codes.InvalidArgument))
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	// The request's strings point into its body (internal/vtcodec); the
	// deduplication id outlives the Check in the quota handlers' records
	// and would keep the whole body alive with it.
	if id := req.GetDeduplicationId(); id != "" {
		req.DeduplicationId = strings.Clone(id)
	}
	attrs := req.GetAttributes()
	if attrs == nil {
		attrs = &mixerv1.CompressedAttributes{}
	}
	bag, err := s.dict.Decode(attrs, req.GetGlobalWordCount())
	if err != nil {
		s.m.checkAnswered(int32(codes.InvalidArgument))
		return nil, status.Errorf(codes.InvalidArgument, "attributes: %v", err)
	}
	st := s.acquire()
	defer st.release()
	if err := st.snap.Manifest().CheckBag(bag); err != nil {
		s.m.checkAnswered(int32(codes.InvalidArgument))
		return nil, status.Errorf(codes.InvalidArgument, "attributes: %v", err)
	}
	resp := s.check(ctx, st, bag, req)
	s.m.checkAnswered(resp.Precondition.Status.Code)
	return resp, nil
}

func (g *service) Report(ctx context.Context, req *mixerv1.ReportRequest) (*mixerv1.ReportResponse, error) {
	return g.report(ctx, req, reportOptions{})
}

// reportOptions say what Report may skip or do to a request that
// reportHandler decoded.
type reportOptions struct {
	// owned: the request is reportHandler's pooled one; each bag's message
	// is reset as soon as the bag is evaluated, while it is in the CPU's
	// cache, instead of all of them when the request goes back to the
	// pool.
	owned bool
	// utf8Checked: reportBody checked the words; utf8Err is its verdict.
	utf8Checked bool
	utf8Err     error
}

func (g *service) report(ctx context.Context, req *mixerv1.ReportRequest, opts reportOptions) (*mixerv1.ReportResponse, error) {
	s := g.s
	s.m.reportRequests.Inc()
	err := opts.utf8Err
	if !opts.utf8Checked {
		err = reportRequestUTF8(req)
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	// Each bag is decoded as it is evaluated, into the memory of the bag
	// before the last: a whole batch decoded first outgrows the CPU's
	// caches. The batch is checked first, so a malformed one is refused
	// whole. Nothing keeps a bag past its evaluation: instances hold the
	// values, not the bag.
	st := s.acquire()
	defer st.release()
	// A bag whose values contradict the manifest cannot be evaluated; it is
	// counted and skipped, the rest of the batch is not lost for it. The
	// caller is not told: retrying the batch would only duplicate the rest.
	// After a bag that passed, only what the next one changed is checked,
	// and the expressions that read none of it keep their values.
	bags, err := s.dict.DecodeBatchChecked(req, st.snap.Manifest())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "attributes: %v", err)
	}
	msgs := req.GetAttributes()
	s.m.reportBags.Add(float64(len(msgs)))
	seq := st.snap.NewSequence(policy.VarietyReport)
	defer seq.Close()
	d := s.newReportDispatcher(st)
	defer d.done()
	i := 0
	for b, c := range bags {
		if c.Err != nil {
			s.m.reportBagsRejected.Inc()
			s.log.Debug("report bag rejected", "error", c.Err)
			seq.Reset()
		} else {
			d.add(seq.Evaluate(b, c.Names))
		}
		if opts.owned {
			// The bag holds copies (reportBody's arrays), not the
			// message's memory; the next bag is decoded from its own.
			msgs[i].ResetVT()
		}
		i++
	}
	if opts.owned {
		// All reset: ReturnToVTPool need not visit them again. They stay
		// in the slice's array, where the next request's decoding reuses
		// them.
		req.Attributes = msgs[:0]
	}
	return &mixerv1.ReportResponse{}, nil
}
