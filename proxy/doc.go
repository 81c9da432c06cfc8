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
//  3. Forward, counting the bytes both ways.
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
// Config.Admin serves /healthz, /readyz (503 while shutting down) and
// /metrics from the proxy's own registry: sidemix_proxy_requests_total
// {direction,code}, sidemix_proxy_request_duration_seconds{direction},
// sidemix_proxy_response_flags_total{direction,flag}, the mixer client's
// metrics (see mixerclient) and the Go runtime and process collectors.
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
