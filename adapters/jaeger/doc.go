// Package jaeger is an adapter that sends tracespan instances (and, with
// protocol otlp, apps' own OTLP spans: otlp instances) to a Jaeger
// collector: with protocol grpc (the default) as Jaeger's api_v2
// CollectorService.PostSpans, which the jaeger receiver of Jaeger v2 (and
// Jaeger v1's collector) serves on port 14250; with protocol otlp as OTLP
// traces over gRPC (port 4317), which Jaeger v2 and any OpenTelemetry
// Collector accept.
//
// Each send carries one Batch per service (several when a service's spans
// might make a request of more than 4 MiB, the most a gRPC server takes
// by default): the workload whose proxy made the span
// (TraceSpan.ServiceName: the source workload for client spans, the
// destination for server spans) is the batch's Process, with processTags
// added. Span tags follow Jaeger's own OTLP translation
// (span.kind, otel.status_code, error, http.status_code, w3c.tracestate)
// plus the instance's spanTags, so the Jaeger UI shows proxy spans like any
// other.
//
// # Batching and failures
//
// Report only parses the ids (a trace id of 32 hex digits, a non-zero span
// id of 16, a parent of 16 or none; a span with others is dropped as
// invalid) and hands the spans, with their parsed ids, to a
// handlerkit.Batcher; it never waits for the collector, so the mixer's
// report queue never backs up behind Jaeger. The Batcher's goroutine sends
// a batch as soon as maxBatchSize spans are buffered and a partial batch
// flushInterval after its first span arrived (no timer runs while nothing
// is buffered), each attempt bounded by timeout. The grpc exporter keeps
// its conversion buffers and each service's Process from one batch to the
// next, and marshals a request into a pooled buffer that gRPC gives back
// once written, without computing the request's size first: it bounds it
// from the spans' strings as it converts them, marshals (gogo's generated
// code, backwards) into a buffer of that bound and moves the bytes to its
// start. Its connection writes up to 256 KiB per system call. A batch
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
//	    maxBatchSize: 2000           # default
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
//
// # Apps' own OTLP spans
//
// With protocol otlp it also accepts otlp instances of the traces signal
// (adapters/template.OTLP: one resource of an app's export to the mixer's
// OTLP receiver, as received). They are forwarded undecoded
// (adapters/internal/rawotlp, shared with the otlp adapter): a resource's
// bytes are copied into the open batch and the instance is released at
// once (template.OTLP.Release, exactly once, whether the send then
// succeeds or fails, so the mixer reuses its buffer and a retry never
// reads bytes the mixer has reused); a batch is sent, its resources
// concatenated (a valid ExportTraceServiceRequest), to
// TraceService.Export through internal/rawproto's pass-through codec when
// it holds maxBatchSize spans, or 4 MiB, or flushInterval after its first
// resource. maxQueueSize bounds the spans held, tracespans and resources
// each. The metrics above count the resources' spans (sent, failed,
// dropped as queue_full or shutdown; queue_spans includes them); a
// partial success counts the rejected spans failed and the batch is not
// resent. processTags are not added and no process per workload is made:
// a raw resource keeps the app's own resource attributes, service.name
// included, which is what Jaeger shows as its service.
//
// With protocol grpc an otlp instance is a config load error at the rule
// that sends it (file:line; adapters.InstanceChecker), as is one of the
// logs signal with either protocol. Decoding the resources with pdata and
// translating them to api_v2's model would need Jaeger's OTLP translator
// (opentelemetry-collector-contrib's pkg/translator/jaeger, a large
// dependency) or a second hand-written translation of every attribute
// convention, and would give up what the otlp template is for (no decoding);
// Jaeger v2 takes OTLP itself, so protocol otlp is the way.
package jaeger
