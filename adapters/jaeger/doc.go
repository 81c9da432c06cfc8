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
// id of 16, a parent of 16 or none) and hands the spans to a
// handlerkit.Batcher; it never waits for the collector, so the mixer's
// report queue never backs up behind Jaeger. The Batcher's goroutine sends
// a batch as soon as maxBatchSize spans are buffered and a partial batch
// flushInterval after its first span arrived (no timer runs while nothing
// is buffered), each attempt bounded by timeout. The grpc exporter keeps
// its conversion buffers and each service's Process from one batch to the
// next, and marshals a request into gRPC's buffer pool. A batch
// that fails for a reason that may pass (gRPC Unavailable,
// ResourceExhausted, DeadlineExceeded, ...: the collector is down, busy or
// slow) is retried with exponential backoff for up to retry.maxElapsedTime
// while newer spans keep buffering up to maxQueueSize, beyond which they are
// dropped. A refusal, or a batch whose spans only partly went through (one
// PostSpans per service), is given up at once: resending would duplicate
// spans. The connection is made lazily and re-dialled with a backoff of at
// most 5s, so a collector that is down at start-up, or restarts, costs
// nothing while it is back within the retry time. A failing collector is
// logged once as a warning when batches start to be given up (again each
// minute while they are) and once when it recovers.
// Self metrics, labelled by handler:
//
//	sidemix_jaeger_spans_sent_total      delivered
//	sidemix_jaeger_spans_failed_total    given up after retries, or refused
//	sidemix_jaeger_send_retries_total    attempts after the first
//	sidemix_jaeger_spans_dropped_total   by reason: queue_full, invalid, template, shutdown
//	sidemix_jaeger_queue_spans           buffered now
//
// Close sends what is buffered, without retries, until its context ends
// and drops the rest; when the collector's last answer was a failure it
// drops everything at once, so a Jaeger that is down never holds up the
// mixer's shutdown or a config reload.
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
//	    retry: {enabled: true, initialInterval: 100ms, maxInterval: 5s, maxElapsedTime: 30s}  # default
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
