package jaeger

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/internal/rawotlp"
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
	export(ctx context.Context, spans []parsedSpan) (failed int, err error)
}

type metrics struct {
	sent    *prometheus.CounterVec
	failed  *prometheus.CounterVec
	retries *prometheus.CounterVec
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
		Help: "Spans jaeger handlers gave up on: the collector stayed unreachable or slow for the whole retry time, or refused them.",
	}, []string{"handler"})); err != nil {
		return nil, err
	}
	if m.retries, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_jaeger_send_retries_total",
		Help: "Sends of jaeger handlers retried after a backoff.",
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

// handler checks spans and hands them to a handlerkit.Batcher, which sends
// them from its own goroutine in batches of up to maxBatchSize, at least
// every flushInterval, retrying a failed batch with backoff. Report never
// waits for the collector.
type handler struct {
	name  string
	cfg   *Config
	log   *slog.Logger
	now   func() time.Time
	conn  *grpc.ClientConn
	m     *metrics
	batch *handlerkit.Batcher[parsedSpan]
	// raw batches otlp instances (rawotlp.go); nil unless protocol otlp.
	raw                   *rawotlp.Batcher
	spanQueued, rawQueued atomic.Int64
	// queued is m.queued of this handler, set on every Add.
	queued prometheus.Gauge

	closeOnce sync.Once
	closeErr  error
	// closing makes Close's last sends fail at once instead of retrying;
	// lastFailed is whether the latest attempt failed.
	closing    atomic.Bool
	lastFailed atomic.Bool

	failures handlerkit.FailureLog
}

var _ adapters.BatchReleaser = (*handler)(nil)

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
	h := &handler{name: set.Name, cfg: cfg, log: set.Logger, now: set.Now, conn: conn, m: m,
		failures: handlerkit.FailureLog{Interval: failureLogInterval}}
	opts := handlerkit.BatcherOptions{
		MaxBatchSize:  cfg.MaxBatchSize,
		FlushInterval: cfg.FlushInterval,
		MaxQueueSize:  cfg.MaxQueueSize,
		Timeout:       cfg.Timeout,
		Done:          h.done,
		Queued:        h.setSpanQueued,
	}
	opts.Retry = cfg.Retry.Retry()
	h.queued = m.queued.WithLabelValues(h.name)
	h.queued.Set(0)
	h.batch = handlerkit.NewBatcher(opts, func(ctx context.Context, batch []parsedSpan) (int, error) {
		failed, err := exp.export(ctx, batch)
		h.lastFailed.Store(err != nil)
		if err != nil && h.closing.Load() {
			err = handlerkit.Permanent(err) // shutting down: no retries
		}
		return failed, err
	})
	h.raw = h.newRawBatcher()
	set.Logger.Info("sending spans to Jaeger", "endpoint", cfg.Endpoint, "protocol", cfg.Protocol)
	return h, nil
}

// writeBufferSize is the connection's write buffer: gRPC writes to the
// socket when it is full or when it has nothing more to send. A batch of
// spans is some 100 KiB; gRPC's default of 32 KiB writes it in several
// system calls, each waking the collector's reader.
const writeBufferSize = 256 << 10

// dial makes the connection lazily: a collector that is down when the
// handler is created (or goes down later) costs failed sends, counted, not
// a failed config load. Reconnects back off up to 5s, not gRPC's default
// 2 minutes, so spans flow soon after the collector is back.
func dial(cfg *Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if cfg.TLS.Enabled {
		tc, err := cfg.TLS.Config()
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
		grpc.WithWriteBufferSize(writeBufferSize),
	)
}

// ReportReleasesBatch says Report keeps nothing of the slice it is
// handed (adapters.BatchReleaser).
func (h *handler) ReportReleasesBatch() {}

// Report parses the spans' ids and buffers the spans with them; sending
// happens on the Batcher's goroutine.
func (h *handler) Report(_ context.Context, insts []template.Instance) error {
	// The Batcher copies the spans it takes: one array serves every
	// Report.
	scratch := parseScratch.Get().(*[]parsedSpan)
	spans := (*scratch)[:0]
	defer func() {
		clear(spans) // the pool must not keep spans alive
		*scratch = spans[:0]
		parseScratch.Put(scratch)
	}()
	invalid, wrong := 0, 0
	var raws []*template.OTLP
	for _, inst := range insts {
		if r, ok := inst.(*template.OTLP); ok {
			raws = append(raws, r)
			continue
		}
		s, ok := inst.(*template.TraceSpan)
		if !ok {
			wrong++
			continue
		}
		trace, id, parent, err := ids(s)
		if err != nil {
			invalid++
			h.log.Debug("span dropped", "instance", s.Name, "error", err)
			continue
		}
		spans = append(spans, parsedSpan{s: s, trace: trace, id: id, parent: parent})
	}
	h.drop(reasonInvalid, invalid)
	h.drop(reasonTemplate, wrong)
	h.drop(reasonQueueFull, h.batch.Add(spans))
	h.reportRaw(raws)
	return nil
}

// parseScratch holds the parsed spans of a Report until the Batcher has
// them.
var parseScratch = sync.Pool{New: func() any { return new([]parsedSpan) }}

func (h *handler) drop(reason string, n int) {
	if n > 0 {
		h.m.dropped.WithLabelValues(h.name, reason).Add(float64(n))
	}
}

// done counts a batch's final outcome and logs failures: a warning when
// the collector starts failing and then once per interval, an info line
// when it recovers.
func (h *handler) done(n, failed, retries int, err error) {
	if sent := n - failed; sent > 0 {
		h.m.sent.WithLabelValues(h.name).Add(float64(sent))
	}
	if failed > 0 {
		h.m.failed.WithLabelValues(h.name).Add(float64(failed))
	}
	if retries > 0 {
		h.m.retries.WithLabelValues(h.name).Add(float64(retries))
	}
	switch level, since := h.failures.Record(h.now(), failed, err); level {
	case handlerkit.LogRecovered:
		h.log.Info("collector accepts spans again", "endpoint", h.cfg.Endpoint, "failed_meanwhile", since)
	case handlerkit.LogWarning:
		h.log.Warn("sending spans failed; they are dropped", "endpoint", h.cfg.Endpoint, "spans", failed,
			"retries", retries, "failed_since_first_failure", since, "error", err)
	case handlerkit.LogDebug:
		h.log.Debug("sending spans failed", "endpoint", h.cfg.Endpoint, "spans", failed, "error", err)
	}
}

// Close sends what is buffered, without retries, until ctx ends; the rest
// is dropped and counted. When the collector is failing already it sends
// nothing: waiting for a collector that is down would only hold up the
// mixer's shutdown or reload.
func (h *handler) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		h.closing.Store(true)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if h.lastFailed.Load() {
			cancel()
		}
		h.drop(reasonShutdown, h.batch.Close(ctx)+h.closeRaw(ctx))
		if err := h.conn.Close(); err != nil {
			h.closeErr = fmt.Errorf("%s: close: %w", Name, err)
		}
	})
	return h.closeErr
}
