package proxy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	flags     *prometheus.CounterVec
	traces    *prometheus.CounterVec
	malformed *prometheus.CounterVec
	tooLarge  *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_proxy_requests_total",
			Help: "Requests handled, by direction (inbound, outbound) and HTTP status code sent to the caller.",
		}, []string{"direction", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sidemix_proxy_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, check included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"direction"}),
		flags: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_proxy_response_flags_total",
			Help: "Requests the proxy itself answered or cut short, by direction and flag: NR no route, UF upstream connect failure, UC upstream reset, DC caller went away, UAEX denied by policy.",
		}, []string{"direction", "flag"}),
		traces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_proxy_traces_total",
			Help: "Spans the proxy made, by direction and origin: continued (the request carried a valid trace context) or started (a new trace).",
		}, []string{"direction", "origin"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_proxy_trace_headers_malformed_total",
			Help: "Trace headers ignored because they were malformed, by direction and header (traceparent, tracestate, b3, x-b3).",
		}, []string{"direction", "header"}),
		tooLarge: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_proxy_headers_too_large_total",
			Help: "Requests refused with 431 by direction and what was too large: a trace header (traceparent, tracestate, b3, x-b3) or the request headers in total.",
		}, []string{"direction", "header"}),
	}
	reg.MustRegister(m.requests, m.duration, m.flags, m.traces, m.malformed, m.tooLarge,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// sideMetrics are one direction's series, resolved once.
type sideMetrics struct {
	m         *metrics
	direction string
	duration  prometheus.Observer
	ok        prometheus.Counter // code 200, the common case
	started   prometheus.Counter
	continued prometheus.Counter
}

func (m *metrics) side(direction string) sideMetrics {
	return sideMetrics{
		m:         m,
		direction: direction,
		duration:  m.duration.WithLabelValues(direction),
		ok:        m.requests.WithLabelValues(direction, "200"),
		started:   m.traces.WithLabelValues(direction, traceOriginStarted),
		continued: m.traces.WithLabelValues(direction, traceOriginContinue),
	}
}

func (s sideMetrics) malformed(header string) {
	s.m.malformed.WithLabelValues(s.direction, header).Inc()
}

func (s sideMetrics) tooLarge(header string) {
	s.m.tooLarge.WithLabelValues(s.direction, header).Inc()
}

func (s sideMetrics) observe(code int, flag string, d time.Duration) {
	if code == 200 {
		s.ok.Inc()
	} else {
		s.m.requests.WithLabelValues(s.direction, strconv.Itoa(code)).Inc()
	}
	s.duration.Observe(d.Seconds())
	if flag != flagNone {
		s.m.flags.WithLabelValues(s.direction, flag).Inc()
	}
}
