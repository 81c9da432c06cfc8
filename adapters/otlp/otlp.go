package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/internal/rawotlp"
	"github.com/sidemix/sidemix/adapters/internal/spans"
	"github.com/sidemix/sidemix/adapters/template"
)

// Signals, as in the signal label of the self metrics.
const (
	signalTraces = "traces"
	signalLogs   = "logs"
)

// Reasons of sidemix_otlp_dropped_total.
const (
	reasonInvalid   = "invalid"        // a span with an invalid trace, span or parent id
	reasonTemplate  = "wrong_template" // neither a tracespan nor a logentry
	reasonQueueFull = "queue_full"
	reasonShutdown  = "shutdown"
)

// failureLogInterval spaces the warnings of an endpoint that keeps failing.
const failureLogInterval = 10 * time.Second

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
		Name: "sidemix_otlp_sent_total",
		Help: "Spans (signal traces) and log records (signal logs) the OTLP endpoint accepted, by handler.",
	}, []string{"handler", "signal"})); err != nil {
		return nil, err
	}
	if m.failed, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_otlp_failed_total",
		Help: "Spans and log records the OTLP endpoint did not accept (after retries, or rejected as invalid), by handler.",
	}, []string{"handler", "signal"})); err != nil {
		return nil, err
	}
	if m.retries, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_otlp_retries_total",
		Help: "Sends of a batch repeated after a failure, by handler.",
	}, []string{"handler", "signal"})); err != nil {
		return nil, err
	}
	if m.dropped, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_otlp_dropped_total",
		Help: "Instances otlp handlers never sent, by reason (invalid, wrong_template, queue_full, shutdown).",
	}, []string{"handler", "reason"})); err != nil {
		return nil, err
	}
	if m.queued, err = handlerkit.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sidemix_otlp_queued",
		Help: "Spans and log records buffered by otlp handlers, waiting to be sent.",
	}, []string{"handler", "signal"})); err != nil {
		return nil, err
	}
	return &m, nil
}

// handler converts tracespan and logentry instances with adapters/internal/
// spans and sends them from two batchers, one per signal. Report never
// waits for the endpoint.
type handler struct {
	name string
	cfg  *Config
	log  *slog.Logger
	now  func() time.Time
	m    *metrics
	exp  exporter

	traces *handlerkit.Batcher[*template.TraceSpan]
	logs   *handlerkit.Batcher[*template.LogEntry]
	// rawTraces and rawLogs batch and send otlp instances (raw.go).
	rawTraces, rawLogs *rawotlp.Batcher

	closeOnce sync.Once
	closeErr  error

	failures handlerkit.FailureLog // shared by both batchers' goroutines
}

var _ adapters.BatchReleaser = (*handler)(nil)

