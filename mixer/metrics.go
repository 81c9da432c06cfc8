package mixer

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Reasons of dropped report instances and dispatch errors.
const (
	reasonQueueFull    = "queue_full"
	reasonHandlerError = "handler_error"
	reasonNoHandler    = "no_handler"
	reasonShutdown     = "shutdown"
	reasonTimeout      = "timeout"
	reasonCanceled     = "canceled"
	reasonUnavailable  = "unavailable"
	reasonWrongRole    = "wrong_role"
)

// Reasons of sidemix_mixer_denials_total: a handler refused (policy), a
// quota was exhausted (quota), a handler failed and its rule fails closed
// (unavailable) or open (fail_open: the request went through).
const (
	denyPolicy      = "policy"
	denyQuota       = "quota"
	denyUnavailable = "unavailable"
	denyFailOpen    = "fail_open"
)

// Roles of sidemix_mixer_handler_duration_seconds.
const (
	roleCheck = "check"
	roleQuota = "quota"
)

// Results of sidemix_mixer_quota_allocations_total.
const (
	allocGranted = "granted"
	allocDenied  = "denied"
	allocError   = "error"
)

// handlerBuckets span a cache lookup to a slow remote backend.
var handlerBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// metrics are the mixer's self metrics, on its own registry.
type metrics struct {
	checkRequests      *prometheus.CounterVec
	checkCodes         [17]atomic.Pointer[prometheus.Counter] // checkRequests by code, resolved on first use
	checkDuration      prometheus.Histogram
	reportRequests     prometheus.Counter
	reportBags         prometheus.Counter
	reportBagsRejected prometheus.Counter
	dispatchErrors     *prometheus.CounterVec
	dropped            *prometheus.CounterVec
	dispatched         *prometheus.CounterVec
	reloads            *prometheus.CounterVec
	lastReloadSuccess  prometheus.Gauge
	evalErrors         *prometheus.CounterVec
	handlerCreateFails *prometheus.CounterVec
	otlpReceived       *prometheus.CounterVec
	otlpTraces         otlpCounters // otlpReceived's series, resolved once
	otlpLogs           otlpCounters

	// Per rule and handler. Labels carry config names only (rules,
	// handlers, quota instances) and fixed reasons, so their number is
	// bounded by the config.
	ruleChecks       *prometheus.CounterVec
	denials          *prometheus.CounterVec
	shadowDenials    *prometheus.CounterVec
	handlerDuration  *prometheus.HistogramVec
	quotaAllocations *prometheus.CounterVec
	quotaGranted     *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, queueLengths func(fn func(handler string, n int))) *metrics {
	m := &metrics{
		checkRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_check_requests_total",
			Help: "Check requests by the precondition status code they were answered with.",
		}, []string{"code"}),
		checkDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sidemix_mixer_check_duration_seconds",
			Help:    "Time to answer a Check request, handlers included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		reportRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidemix_mixer_report_requests_total",
			Help: "Report requests received.",
		}),
		reportBags: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidemix_mixer_report_bags_total",
			Help: "Attribute bags received in Report requests.",
		}),
		reportBagsRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidemix_mixer_report_bags_rejected_total",
			Help: "Reported bags skipped because a value's kind contradicts the attribute manifest.",
		}),
		dispatchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_dispatch_errors_total",
			Help: "Failed handler calls on the check and quota path, by handler and reason.",
		}, []string{"handler", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_report_instances_dropped_total",
			Help: "Report instances that never reached their handler, by handler and reason (queue_full, handler_error, no_handler, shutdown).",
		}, []string{"handler", "reason"}),
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_report_instances_dispatched_total",
			Help: "Report instances a handler accepted.",
		}, []string{"handler"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_config_reloads_total",
			Help: "Config reloads that swapped the active snapshot (success) or were rejected (failure).",
		}, []string{"result"}),
		lastReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidemix_mixer_config_last_reload_success",
			Help: "1 when the last config load succeeded, 0 when the mixer serves an older config than the files hold.",
		}),
		evalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_eval_errors_total",
			Help: "Expressions that could not be evaluated (the rule did not match or the action was skipped), by rule.",
		}, []string{"rule"}),
		handlerCreateFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_handler_create_failures_total",
			Help: "Handlers whose adapter failed to create them; their rules fail per their failPolicy.",
		}, []string{"handler"}),
		otlpReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_otlp_received_total",
			Help: "Spans (signal traces) and log records (signal logs) received over OTLP, by result: accepted (run through the report rules), rejected (unusable, e.g. no trace id), or malformed (a request that could not be decoded, counted once per request).",
		}, []string{"signal", "result"}),
		ruleChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_rule_checks_total",
			Help: "Check requests a rule's check or quota actions took part in, by rule and what the rule made of them: allow, deny (a handler refused or a quota was exhausted; for shadow rules, what they would have denied) or error (a handler failed, whatever the rule's failPolicy).",
		}, []string{"rule", "result"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_denials_total",
			Help: "Handler calls of enforcing rules that denied the request, by rule, handler and reason (policy, quota, unavailable), and failed calls of fail-open rules that let it through (fail_open).",
		}, []string{"rule", "handler", "reason"}),
		shadowDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_shadow_denials_total",
			Help: "Check requests a shadow rule would have denied (a handler refused or a quota was exhausted), by rule. Nothing was denied.",
		}, []string{"rule"}),
		handlerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sidemix_mixer_handler_duration_seconds",
			Help:    "Time of one check or quota handler call, by handler and role (check, quota); calls that outlive the check timeout are observed when they return.",
			Buckets: handlerBuckets,
		}, []string{"handler", "role"}),
		quotaAllocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_quota_allocations_total",
			Help: "Quota allocations by handler, quota instance and result (granted, also in part; denied; error: the handler failed), shadow rules' included.",
		}, []string{"handler", "quota", "result"}),
		quotaGranted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_mixer_quota_granted_total",
			Help: "Quota amount handlers granted, by handler and quota instance.",
		}, []string{"handler", "quota"}),
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	for _, sig := range []struct {
		c    *otlpCounters
		name string
	}{{&m.otlpTraces, signalTraces}, {&m.otlpLogs, signalLogs}} {
		sig.c.accepted = m.otlpReceived.WithLabelValues(sig.name, otlpAccepted)
		sig.c.rejected = m.otlpReceived.WithLabelValues(sig.name, otlpRejected)
	}
	m.lastReloadSuccess.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.checkRequests, m.checkDuration, m.reportRequests, m.reportBags, m.reportBagsRejected, m.dispatchErrors,
		m.dropped, m.dispatched, m.reloads, m.lastReloadSuccess, m.evalErrors, m.handlerCreateFails, m.otlpReceived,
		m.ruleChecks, m.denials, m.shadowDenials, m.handlerDuration, m.quotaAllocations, m.quotaGranted,
		&queueLengthCollector{lengths: queueLengths},
	)
	return m
}

