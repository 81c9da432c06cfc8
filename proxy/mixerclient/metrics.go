package mixerclient

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the client's own; the hot-path series are resolved once here
// so that Check and Report do no label lookups.
type metrics struct {
	cacheHit, cacheMiss          prometheus.Counter
	failOpen, failClosed         prometheus.Counter
	droppedFull, droppedShutdown prometheus.Counter
	sent                         prometheus.Counter
	batchOK, batchErr            prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, c *Client) (*metrics, error) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_check_requests_total",
		Help: "Checks by outcome: answered from the check cache (cache_hit) or sent to the mixer (cache_miss).",
	}, []string{"result"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_check_failures_total",
		Help: "Checks the mixer could not answer in time, by the fail policy applied (open: allowed, closed: denied).",
	}, []string{"policy"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_reports_dropped_total",
		Help: "Report bags dropped: buffer_full (buffer over its limit), shutdown (unsent at Close or reported after it).",
	}, []string{"reason"})
	sent := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sidemix_proxy_reports_sent_total",
		Help: "Report bags delivered to the mixer.",
	})
	batches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_report_batches_total",
		Help: "Report RPCs by result (ok, error); a failed batch is kept and retried.",
	}, []string{"result"})
	bufLen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sidemix_proxy_report_buffer_length",
		Help: "Report bags waiting to be sent.",
	}, func() float64 { return float64(len(c.reports)) + float64(c.pendingLen.Load()) })
	cacheLen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sidemix_proxy_check_cache_entries",
		Help: "Answers held by the check cache.",
	}, func() float64 {
		if c.cache == nil {
			return 0
		}
		return float64(c.cache.len())
	})
	for _, col := range []prometheus.Collector{checks, failures, dropped, sent, batches, bufLen, cacheLen} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("mixerclient: registering metrics: %w", err)
		}
	}
	return &metrics{
		cacheHit:        checks.WithLabelValues("cache_hit"),
		cacheMiss:       checks.WithLabelValues("cache_miss"),
		failOpen:        failures.WithLabelValues("open"),
		failClosed:      failures.WithLabelValues("closed"),
		droppedFull:     dropped.WithLabelValues("buffer_full"),
		droppedShutdown: dropped.WithLabelValues("shutdown"),
		sent:            sent,
		batchOK:         batches.WithLabelValues("ok"),
		batchErr:        batches.WithLabelValues("error"),
	}, nil
}