func newHandler(set adapters.Settings, c adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	cfg, err := handlerkit.Params[Config](Name, c)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(set.Registerer)
	if err != nil {
		return nil, err
	}
	var exp exporter
	switch cfg.Protocol {
	case ProtocolHTTP:
		exp, err = newHTTPExporter(cfg)
	default:
		exp, err = newGRPCExporter(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	h := &handler{name: set.Name, cfg: cfg, log: set.Logger, now: set.Now, m: m, exp: exp,
		failures: handlerkit.FailureLog{Interval: failureLogInterval}}
	h.traces = handlerkit.NewBatcher(h.batcherOptions(signalTraces), func(ctx context.Context, batch []*template.TraceSpan) (int, error) {
		td, _ := spans.Traces(batch) // ids were checked by Report
		return exp.traces(ctx, td)
	})
	h.logs = handlerkit.NewBatcher(h.batcherOptions(signalLogs), func(ctx context.Context, batch []*template.LogEntry) (int, error) {
		return exp.logs(ctx, spans.Logs(batch))
	})
	h.rawTraces, h.rawLogs = h.newRawBatcher(signalTraces), h.newRawBatcher(signalLogs)
	set.Logger.Info("exporting over OTLP", "endpoint", cfg.Endpoint, "protocol", cfg.Protocol)
	return h, nil
}

func (h *handler) batcherOptions(signal string) handlerkit.BatcherOptions {
	o := handlerkit.BatcherOptions{
		MaxBatchSize:  h.cfg.MaxBatchSize,
		FlushInterval: h.cfg.FlushInterval,
		MaxQueueSize:  h.cfg.MaxQueueSize,
		Timeout:       h.cfg.Timeout,
		Done:          func(n, failed, retries int, err error) { h.done(signal, n, failed, retries, err) },
		Queued:        func(n int) { h.m.queued.WithLabelValues(h.name, signal).Set(float64(n)) },
	}
	o.Retry = h.cfg.Retry.Retry()
	h.m.queued.WithLabelValues(h.name, signal).Set(0)
	return o
}

// ReportReleasesBatch says Report keeps nothing of the slice it is
// handed (adapters.BatchReleaser).
func (h *handler) ReportReleasesBatch() {}

// Report sorts the instances by signal and buffers them.
func (h *handler) Report(_ context.Context, insts []template.Instance) error {
	var ts []*template.TraceSpan
	var ls []*template.LogEntry
	var rt, rl []*template.OTLP
	invalid, wrong := 0, 0
	for _, inst := range insts {
		switch x := inst.(type) {
		case *template.TraceSpan:
			if err := checkIDs(x); err != nil {
				invalid++
				h.log.Debug("span dropped", "instance", x.Name, "error", err)
				continue
			}
			ts = append(ts, x)
		case *template.LogEntry:
			ls = append(ls, x)
		case *template.OTLP:
			switch x.Signal {
			case template.SignalTraces:
				rt = append(rt, x)
			case template.SignalLogs:
				rl = append(rl, x)
			default:
				wrong++
			}
		default:
			wrong++
		}
	}
	h.drop(reasonInvalid, invalid)
	h.drop(reasonTemplate, wrong)
	h.drop(reasonQueueFull, h.traces.Add(ts)+h.logs.Add(ls)+h.rawTraces.Add(rt)+h.rawLogs.Add(rl))
	return nil
}

// checkIDs rejects the spans spans.Traces would leave out, so that a batch
// holds only spans that are sent.
func checkIDs(s *template.TraceSpan) error {
	if _, err := spans.ParseTraceID(s.TraceID); err != nil {
		return fmt.Errorf("traceId: %w", err)
	}
	if _, err := spans.ParseSpanID(s.SpanID); err != nil {
		return fmt.Errorf("spanId: %w", err)
	}
	if s.ParentSpanID != "" {
		if _, err := spans.ParseSpanID(s.ParentSpanID); err != nil {
			return fmt.Errorf("parentSpanId: %w", err)
		}
	}
	return nil
}

func (h *handler) drop(reason string, n int) {
	if n > 0 {
		h.m.dropped.WithLabelValues(h.name, reason).Add(float64(n))
	}
}

// done counts a batch's outcome and logs failures: a warning when the
// endpoint starts failing and then once per interval, an info line when it
// recovers.
func (h *handler) done(signal string, n, failed, retries int, err error) {
	if sent := n - failed; sent > 0 {
		h.m.sent.WithLabelValues(h.name, signal).Add(float64(sent))
	}
	if failed > 0 {
		h.m.failed.WithLabelValues(h.name, signal).Add(float64(failed))
	}
	if retries > 0 {
		h.m.retries.WithLabelValues(h.name, signal).Add(float64(retries))
	}
	switch level, since := h.failures.Record(h.now(), failed, err); level {
	case handlerkit.LogRecovered:
		h.log.Info("OTLP endpoint accepts data again", "endpoint", h.cfg.Endpoint, "failed_meanwhile", since)
	case handlerkit.LogWarning:
		h.log.Warn("OTLP export failed; the batch is dropped", "endpoint", h.cfg.Endpoint, "signal", signal,
			"items", failed, "retries", retries, "failed_since_first_failure", since, "error", err)
	case handlerkit.LogDebug:
		h.log.Debug("OTLP export failed", "endpoint", h.cfg.Endpoint, "signal", signal, "items", failed, "error", err)
	}
}

// Close sends what is buffered (until ctx ends; the rest is dropped and
// counted) and closes the connection.
func (h *handler) Close(ctx context.Context) error {
	h.closeOnce.Do(func() { h.closeErr = h.close(ctx) })
	return h.closeErr
}

func (h *handler) close(ctx context.Context) error {
	var wg sync.WaitGroup
	var dt, dl, drt, drl int
	wg.Add(4)
	go func() { defer wg.Done(); dt = h.traces.Close(ctx) }()
	go func() { defer wg.Done(); dl = h.logs.Close(ctx) }()
	go func() { defer wg.Done(); drt = h.rawTraces.Close(ctx) }()
	go func() { defer wg.Done(); drl = h.rawLogs.Close(ctx) }()
	wg.Wait()
	h.drop(reasonShutdown, dt+dl+drt+drl)
	var errs []error
	if err := h.exp.close(); err != nil {
		errs = append(errs, fmt.Errorf("%s: close: %w", Name, err))
	}
	return errors.Join(errs...)
}
