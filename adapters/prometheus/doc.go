// Package prometheus is an adapter that turns metric instances into
// Prometheus metrics and serves them on its own /metrics endpoint for a
// Prometheus server to scrape, like Istio Mixer's prometheus adapter.
//
// Each entry of metrics maps the instances named instanceName to one
// exported metric: a COUNTER adds the instance value, a GAUGE is set to it,
// a DISTRIBUTION (a histogram) observes it. Values may be integers, floats,
// numeric strings or durations, which count in milliseconds. Labels are the
// instance dimensions named in labelNames, rendered as text; a dimension an
// instance lacks is labelled "unknown" and dimensions not named are ignored.
// Instances that cannot be recorded (unknown instance name, a value that is
// not a number, a negative counter increment) are counted in
// sidemix_prometheus_dropped_total on the mixer's registry and skipped.
//
// Buckets follow Istio: n finite buckets of exponentialBuckets have the
// bounds scale·growthFactor^i and those of linearBuckets offset+width·i, for
// i in 0..n.
//
// # Names and labels
//
// A metric is exported as namespace_name when namespace is set (istio and
// requests_total make istio_requests_total), else as name. constLabels adds
// labels with fixed values to every metric of the handler, e.g. the mesh or
// cluster a mixer serves; they may not repeat a labelNames entry.
//
// # Cardinality cap and expiry
//
// Every label combination of a metric is a series (a histogram's buckets,
// sum and count belong to one series). A metric holds at most maxSeries of
// them: the metric's own maxSeries, else the handler's, which defaults to
// DefaultMaxSeries; 0 means no cap. An instance that would start a series
// over the cap is not recorded in that metric and is counted in
// sidemix_prometheus_series_refused_total{handler,metric}; the first refusal
// of a metric is logged as a warning. Existing series keep counting at the
// cap. sidemix_prometheus_series{handler,metric} is the number each metric
// holds now.
//
// With metricsExpirationPolicy (Istio's names), a series not updated for
// metricsExpiryDuration is removed, which also frees its place under the
// cap. A background sweep every expiryCheckIntervalDuration (default: half
// the expiry duration, at most a minute) does it, whether or not anyone
// scrapes; removals are counted in
// sidemix_prometheus_series_expired_total{handler,metric}. A counter that
// comes back after expiring starts from zero again, which rate() and
// increase() read as a counter reset. Without the policy series live as long
// as the metric's definition.
//
// # Endpoints and reloads
//
// Metrics never go to the global registry. All handlers configured with the
// same addr share one registry and one listener (the process-wide endpoint
// of that addr), reference-counted. On a config reload the mixer creates the
// new handler before closing the old one, so a metric whose definition
// (name, kind, help, labels, const labels, buckets) is unchanged keeps its
// collector, its series and their counts, and the listener keeps running;
// the new handler's maxSeries and expiry policy apply to them at once (a
// lowered cap refuses new series until enough expire). A metric the reload
// redefines starts afresh. A metric shared by several handlers is swept by
// each one with an expiry policy, so the shortest applies. Two differently named handlers may share an addr and even
// an identical metric, but not define one name differently: that Create
// fails. When the last handler of an addr is closed the listener stops and
// the port is free when Close returns; Create retries a port in use for up
// to 2s, for a predecessor still shutting down. With addr empty nothing is
// served, and the handler's Gatherer method returns its private registry.
//
// It accepts metric instances.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: prom}
//	spec:
//	  adapter: prometheus
//	  params:
//	    addr: 127.0.0.1:42422        # default; "" serves nothing
//	    namespace: istio             # optional prefix
//	    constLabels: {mesh: prod}    # optional, on every metric
//	    maxSeries: 10000             # default, per metric; 0: no cap
//	    metricsExpirationPolicy:     # optional
//	      metricsExpiryDuration: 10m
//	      expiryCheckIntervalDuration: 1m
//	    metrics:
//	    - instanceName: requestcount
//	      name: requests_total       # scraped as istio_requests_total
//	      kind: COUNTER
//	      labelNames: [source_workload, destination_workload, response_code]
//	      maxSeries: 50000           # this metric's own cap
//	    - instanceName: requestduration
//	      name: request_duration_milliseconds
//	      description: Request duration.
//	      kind: DISTRIBUTION
//	      labelNames: [destination_workload]
//	      buckets:
//	        explicitBuckets: {bounds: [1, 5, 10, 50, 100, 500, 1000, 5000]}
package prometheus
