package jaeger

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

// Reasons spans are dropped, the reason label of
// sidemix_jaeger_spans_dropped_total.
const (
	reasonQueueFull = "queue_full" // maxQueueSize spans were waiting already
	reasonInvalid   = "invalid"    // malformed trace or span id
	reasonTemplate  = "template"   // not a tracespan instance
	reasonShutdown  = "shutdown"   // still buffered when Close ran out of time
)

// failureLogInterval spaces the warnings of a collector that keeps
// failing: one when sends start failing, then one per interval; the rest
// goes to debug and the failed counter.
const failureLogInterval = time.Minute

// exporter sends spans to the collector in one protocol.
type exporter interface {
	// export sends spans, grouped by service; it returns how many of them
	// were not accepted, and why.
	export(ctx context.Context, spans []*template.TraceSpan) (failed int, err error)
}

type metrics struct {
	sent    *prometheus.CounterVec
	failed  *prometheus.CounterVec
	dropped *prometheus.CounterVec
	queued  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.sent, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_jaeger_spans_sent_total",
		Help: "Spans jaeger handlers delivered to the collector.",
	}, []string{"handler"})); err != nil {
		return nil, err
	}
	if m.failed, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_jaeger_spans_failed_total",
		Help: "Spans jaeger handlers could not deliver: the collector was unreachable, timed out or refused them. They are not retried.",
	}, []string{"handler"})); err != nil {
		return nil, err
	}
	if m.dropped, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_jaeger_spans_dropped_total",
		Help: "Spans jaeger handlers dropped before sending, by reason (queue_full, invalid, template, shutdown).",
	}, []string{"handler", "reason"})); err != nil {
		return nil, err
	}
	if m.queued, err = handlerkit.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sidemix_jaeger_queue_spans",
		Help: "Spans a jaeger handler holds, waiting to be sent.",
	}, []string{"handler"})); err != nil {
		return nil, err
	}
	return &m, nil
}

// handler buffers spans and sends them from its own goroutine, in batches
// of up to maxBatchSize, at least every flushInterval. Report never waits
// for the collector.
type handler struct {
	name string
	cfg  *Config
	log  *slog.Logger
	now  func() time.Time
	exp  exporter
	conn *grpc.ClientConn
	m    *metrics

	mu  sync.Mutex
	buf []*template.TraceSpan

	kick chan struct{} // a full batch is waiting
	stop chan struct{} // closed by Close
	done chan struct{} // closed when run has returned

	ctx    context.Context // cancelled when Close gives up
	cancel context.CancelFunc

	// Only run's goroutine (and Close, after it) touch these.
	failing     bool
	lastWarning time.Time
	failedSince int
}

var _ adapters.Reporter = (*handler)(nil)

func newHandler(_ context.Context, set adapters.Settings, c adapters.Config) (adapters.Handler, error) {
	set = handlerkit.Defaults(set)
	cfg, err := handlerkit.Params[Config](Name, c)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(set.Registerer)
	if err != nil {
		return nil, err
	}
	conn, err := dial(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	var exp exporter
	switch cfg.Protocol {
	case ProtocolOTLP:
		exp = newOTLPExporter(conn, cfg.ProcessTags)
	default:
		exp = newGRPCExporter(conn, cfg.ProcessTags)
	}
	return start(set, cfg, m, exp, conn), nil
}

func start(set adapters.Settings, cfg *Config, m *metrics, exp exporter, conn *grpc.ClientConn) *handler {
	ctx, cancel := context.WithCancel(context.Background())
	h := &handler{
		name: set.Name, cfg: cfg, log: set.Logger, now: set.Now, exp: exp, conn: conn, m: m,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	m.queued.WithLabelValues(h.name).Set(0)
	go h.run()
	return h
}

// dial makes the connection lazily: a collector that is down when the
// handler is created (or goes down later) costs failed sends, counted, not
// a failed config load. Reconnects back off up to 5s, not gRPC's default
// 2 minutes, so spans flow soon after the collector is back.
func dial(cfg *Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if cfg.TLS.Enabled {
		tc, err := cfg.TLS.config()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		creds = credentials.NewTLS(tc)
	}
	bo := backoff.DefaultConfig
	bo.MaxDelay = 5 * time.Second
	return grpc.NewClient("passthrough:///"+cfg.Endpoint,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: cfg.Timeout}),
	)
}

