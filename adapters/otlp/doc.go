// Package otlp is an adapter that exports tracespan, logentry and otlp
// instances to any OpenTelemetry Protocol endpoint: an OpenTelemetry Collector,
// Jaeger, Tempo, or a vendor's OTLP intake.
//
// Instances are converted with adapters/internal/spans (a resource per
// service for spans; one resource for log records) and sent with the
// collector's pdata clients: protocol grpc uses the OTLP trace and log
// services (ptraceotlp/plogotlp), protocol http POSTs OTLP protobuf to
// endpoint + /v1/traces and /v1/logs. Spans and log records are buffered
// separately (handlerkit.Batcher) and sent in batches of up to
// maxBatchSize, at least every flushInterval; Report never waits for the
// endpoint. A batch that fails for a reason that may pass (gRPC
// Unavailable, ResourceExhausted, DeadlineExceeded, ...; HTTP 429, 502,
// 503, 504; a connection error) is retried with exponential backoff for up
// to retry.maxElapsedTime while newer items keep buffering up to
// maxQueueSize; any other failure, and the items an endpoint rejects in a
// partial success, are given up at once. A span with an invalid trace, span
// or parent span id is dropped before it is buffered. Close sends what is
// buffered before the handler goes.
//
// Self metrics, labelled by handler: sidemix_otlp_sent_total and
// sidemix_otlp_failed_total (items the endpoint took, and did not take;
// by signal: traces or logs), sidemix_otlp_retries_total (by signal),
// sidemix_otlp_dropped_total (by reason: invalid, wrong_template,
// queue_full, shutdown) and the gauge sidemix_otlp_queued (by signal).
//
// Header values (API keys) are secrets: /debug/config and logs show them
// as xxxxx.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: otel}
//	spec:
//	  adapter: otlp
//	  params:
//	    endpoint: otel-collector.observability:4317   # grpc: host:port
//	    protocol: grpc            # or http, with endpoint: http(s)://host:4318
//	    headers: {x-api-key: ...} # sent with every request
//	    timeout: 5s               # per attempt
//	    compression: gzip         # or none
//	    tls:                      # grpc: enabled: true; http: an https endpoint
//	      enabled: false
//	      caFile: /etc/otlp/ca.pem
//	      certFile: /etc/otlp/client.pem   # with keyFile, for mutual TLS
//	      keyFile: /etc/otlp/client-key.pem
//	      serverName: otlp.example.com
//	    maxBatchSize: 512
//	    flushInterval: 1s
//	    maxQueueSize: 10000       # per signal
//	    retry: {enabled: true, initialInterval: 100ms, maxInterval: 5s, maxElapsedTime: 30s}
//
// It accepts tracespan and logentry instances; send spans with a rule that
// matches default(request.trace.sampled, false). It also accepts otlp
// instances (adapters/template.OTLP: an app's export to the mixer, one
// resource, as received): they are batched per signal by
// adapters/internal/rawotlp, up to maxBatchSize spans (log records) a
// send, at least every flushInterval, up to maxQueueSize held, and each
// batch is sent as one export request, the resources' bytes concatenated
// as they came, never decoded, with the same retries; they count in the
// sent, failed and dropped counters as the spans and log records they
// hold. Pointed at Jaeger's or a Collector's OTLP port, that forwards
// apps' spans unchanged. A resource is released (template.OTLP.Release)
// once its bytes are copied into a batch, so the mixer reuses the
// request's buffer whatever becomes of the send.
package otlp
