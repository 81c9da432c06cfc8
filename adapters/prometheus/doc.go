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
// # Endpoints and reloads
//
// Metrics never go to the global registry. All handlers configured with the
// same addr share one registry and one listener (the process-wide endpoint
// of that addr), reference-counted. On a config reload the mixer creates the
// new handler before closing the old one, so a metric whose definition
// (name, kind, help, labels, buckets) is unchanged keeps its collector and
// its counts, and the listener keeps running. A metric the reload redefines
// starts afresh. Two differently named handlers may share an addr and even
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
//	    metrics:
//	    - instanceName: requestcount
//	      name: requests_total       # scraped as istio_requests_total
//	      kind: COUNTER
//	      labelNames: [source_workload, destination_workload, response_code]
//	    - instanceName: requestduration
//	      name: request_duration_milliseconds
//	      description: Request duration.
//	      kind: DISTRIBUTION
//	      labelNames: [destination_workload]
//	      buckets:
//	        explicitBuckets: {bounds: [1, 5, 10, 50, 100, 500, 1000, 5000]}
package prometheus