// checkAnswered counts a Check answered with the given precondition code.
func (m *metrics) checkAnswered(code int32) {
	if code < 0 || int(code) >= len(m.checkCodes) {
		m.checkRequests.WithLabelValues(codeName(code)).Inc()
		return
	}
	slot := &m.checkCodes[code]
	c := slot.Load()
	if c == nil {
		v := m.checkRequests.WithLabelValues(codeName(code))
		c = &v
		slot.Store(c)
	}
	(*c).Inc()
}

var queueLengthDesc = prometheus.NewDesc("sidemix_mixer_report_queue_length",
	"Report instances waiting in a handler's queue.", []string{"handler"}, nil)

// queueLengthCollector reads the queues of the active state at scrape time,
// so handlers that come and go with reloads need no bookkeeping.
type queueLengthCollector struct {
	lengths func(fn func(handler string, n int))
}

func (c *queueLengthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueLengthDesc }

func (c *queueLengthCollector) Collect(ch chan<- prometheus.Metric) {
	c.lengths(func(handler string, n int) {
		ch <- prometheus.MustNewConstMetric(queueLengthDesc, prometheus.GaugeValue, float64(n), handler)
	})
}

// otlpCounters are the accepted and rejected series of one signal of
// sidemix_mixer_otlp_received_total.
type otlpCounters struct{ accepted, rejected prometheus.Counter }

// otlpCounters returns signal's series.
func (m *metrics) otlpCounters(signal string) *otlpCounters {
	if signal == signalLogs {
		return &m.otlpLogs
	}
	return &m.otlpTraces
}
