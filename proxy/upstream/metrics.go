package upstream

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// vecs are the metric families, shared by every cluster on a Registerer.
type vecs struct {
	healthy          *prometheus.GaugeVec
	ejections        *prometheus.CounterVec
	ejectionsSkipped *prometheus.CounterVec
	overflows        *prometheus.CounterVec
	noHealthy        *prometheus.CounterVec
	panics           *prometheus.CounterVec
	healthChecks     *prometheus.CounterVec
	connections      *prometheus.GaugeVec
}

func newVecs(reg prometheus.Registerer) vecs {
	return vecs{
		healthy: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidemix_upstream_endpoint_healthy",
			Help: "1 when the endpoint takes traffic (passes active health checks, not ejected), else 0.",
		}, []string{"cluster", "endpoint"})),
		ejections: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_upstream_ejections_total",
			Help: "Endpoints ejected by outlier detection.",
		}, []string{"cluster"})),
		ejectionsSkipped: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_upstream_ejections_skipped_total",
			Help: "Ejections not done because maxEjectionPercent of the endpoints were already ejected.",
		}, []string{"cluster"})),
		overflows: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_upstream_overflows_total",
			Help: "Requests refused by a connection-pool limit (flag UO), by limit: max_requests or pending_requests.",
		}, []string{"cluster", "limit"})),
		noHealthy: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_upstream_no_healthy_total",
			Help: "Picks that found no endpoint to use (flag UH).",
		}, []string{"cluster"})),
		panics: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_upstream_panic_picks_total",
			Help: "Picks made over all endpoints because fewer than the panic threshold were healthy.",
		}, []string{"cluster"})),
		healthChecks: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_upstream_health_checks_total",
			Help: "Active health checks, by result: pass or fail.",
		}, []string{"cluster", "result"})),
		connections: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidemix_upstream_connections",
			Help: "Open connections to the cluster's endpoints.",
		}, []string{"cluster"})),
	}
}

// register registers c, or returns the equal collector another cluster
// registered first.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(T); ok {
				return ex
			}
		}
	}
	return c
}

// clusterMetrics are one cluster's series, resolved once.
type clusterMetrics struct {
	v                vecs
	name             string
	ejections        prometheus.Counter
	ejectionsSkipped prometheus.Counter
	noHealthy        prometheus.Counter
	panics           prometheus.Counter
	hcPass, hcFail   prometheus.Counter
	connections      prometheus.Gauge
}

func newClusterMetrics(reg prometheus.Registerer, name string) *clusterMetrics {
	v := newVecs(reg)
	return &clusterMetrics{
		v:                v,
		name:             name,
		ejections:        v.ejections.WithLabelValues(name),
		ejectionsSkipped: v.ejectionsSkipped.WithLabelValues(name),
		noHealthy:        v.noHealthy.WithLabelValues(name),
		panics:           v.panics.WithLabelValues(name),
		hcPass:           v.healthChecks.WithLabelValues(name, "pass"),
		hcFail:           v.healthChecks.WithLabelValues(name, "fail"),
		connections:      v.connections.WithLabelValues(name),
	}
}

func (m *clusterMetrics) setHealthy(addr string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.v.healthy.WithLabelValues(m.name, addr).Set(v)
}

func (m *clusterMetrics) forget(addr string) { m.v.healthy.DeleteLabelValues(m.name, addr) }

func (m *clusterMetrics) overflow(limit string) { m.v.overflows.WithLabelValues(m.name, limit).Inc() }

func (m *clusterMetrics) healthCheck(ok bool) {
	if ok {
		m.hcPass.Inc()
	} else {
		m.hcFail.Inc()
	}
}
