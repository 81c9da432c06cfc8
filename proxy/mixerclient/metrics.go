package mixerclient

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the client's own; the hot-path series are resolved once here
// so that Check and Report do no label lookups.
type metrics struct {
	cacheHit, cacheMiss                prometheus.Counter
	failOpen, failClosed               prometheus.Counter
	sentCheck, sentQuota, sentPrefetch prometheus.Counter
	checkRetries                       prometheus.Counter
	checkDuration                      prometheus.Observer
	denials                            *prometheus.CounterVec
	prefetchHit, prefetchMiss          prometheus.Counter
	tokensGranted, tokensUsed          prometheus.Counter
	tokensExpired                      prometheus.Counter
	droppedFull, droppedShutdown       prometheus.Counter
	sent                               prometheus.Counter
	batchOK, batchErr, reportRetries   prometheus.Counter
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
	sentChecks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_checks_sent_total",
		Help: "Check RPCs sent to the mixers (a retry not counted again), by purpose: precondition (cache miss), quota (a cached answer's quota not in the local pool), prefetch (background refill of the pool).",
	}, []string{"purpose"})
	checkDuration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sidemix_proxy_check_rpc_duration_seconds",
		Help:    "Time a Check sent to the mixers took to answer or fail, a retry on another mixer included.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	retries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_mixer_retries_total",
		Help: "Calls retried on another mixer after the first failed, by method (check: same deduplication id; report).",
	}, []string{"method"})
	denials := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_check_denials_total",
		Help: "Requests denied, by gRPC code and by who decided: mixer (an answer to this request), cache (a cached answer), local (quota pool empty and the quota known exhausted). Mixer unreachable under fail closed is in sidemix_proxy_check_failures_total.",
	}, []string{"code", "source"})
	prefetch := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_quota_prefetch_total",
		Help: "Requests with a cached answer that draw on quota, with prefetch on: hit (paid from the local pool) or miss (asked the mixer; refusals of a quota known exhausted are in sidemix_proxy_check_denials_total with source local). Hit ratio: hit / (hit + miss).",
	}, []string{"result"})
	tokens := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_quota_tokens_total",
		Help: "Quota tokens of the local pools: granted (by the mixer to Checks that named the quota, prefetch included), used (taken by admitted requests), expired (unused at the end of their life).",
	}, []string{"result"})
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
	}, func() float64 { return float64(c.reports.len()) + float64(c.pendingLen.Load()) })
	cacheLen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sidemix_proxy_check_cache_entries",
		Help: "Answers held by the check cache.",
	}, func() float64 {
		if c.cache == nil {
			return 0
		}
		return float64(c.cache.len())
	})
	poolLen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sidemix_proxy_quota_pools",
		Help: "Quota pools held (one per quota and value of its dimensions).",
	}, func() float64 { return float64(c.pools.len()) })
	for _, col := range []prometheus.Collector{checks, failures, sentChecks, checkDuration, retries, denials, prefetch, tokens, dropped, sent, batches, bufLen, cacheLen, poolLen} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("mixerclient: registering metrics: %w", err)
		}
	}
	return &metrics{
		cacheHit:        checks.WithLabelValues("cache_hit"),
		cacheMiss:       checks.WithLabelValues("cache_miss"),
		failOpen:        failures.WithLabelValues("open"),
		failClosed:      failures.WithLabelValues("closed"),
		sentCheck:       sentChecks.WithLabelValues("precondition"),
		sentQuota:       sentChecks.WithLabelValues("quota"),
		sentPrefetch:    sentChecks.WithLabelValues("prefetch"),
		checkRetries:    retries.WithLabelValues("check"),
		checkDuration:   checkDuration,
		reportRetries:   retries.WithLabelValues("report"),
		denials:         denials,
		prefetchHit:     prefetch.WithLabelValues("hit"),
		prefetchMiss:    prefetch.WithLabelValues("miss"),
		tokensGranted:   tokens.WithLabelValues("granted"),
		tokensUsed:      tokens.WithLabelValues("used"),
		tokensExpired:   tokens.WithLabelValues("expired"),
		droppedFull:     dropped.WithLabelValues("buffer_full"),
		droppedShutdown: dropped.WithLabelValues("shutdown"),
		sent:            sent,
		batchOK:         batches.WithLabelValues("ok"),
		batchErr:        batches.WithLabelValues("error"),
	}, nil
}
