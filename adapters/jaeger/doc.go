// Package jaeger is an adapter that sends tracespan instances to a Jaeger
// collector: with protocol grpc (the default) as Jaeger's api_v2
// CollectorService.PostSpans, which the jaeger receiver of Jaeger v2 (and
// Jaeger v1's collector) serves on port 14250; with protocol otlp as OTLP
// traces over gRPC (port 4317), which Jaeger v2 and any OpenTelemetry
// Collector accept.
//
// Each send carries one Batch per service: the workload whose proxy made
// the span (TraceSpan.ServiceName: the source workload for client spans,
// the destination for server spans) is the batch's Process, with
// processTags added. Span tags follow Jaeger's own OTLP translation
// (span.kind, otel.status_code, error, http.status_code, w3c.tracestate)
// plus the instance's spanTags, so the Jaeger UI shows proxy spans like any
// other.
//
// # Batching and failures
//
// Report only checks the ids (a trace id of 32 hex digits, a non-zero span
// id of 16, a parent of 16 or none) and appends the spans to the handler's
// buffer; it never waits for the collector, so the mixer's report queue
// never backs up behind Jaeger. The handler's goroutine sends a batch as
// soon as maxBatchSize spans are buffered and everything buffered every
// flushInterval, each send bounded by timeout. When more than maxQueueSize
// spans are waiting, new ones are dropped. A send that fails (collector
// unreachable, timeout, refusal) is not retried: tracing is best-effort and
// a retry would only delay the spans behind it. The connection is made
// lazily and re-dialled with a backoff of at most 5s, so a collector that is
// down at start-up, or restarts, costs only the spans of the outage.
// A failing collector is logged once as a warning when sends start failing
// (again each minute while it keeps failing) and once when it recovers.
// Self metrics, labelled by handler:
//
//	sidemix_jaeger_spans_sent_total      delivered
//	sidemix_jaeger_spans_failed_total    sends that failed
//	sidemix_jaeger_spans_dropped_total   by reason: queue_full, invalid, template, shutdown
//	sidemix_jaeger_queue_spans           buffered now
//
// Close sends what is buffered until its context ends and drops the rest.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: jaeger}
//	spec:
//	  adapter: jaeger
//	  params:
//	    endpoint: 127.0.0.1:14250    # required: the collector's host:port
//	    protocol: grpc               # default; or otlp
//	    timeout: 5s                  # per send (default)
//	    maxBatchSize: 500            # default
//	    flushInterval: 1s            # default
//	    maxQueueSize: 10000          # default
//	    processTags: {mesh: demo}
//	    tls:                         # off by default
//	      enabled: true
//	      caFile: /etc/certs/ca.pem  # default: the system's roots
//	      certFile: /etc/certs/client.pem
//	      keyFile: /etc/certs/client-key.pem
//	      serverName: jaeger-collector
//	      insecureSkipVerify: false
//
// It accepts tracespan instances; rules should send only sampled ones:
//
//	match: default(request.trace.sampled, false)
package jaeger
