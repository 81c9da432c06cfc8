// Package proxy is the sidemix sidecar: it runs beside one service
// instance, asks the mixer before any request reaches the app or leaves it,
// and reports every request afterwards.
//
// # Listeners
//
// The inbound listener (Config.Inbound) takes requests for the service and
// forwards them to the app (Config.App). The optional outbound listener
// (Config.Outbound) takes the app's own calls: the app sends them there with
// a Host header naming the callee, which Config.Upstreams maps to host:port
// (the Host's port is ignored when matching; an unknown Host is answered 503
// "no route", flag NR). Both speak HTTP/1.1 and HTTP/2 without TLS (h2c);
// gRPC is forwarded over h2c, everything else over pooled HTTP/1.1
// connections. Forwarding is net/http/httputil.ReverseProxy with its
// Rewrite, ModifyResponse and ErrorHandler hooks; the Host header is kept.
// Upgrades (WebSocket) are tunnelled and reported with response.code 101;
// gRPC streams pass message by message with their trailers.
//
// # Per request
//
//  1. Build the attribute bag (below) once.
//  2. Check it with the mixer (mixerclient: cached, quota from a local pool
//     when prefetch is on). A denial is answered here and the app never
//     sees the request: PermissionDenied → 403, Unauthenticated → 401,
//     ResourceExhausted → 429, anything else (the mixer unreachable, fail
//     closed, included) → 503; the body is the mixer's message and a
//     newline. gRPC requests get a trailers-only response carrying
//     grpc-status and grpc-message instead. A 429 carries Retry-After and,
//     when the mixer told the quota's figures, RateLimit-Limit,
//     RateLimit-Remaining and RateLimit-Reset (IETF httpapi draft; seconds,
//     rounded up). Allowed responses carry the RateLimit-* headers too when
//     the request drew on a quota whose figures are known (as this proxy
//     last heard them: the mixer's remaining plus the tokens pooled here),
//     unless the app set its own. An allowed decision's request header
//     operations are applied before forwarding, its response header
//     operations to the response; a direct response is sent instead of
//     forwarding.
//  3. Forward, counting the bytes both ways. A body of known length up to
//     16 KiB (not gRPC, no Expect) is read whole first and sent to the app
//     with the head in one write; one that ends early is answered 400
//     (flag DC) and never forwarded. Larger bodies stream.
//  4. Extend the bag with the response and hand it to the mixer client's
//     report buffer, which never blocks. Denied and unroutable requests are
//     reported too.
//
// # Attributes
//
// Every request: context.reporter.kind (inbound|outbound),
// context.reporter.uid, context.protocol (grpc when the content type is
// application/grpc*, else http), context.time, connection.mtls (false),
// source.ip (the connection's peer), request.id (X-Request-Id, generated
// as a UUID when missing and forwarded), request.path (path and query),
// request.url_path, request.query_params (first value each), request.host,
// request.method, request.scheme, request.useragent, request.time,
// request.size (Content-Length; for a body of unknown length, the bytes
// read, in the report only), request.headers (every header, keys lower
// case, first value; Host is in request.host). In the report also:
// request.total_size (approximate head plus body), response.code,
// response.size, response.total_size, response.headers, response.duration,
// response.time, response.grpc_status (from the grpc-status trailer or
// header) and context.proxy_error_code: "-" when the proxy had nothing to
// say, UAEX denied by policy, NR no route, UF upstream connect failure, UC
// upstream broke off, DC the caller went away.
//
// Inbound, the destination is this workload: destination.workload.name,
// .namespace and .uid, destination.service.name, .namespace and .host
// (SERVICE.NAMESPACE.svc.cluster.local), destination.name, .namespace,
// .principal, .uid, destination.ip and destination.port (the inbound
// listener's). The source comes from the X-Sidemix-Source-Workload,
// -Namespace, -Principal and -Uid headers that the calling proxy's outbound
// side sets (source.workload.name and source.name, source.workload.namespace
// and source.namespace, source.principal, source.uid and
// source.workload.uid); they are removed before the app sees the request.
// Without mTLS they are as trustworthy as the network between the proxies.
//
// Outbound, the source is this workload (source.workload.*, source.name,
// source.namespace, source.uid, source.principal) and the destination the
// upstream the Host named: "ratings" is ratings in this namespace,
// "ratings.shop" ratings in shop, and a longer name is taken as the host
// itself; destination.ip and destination.port are the upstream address's.
// The outbound side sets the X-Sidemix-Source-* headers, overwriting
// whatever the app sent.
//
// The callee's inbound side answers with X-Sidemix-Peer-Workload,
// -Namespace, -Principal and -Uid (its own identity, replacing any the app
// set), and the outbound side takes them off the answer into its report:
// destination.workload.name and destination.name, .workload.namespace and
// destination.namespace, destination.principal, destination.uid and
// destination.workload.uid. That is Istio's metadata exchange in plain
// headers; a callee without a sidecar leaves them unknown.
//
// In the report also the span this proxy made for the request (below):
// request.trace.id, request.trace.span_id, request.trace.parent_span_id
// (absent for a trace's root), request.trace.sampled and
// request.trace.state (the W3C tracestate, when there is one). Its start
// and end are request.time and response.time.
//
// # Tracing
//
// Every request gets a span: a server span on the inbound side, a client
// span on the outbound side. The caller's span context is read from W3C
// traceparent (and tracestate), else the b3 header, else the X-B3-TraceId,
// -SpanId, -ParentSpanId, -Sampled and -Flags headers; when one is valid
// the span is its child, in its trace, with its sampling decision
// (parent-based sampling; B3 without a decision, like a request with no
// context at all, is decided here). Otherwise a new trace starts with
// random ids, sampled with probability Config.TraceSampling, decided from
// the trace id as OpenTelemetry's TraceIDRatioBased does. A malformed
// header is ignored (the next format is tried, else a new trace starts)
// and counted. Before forwarding, the proxy replaces every trace header
// with its own span as the parent: traceparent, tracestate, and B3
// multi-header (X-B3-Flags: 1 instead of X-B3-Sampled for B3 debug). So an
// app that copies either set from its request to its outbound calls keeps
// them in the trace: the outbound side's client span is the child of the
// inbound server span, and the callee's server span the child of that
// client span. An app that forwards nothing starts a new trace with each
// call. request.headers in the report keep the trace headers as received.
// Spans reach the mixer only inside the reports; a tracespan instance over
// request.trace.* (examples/default/tracing.yaml) turns them into spans.
//
// A request whose traceparent is over 512 bytes, tracestate over 8 KiB in
// total, b3 or an X-B3-* header over 512 bytes, or whose request line and
// headers exceed Config.MaxRequestHeaderBytes (default 60 KiB, Envoy's)
// is answered 431 and neither checked nor forwarded; it is reported
// without those headers (without any when the total was too large) and
// without a span. net/http itself answers 431 to heads a further 4 KiB
// over the limit, without a report.
//
// # Routes
//
// With Config.Routes (--routes DIR), the outbound side routes by a folder
// of Istio ServiceEntry, VirtualService and DestinationRule files (see
// proxy/routing) before it looks at Config.Upstreams: the Host header
// (port optional) picks a VirtualService or a ServiceEntry host, the first
// http[] route whose match[] holds picks the route, and its weights pick
// the destination, a (host, subset, port) cluster of proxy/upstream
// (balancing, health checks, outlier detection, connection pool limits;
// one per cluster, updated in place on reload). A host none of whose
// routes match is answered 404 (flag NR). Per route, in this order: the
// check as always; fault injection (a delay, flag DI; an abort with its
// status, flag FI); a redirect (its code and Location) instead of
// forwarding; the route's, then the destination's request header
// operations; mirroring (a copy to the mirror cluster with "-shadow"
// appended to the Host, for the given share of requests, answer ignored);
// rewrite of the path (or the matched prefix) and the authority; then the
// forward. The route's timeout covers every try and the response body
// (504, flag UT); each try picks an endpoint and is bounded by
// perTryTimeout. A try is retried, after a jittered exponential backoff
// (25ms base, 250ms cap), when retryOn covers its outcome: 5xx (any 5xx,
// connect failures, resets, per-try timeouts), gateway-error (502, 503,
// 504 and the same failures), connect-failure, reset, and
// retriable-status-codes (the codes listed in retryOn). Only replayable
// requests are retried or mirrored: no body, or a body of known length up
// to 64 KiB, which is then buffered. The retry budget
// (Config.RetryBudgetPercent, default 20, and RetryBudgetMinConcurrency,
// default 3; Envoy's retry_budget) lets a cluster's retries in flight be at
// most that share of its requests in flight, and connectionPool.http
// .maxRetries caps them too; a refused or last failing retry is flagged
// URX, and the last answer is passed on. Failures name Envoy's response
// flags in context.proxy_error_code (the response_flags label of the
// metrics in examples/default): UT timeout, URX retries exhausted, UO pool
// overflow (503), UH no healthy endpoint (503), UF connect failure (503),
// UC reset (503), DI and FI faults, NR no route. The report's route.name
// is the matched route's http[].name, else VIRTUALSERVICE.INDEX (its
// 0-based place in http[]), else, for a ServiceEntry host's default
// route, the host; its destination.ip, destination.port and
// destination.labels (such as version, so the metrics split traffic by
// subset) are those of the endpoint of the last try. A cluster whose
// loadBalancer is PASSTHROUGH sends every try to the request's own Host
// (after a rewrite of the authority) on the Host's port, else the
// service port the route chose. Endpoints given by
// host name become one endpoint per address they resolve to, resolved
// again every Config.DNSRefreshRate (default 60s, Istio's); a failed
// lookup keeps the last addresses. An invalid change
// of the folder is logged issue by issue with file:line and the previous
// routes keep serving; requests in flight finish on the clusters they
// started on.
//
// # TCP listeners
//
// Config.TCP adds plain TCP pass-through listeners (--tcp-inbound,
// --tcp-outbound). Each accepted connection is checked with the mixer
// (context.protocol "tcp", connection.id, source.ip, and the destination:
// this workload inbound, the Upstream's service outbound), joined to a new
// connection to the Upstream, and copied both ways, a half-close passed on.
// It is reported when it opens, every Config.TCPReportInterval while it
// lasts (connection.event "continue") and when it closes, each report with
// connection.received.bytes and connection.sent.bytes since the previous
// one, their _total, and connection.duration; the close report carries
// context.proxy_error_code: UAEX when denied (the connection is closed at
// once), UF when the upstream cannot be reached, UC or DC when a side
// broke off. examples/default turns these into Istio's istio_tcp_* metrics.
// Shutdown lets connections end until its deadline, then cuts them.
//
// # Mixers and fail policy
//
// Config.Mixer lists one mixer or several, comma-separated (--mixer a,b,c):
// checks and reports are balanced over the healthy ones, a failing mixer
// is ejected for a while, and a Check is retried once on another mixer
// with the same deduplication id (see mixerclient). When no mixer answers
// a Check in time, the fail policy decides: Config.CheckFailOpen for
// every service, overridden per service by Config.CheckFailOpenFor, whose
// keys are "inbound" (requests to this service) and the names of
// Config.Upstreams (the app's calls to them). On the command line both are
// one flag: --check-fail-policy closed,inbound=open,ratings=open.
//
// # Admin and metrics
//
// Config.Admin serves /healthz, /readyz (503 while shutting down),
// /debug/pprof/ (Go's profiles, to loopback callers only; others get 403)
// and /metrics from the proxy's own registry: sidemix_proxy_requests_total
// {direction,code}, sidemix_proxy_request_duration_seconds{direction},
// sidemix_proxy_response_flags_total{direction,flag},
// sidemix_proxy_traces_total{direction,origin} (origin started or
// continued), sidemix_proxy_trace_headers_malformed_total{direction,header}
// (traceparent, tracestate, b3, x-b3),
// sidemix_proxy_headers_too_large_total{direction,header} (those or
// total), sidemix_proxy_tcp_connections_opened_total{direction},
// sidemix_proxy_tcp_connections_closed_total{direction,flag},
// sidemix_proxy_tcp_connections_active{direction},
// sidemix_proxy_tcp_bytes_total{direction,flow} (flow received or sent),
// the clusters' sidemix_upstream_* metrics (see proxy/upstream), the mixer
// client's metrics (see mixerclient) and the Go runtime and process
// collectors.
//
// # Lifecycle
//
//	p, err := proxy.New(proxy.Config{Service: "reviews", Namespace: "shop",
//		Inbound: "127.0.0.1:15006", App: "127.0.0.1:9080", Mixer: "127.0.0.1:9091",
//		Admin: proxy.DefaultAdmin})
//	if err != nil { ... }            // every config problem, each naming its field
//	if err := p.Start(); err != nil { ... }
//	...
//	err = p.Shutdown(ctx)            // stop accepting, finish requests, flush reports
package proxy
