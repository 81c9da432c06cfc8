// Package mixer is the sidemix mixer service: the gRPC Mixer API (Check,
// Report) over a policy snapshot, the dispatcher that calls the snapshot's
// handlers, the config watcher and the admin HTTP endpoints.
//
// # Using it
//
//	srv, err := mixer.New(mixer.Config{
//		ConfigPaths: []string{"/etc/sidemix"},
//		Adapters:    registry, // adapters.NewRegistry(denier.Factory(), ...)
//	})
//	if err != nil { ... }        // an invalid config is a *policy.LoadError, wrapped
//	if err := srv.Start(); err != nil { ... }
//	...
//	err = srv.Shutdown(ctx)      // on SIGTERM
//
// `sidemix mixer` sets the garbage collector for a dedicated server
// (--gc-percent, default 400, unless GOGC is set; --memory-limit as
// GOMEMLIMIT): the Check path allocates per request, and at Go's default
// of 100 collecting that garbage is about a quarter of a busy mixer's CPU.
//
// # Check
//
// The bag is decoded (malformed → InvalidArgument) and checked against the
// snapshot's manifest (a value of the wrong kind → InvalidArgument). Every
// check action of the matching rules is sent to its handler; all calls run
// concurrently under one deadline, the smaller of Config.CheckTimeout and the
// caller's. The results combine as follows:
//
//   - The first denial in rule order wins, so the answer is deterministic
//     however the handlers race.
//   - A handler that errs, times out, panics, could not be created or lacks
//     the role has failed. The rule's failPolicy decides: closed (the
//     default) denies with UNAVAILABLE naming the handler; open lets the
//     request through (counted as a fail_open denial). Either way the answer
//     may be cached for at most a second and used once. A failure is never
//     silently skipped.
//   - The valid duration and use count are the least any handler gave; a
//     handler that says 0 has no opinion, and when none has one the
//     configured defaults apply.
//   - The referenced attributes are those the rules' matches and the
//     instances' fields looked at, so a client may reuse the answer for any
//     request that agrees on them.
//   - Header operations of the matching rules go into the route directive.
//
// A denial carries a google.rpc.ErrorInfo detail (domain "sidemix.dev",
// reason POLICY_DENIED, HANDLER_UNAVAILABLE or QUOTA_EXHAUSTED) whose
// metadata names the rule, handler and instance, so a proxy can say which
// rule refused a request.
//
// # The wire
//
// The Mixer API's messages are encoded and decoded by the code
// protoc-gen-go-vtproto generates next to protoc-gen-go's (`make proto`,
// api/mixer/v1/mixer_vtproto.pb.go) through internal/vtcodec, the gRPC
// server's codec; the health service's messages go through protobuf-go as
// before. A Check request is decoded into a CheckRequest from the generated
// pool, given back once answered, and its strings point into one copy of
// the request's body made for it (never reused), so decoding allocates a
// handful of objects instead of one per string and list: with the answer's
// encoding, 66 allocations per Check became 28 (BenchmarkCheckRPCWire). The
// deduplication id is cloned, since quota handlers keep it past the Check.
// A Report's strings are copied as they are decoded: instances queued for
// report handlers, and metric labels, keep them for long.
// The generated decoder does not check that strings are UTF-8 as
// protobuf-go's does; the mixer checks the ones a request carries (words,
// deduplication id, quota names) and answers InvalidArgument instead of
// gRPC's Internal. On the wire nothing changes: the codec is named "proto".
//
// # Quotas
//
// When the checks allow the request, its quotas are allocated (a denied
// request draws on none). Which, and how much:
//
//   - the quotas the request names, with its amounts and best-effort flag;
//   - when it names none and a QuotaSpecBinding covers its destination
//     service, exactly the quotas the bound QuotaSpecs charge it, with their
//     charges (summed when several spec rules charge one quota);
//   - otherwise every quota instance of the matching quota rules, at 1.
//
// Each quota is drawn from every handler a matching rule sends it to, all
// concurrently under the same deadline as the checks; it is granted the
// least of them. A quota asked for that no rule limits is granted in full.
// The result carries the tightest window the handlers reported (limit,
// remaining, reset: the least remaining, on a tie the longest reset), for
// the proxy's RateLimit headers. A quota that was not granted turns the
// precondition into RESOURCE_EXHAUSTED `quota "name" exhausted`, with the
// refusing rule, handler and window in the ErrorInfo metadata (limit,
// remaining, reset) and a RetryInfo; such an answer is never cacheable. A
// quota handler's failure follows its rule's failPolicy: closed denies with
// UNAVAILABLE, open grants the amount asked for at most a second.
//
// When the request named no quotas the answer says which the mixer chose,
// with their charges, in quota_charges, and the precondition's referenced
// attributes include what that choice looked at (the QuotaSpecs' clauses,
// the quota rules' matches and instances). The precondition then stays
// cacheable: a client that reuses it asks for those quotas by name.
//
// # Shadow rules
//
// A rule with shadow: true runs like any other, but what it would deny is
// only counted (sidemix_shadow_denials_total{rule}, once per request) and
// logged at debug level; its handlers' failures are counted and never deny,
// whatever its failPolicy. Its check handlers' valid duration and use count
// still bound the answer, so it is asked as often as it would be if it
// enforced. Its quota actions allocate from their handlers like enforcing
// ones, so a shadow copy of a quota rule on a handler of its own with the
// same params counts down the same way; a quota drawn on only by shadow
// rules is granted in full. A shadow action that names the same handler,
// quota and amount as an enforcing one shares that allocation instead of
// charging the request twice. When an enforcing check denies the request,
// no quota is allocated, shadow rules' included: denied requests consume
// nothing, and a shadow copy sees exactly the requests its enforcing twin
// sees, so their denial counts are equal.
//
// # Self metrics
//
// Beside the per-request ones (sidemix_mixer_check_requests_total{code},
// sidemix_mixer_check_duration_seconds), per rule and handler, labelled
// with config names only:
//
//   - sidemix_mixer_rule_checks_total{rule, result}: the Check requests a
//     rule's check or quota actions took part in; result allow, deny or
//     error (a handler failed, whatever the failPolicy).
//   - sidemix_mixer_denials_total{rule, handler, reason}: enforcing calls
//     that denied (policy, quota, unavailable) or failed open (fail_open).
//   - sidemix_shadow_denials_total{rule}: what shadow rules would deny.
//   - sidemix_mixer_handler_duration_seconds{handler, role}: check and
//     quota handler call latency.
//   - sidemix_mixer_quota_allocations_total{handler, quota, result}
//     (granted, denied, error) and sidemix_mixer_quota_granted_total
//     {handler, quota} (amounts).
//   - sidemix_mixer_dispatch_errors_total{handler, reason}: failed check and
//     quota calls (backend errors), by timeout, canceled, handler_error,
//     unavailable, wrong_role.
//
// # Report
//
// Report decodes the batch (malformed → InvalidArgument), evaluates every
// bag and appends each action's instances to the handler's bounded queue,
// then returns: it never waits for a handler. One goroutine per handler
// drains its queue in batches into Reporter.Report. Nothing is lost without
// a count: sidemix_mixer_report_instances_dropped_total says how many
// instances were dropped for which handler and why (queue_full,
// handler_error, no_handler, shutdown).
//
// A ReportRequest is decoded by the Mixer API's generated vtprotobuf code
// (internal/vtcodec) with its strings copied: instances queued for report
// handlers keep them, and must not keep a batch's whole body alive. They
// are copied many to an array of 4 KiB (reportBody), not one allocation
// each; the prometheus adapter copies the label values of the series it
// keeps. The bags are checked
// against the manifest as they are decoded, after the first only the
// attributes each changed (attribute.Dictionary.DecodeBatchChecked), and
// evaluated as a policy.Sequence.
//
// # OTLP ingest
//
// With Config.OTLPGRPCAddr or Config.OTLPHTTPAddr set (flags --otlp-grpc and
// --otlp-http; both off by default, the usual ports being 4317 and 4318),
// the mixer is an OTLP receiver: the collector's trace and log services over
// gRPC (gzip accepted), and POST /v1/traces and /v1/logs over HTTP with
// protobuf or JSON bodies (Content-Type application/x-protobuf or
// application/json, optionally gzipped), answered in the same encoding.
// Apps instrumented with an OpenTelemetry SDK send their own spans and logs
// there, and each span and log record becomes an attribute bag that goes
// through the report rules exactly like a bag a proxy reported, so the
// same rules and adapters (tracing, logs, Kafka) handle both.
//
// A span's bag holds request.trace.id, request.trace.span_id,
// request.trace.parent_span_id (absent for a root), request.trace.state and
// request.trace.sampled (always true: an exported span was recorded);
// request.time and response.time (start and end; context.time is the end)
// and response.duration; span.name, span.kind (server, client, producer,
// consumer or internal) and span.status (unset, ok or error);
// span.attributes, the span's attributes as text (maps and lists as JSON).
// context.reporter.kind is "outbound" for client and producer spans (the
// caller's side, like a proxy's client span) and "inbound" for the others,
// so the tracespan instance of examples/default gets client and server
// right; the resource's service.name (service.namespace) becomes
// source.workload.name (.namespace) of an outbound span and
// destination.workload.name (.namespace) of an inbound one: the workload
// the span belongs to, in the place TraceSpan.ServiceName looks. An
// outbound span's peer.service becomes destination.workload.name. The HTTP
// semantic conventions, current names first and the older ones SDKs still
// send after, fill request.method (http.request.method, http.method),
// request.url_path and request.path (url.path + url.query, http.target, or
// the path of url.full / http.url), request.host (server.address,
// http.host, net.host.name, net.peer.name; also destination.service.host
// of an outbound span), request.scheme, request.useragent, response.code
// (http.response.status_code, http.status_code). An instance written for proxies
// names app spans better with default(span.name, ...), default(span.kind,
// ...) and default(span.status, ...).
//
// A log record's bag holds log.body (as text), log.severity (the severity
// text, else the name of the severity number's range: TRACE, DEBUG, INFO,
// WARN, ERROR, FATAL), log.attributes (as text), request.trace.id and
// request.trace.span_id when the record has them, request.time and
// context.time (the timestamp, else the observed timestamp), and
// source.workload.name (.namespace) from the resource.
//
// Every bag made from a span or a log record has context.protocol "otlp"
// (a proxy reports http, grpc or tcp). These bags pass every report rule,
// so a rule meant only for the proxies' requests (request counts, access
// logs) leaves them out with default(context.protocol, "http") != "otlp",
// as examples/default's do.
//
// # OTLP forwarding
//
// A rule may instead send an otlp instance (adapters/template.OTLP): an
// app's telemetry exactly as it arrived, as an OpenTelemetry Collector
// forwards it. Such a rule is evaluated once per resource of an export
// (ResourceSpans, ResourceLogs), over a bag of context.protocol "otlp" and
// source.workload.name (.namespace) from the resource's service.name
// (service.namespace), whatever its spans' kinds; its match may read
// nothing else (policy.OTLPAttributes; a load error otherwise). Each
// matching resource goes to the handlers as the bytes the app sent, to the
// instances whose signal param is its signal (or empty).
//
// Protobuf bodies (gRPC, and HTTP with application/x-protobuf) are walked
// in their wire form, without decoding a span: the walk checks the body is
// well formed exactly as pdata's unmarshaler would (FuzzWalkTraces checks
// the two agree), counts the spans and cuts the body into its resources. A
// span without ids is cut out of its resource before forwarding; a
// resource whose spans sit only in the deprecated
// instrumentation_library_spans is renumbered to scope_spans, as pdata
// migrates it. A JSON body is decoded and handled in its protobuf form.
//
// An OTLP/gRPC body is copied out of gRPC's buffers into a pooled buffer
// of the receiver's own (up to 64 buffers of up to 4 MiB are kept). The
// forwarded instances point into it and carry Release
// (adapters/template.OTLP): the buffer goes back to the pool once the
// receiver and every handler it was given to have released it. A handler
// that copies what it forwards (kafka with otlpBatch; otlp and jaeger,
// through adapters/internal/rawotlp) releases it at once;
// one that keeps the bytes, or does not know of Release, leaves the buffer
// to the garbage collector. New bodies then rarely need fresh pages, whose
// zeroing by the kernel was up to a quarter of the mixer's CPU at a
// million spans per second when the Kafka buffer's swings made the heap
// give memory back and take it again.
//
// Per config, the mixer works out once whether any report rule may match
// the bag of a span or log record: a rule with report actions whose match,
// over a bag holding only context.protocol "otlp", is false having read
// nothing else (as examples/default's default(context.protocol, "http") !=
// "otlp" rules are) cannot, and policy.Snapshot.MayMatch tells. When none
// may, spans and log records are never decoded into bags: a request costs
// the walk and whatever the forwarding handlers do. Otherwise they are
// decoded as above, and the resources are forwarded too; the counts of
// sidemix_mixer_otlp_received_total are the same either way.
//
// A span without a trace or span id is rejected and reported back in the
// response's partial success; a request that cannot be decoded gets
// InvalidArgument over gRPC and, over HTTP, 400 with a google.rpc.Status (415
// for another content type or encoding, 413 over 16 MiB). All of it is
// counted in sidemix_mixer_otlp_received_total{signal=traces|logs,
// result=accepted|rejected|malformed}; malformed counts requests, the
// others spans and log records.
//
// # Config reloads
//
// The config paths are watched with fsnotify (folders recursively, files
// through their folder, so renames by editors and config maps are seen) and
// polled every Config.ConfigPollInterval as a fallback. A change loads the
// whole config again. An invalid config is logged issue by issue, counted
// and shown on /debug/config and by LastReloadError, and the old config
// keeps serving. A valid one gets new handlers and queues, is swapped in
// atomically, and the old state is retired in the background: its in-flight
// requests finish, its queues drain into its handlers, then the handlers are
// closed. A reload whose files did not change keeps the running handlers
// (and so their quota counters and connections).
//
// # Admin endpoints
//
// /healthz answers 200 while the process runs; /readyz 200 once the gRPC
// listener is up and 503 from the start of Shutdown; /metrics serves the
// mixer's own registry (Go and process collectors, the sidemix_mixer_*
// metrics and the handlers' self metrics); /debug/config shows the active
// snapshot (digest, counts, handler status, the config itself) and the last
// reload's outcome, as JSON or, with ?format=yaml or Accept:
// application/yaml, as YAML. Secrets stay out of it: a handler whose params
// are an adapters.Redactor shows its Redacted() copy; in every handler's
// params, values under keys naming a password, secret, token, credential or
// API or private key are shown as "xxxxx", and so are the passwords of URLs
// (redis://:xxxxx@host), in handler and load errors too. The same URL redaction applies to
// UNAVAILABLE messages and create-failure logs.
package mixer
