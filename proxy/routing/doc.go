// Package routing is the sidecar's traffic configuration: Istio's
// ServiceEntry, VirtualService and DestinationRule, loaded from a folder of
// YAML files (`sidemix proxy --routes DIR`) and compiled into an immutable
// [Table] that the outbound listener asks, for every request, where it goes.
// It is pure apart from [Watch]: no network, no clocks.
//
// # Documents
//
// The kinds are read under apiVersion networking.sidemix.dev/v1 and under
// Istio's networking.istio.io/v1, v1beta1 and v1alpha3, with Istio's field
// names, so existing files load unchanged. Loading is strict: an unknown
// key, a wrong type, a route to a host no ServiceEntry has, an unknown
// subset, weights not summing to 100, a negative duration are errors naming
// file:line, document and field ([LoadError]). Fields Istio has and sidemix
// does not act on (tls, corsPolicy, exportTo, gateways, location, ...) and
// other Istio kinds (Gateway, Sidecar, ...) are warnings naming file:line
// ([Table.Warnings]), never silently dropped.
//
//   - ServiceEntry: hosts, ports[]{number, name, protocol, targetPort},
//     resolution (STATIC: endpoints are IPs; DNS, DNS_ROUND_ROBIN, NONE:
//     endpoints may be host names, which the proxy resolves into one
//     endpoint per address and resolves again periodically; without
//     endpoints the hosts themselves), endpoints[]{address, ports{name:
//     port}, labels, weight}. A host of the form NAME.NS.svc.cluster.local
//     also answers to NAME.NS.svc, NAME.NS and NAME in Host headers.
//   - VirtualService: hosts, http[]{name, match[]{uri, method, authority,
//     headers, withoutHeaders, queryParams (each exact, prefix or regex;
//     regex is RE2 over the whole value), port, ignoreUriCase}, route[]
//     {destination{host, subset, port.number}, weight, headers}, timeout,
//     retries{attempts, perTryTimeout, retryOn}, fault{delay{percentage,
//     fixedDelay}, abort{percentage, httpStatus}}, rewrite{uri, authority},
//     redirect{uri, authority, port, scheme, redirectCode}, headers
//     {request, response}{set, add, remove}, mirror, mirrorPercentage}.
//     Routes are tried in order, the first match wins; a match[] list
//     matches when any entry does, an entry when all its conditions hold.
//   - DestinationRule: host, trafficPolicy{loadBalancer.simple,
//     connectionPool{tcp{maxConnections, connectTimeout}, http
//     {http1MaxPendingRequests, http2MaxRequests, maxRequestsPerConnection,
//     maxRetries, idleTimeout}}, outlierDetection{consecutive5xxErrors,
//     consecutiveGatewayErrors, interval, baseEjectionTime,
//     maxEjectionPercent, minHealthPercent}, healthCheck (a sidemix
//     extension: path, interval, timeout, healthyThreshold,
//     unhealthyThreshold)}, subsets[]{name, labels, trafficPolicy}; a
//     subset's trafficPolicy replaces the rule's section by section.
//
// A ServiceEntry host without a VirtualService gets a default route to all
// its endpoints on the port the Host header names (else its first port).
// A route without retries gets Istio's default: two more attempts on
// connect failures and resets ([DefaultRetries]); retries: {attempts: 0}
// disables them. retryOn without a value retries connect failures, resets
// and 503. A route's [Route.Name] (http[].name, else VIRTUALSERVICE.INDEX
// with INDEX its 0-based place in http[], else the host for a default
// route) is what the proxy reports as route.name.
//
// # Clusters
//
// Every (host, subset, port) a route may reach is a [Cluster]: the
// ServiceEntry endpoints whose labels carry the subset's labels, on the
// port named like the service port (else targetPort, else the port
// itself), with the merged traffic [Policy]. The proxy keeps one upstream
// cluster (proxy/upstream) per key and updates it on reload.
//
// # Reload
//
// A [Watcher] reloads the folder whenever it changes (file events plus a slow
// poll, bursts debounced), as the mixer's config watch does; an invalid
// change is logged issue by issue and the previous table keeps serving.
package routing