// Report validates and buffers the spans; sending happens on the
// handler's goroutine.
func (h *handler) Report(_ context.Context, insts []template.Instance) error {
	spans := make([]*template.TraceSpan, 0, len(insts))
	invalid, wrong := 0, 0
	for _, inst := range insts {
		s, ok := inst.(*template.TraceSpan)
		if !ok {
			wrong++
			continue
		}
		if _, _, _, err := ids(s); err != nil {
			invalid++
			h.log.Debug("span dropped", "instance", s.Name, "error", err)
			continue
		}
		spans = append(spans, s)
	}
	if invalid > 0 {
		h.m.dropped.WithLabelValues(h.name, reasonInvalid).Add(float64(invalid))
	}
	if wrong > 0 {
		h.m.dropped.WithLabelValues(h.name, reasonTemplate).Add(float64(wrong))
	}
	h.mu.Lock()
	room := h.cfg.MaxQueueSize - len(h.buf)
	full := 0
	if len(spans) > room {
		full = len(spans) - room
		spans = spans[:room]
	}
	h.buf = append(h.buf, spans...)
	n := len(h.buf)
	h.m.queued.WithLabelValues(h.name).Set(float64(n))
	h.mu.Unlock()
	if full > 0 {
		h.m.dropped.WithLabelValues(h.name, reasonQueueFull).Add(float64(full))
	}
	if n >= h.cfg.MaxBatchSize {
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

func (h *handler) run() {
	defer close(h.done)
	tick := time.NewTicker(h.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-h.kick:
			h.flush(h.ctx, false)
		case <-tick.C:
			h.flush(h.ctx, true)
		case <-h.stop:
			return
		}
	}
}

// flush sends full batches, and with all the partial one left too.
func (h *handler) flush(ctx context.Context, all bool) {
	for ctx.Err() == nil {
		h.mu.Lock()
		n := len(h.buf)
		if n == 0 || (!all && n < h.cfg.MaxBatchSize) {
			h.mu.Unlock()
			return
		}
		take := min(n, h.cfg.MaxBatchSize)
		batch := slices.Clone(h.buf[:take])
		clear(h.buf[:take]) // let the sent spans be collected
		h.buf = append(h.buf[:0], h.buf[take:]...)
		h.m.queued.WithLabelValues(h.name).Set(float64(len(h.buf)))
		h.mu.Unlock()
		h.send(ctx, batch)
	}
}

func (h *handler) send(ctx context.Context, batch []*template.TraceSpan) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	failed, err := h.exp.export(ctx, batch)
	cancel()
	if sent := len(batch) - failed; sent > 0 {
		h.m.sent.WithLabelValues(h.name).Add(float64(sent))
	}
	if failed > 0 {
		h.m.failed.WithLabelValues(h.name).Add(float64(failed))
	}
	now := h.now()
	switch {
	case err == nil && h.failing:
		h.failing = false
		h.log.Info("collector accepts spans again", "endpoint", h.cfg.Endpoint, "failed_meanwhile", h.failedSince)
	case err != nil && (!h.failing || now.Sub(h.lastWarning) >= failureLogInterval):
		if !h.failing {
			h.failedSince = 0
		}
		h.failing = true
		h.failedSince += failed
		h.lastWarning = now
		h.log.Warn("sending spans failed; they are dropped", "endpoint", h.cfg.Endpoint, "spans", failed, "failed_since_first_failure", h.failedSince, "error", err)
	case err != nil:
		h.failedSince += failed
		h.log.Debug("sending spans failed", "endpoint", h.cfg.Endpoint, "spans", failed, "error", err)
	}
}

// Close stops the goroutine, sends what is buffered (until ctx ends; the
// rest is dropped and counted) and closes the connection.
func (h *handler) Close(ctx context.Context) error {
	select {
	case <-h.stop:
		return nil
	default:
	}
	close(h.stop)
	stopped := context.AfterFunc(ctx, h.cancel) // abandon a send in flight
	<-h.done
	h.flush(ctx, true)
	stopped()
	h.cancel()
	h.mu.Lock()
	left := len(h.buf)
	h.buf = nil
	h.mu.Unlock()
	if left > 0 {
		h.m.dropped.WithLabelValues(h.name, reasonShutdown).Add(float64(left))
	}
	h.m.queued.WithLabelValues(h.name).Set(0)
	if h.conn != nil {
		return h.conn.Close()
	}
	return nil
}
