// Package upstream holds a sidecar's clusters: the endpoints of one
// service (host, subset, port), their health, the balancer that spreads
// requests over them and the connection pool that carries the requests.
//
// A caller builds one Cluster per destination, picks an endpoint for each
// request, forwards the request there through the cluster's Transport and
// reports the outcome:
//
//	c := upstream.NewCluster("reviews|v2|9080", eps, policy, upstream.Options{Registerer: reg, Logger: log})
//	pk, err := c.Pick(ctx) // ErrNoHealthy (UH) or ErrOverflow (UO)
//	if err != nil { ... }
//	req.URL.Host = pk.Addr
//	resp, err := c.Transport().RoundTrip(req) // ErrConnectFailure (UF), ErrOverflow (UO)
//	... read the response ...
//	pk.Done(resp.StatusCode, err) // exactly once; status 0 when err != nil
//
// # Balancing
//
// ROUND_ROBIN (smooth weighted round robin), LEAST_REQUEST (two weighted
// draws, the one with fewer requests in flight per unit of weight wins),
// RANDOM (weighted) and PASSTHROUGH (the request's original destination,
// given with WithOriginalDestination). Endpoint weights default to 1.
//
// # Health
//
// An endpoint takes traffic when it passes the active health checks (if
// any; endpoints start healthy) and is not ejected. Outlier detection is
// passive: Done counts consecutive 5xx answers and consecutive gateway
// errors (502, 503, 504 and local failures such as connect failures and
// resets); an endpoint reaching either threshold is ejected for
// BaseEjectionTime × the number of its ejections (capped), unless
// MaxEjectionPercent of the endpoints are already out. It returns when the
// time is over (at the next pick or sweep). When fewer than
// PanicThreshold percent of the endpoints are healthy the cluster balances
// over all of them, as Envoy does, instead of answering "no healthy
// upstream". Update keeps the state of endpoints whose address stays.
//
// # Connection pool
//
// Each cluster has one net/http Transport for HTTP/1.1 and one for h2c
// (gRPC, or everything with Policy.HTTP2). HTTP2MaxRequests caps requests
// in flight over both (checked by Pick); MaxConnections caps HTTP/1.1
// connections, and so HTTP/1.1 requests in flight, with at most
// HTTP1MaxPendingRequests waiting for one (checked by RoundTrip);
// MaxRequestsPerConnection retires an HTTP/1.1 connection after that many
// requests; ConnectTimeout and IdleTimeout are the Transport's dial
// timeout and IdleConnTimeout.
//
// # Metrics and logs
//
// sidemix_upstream_endpoint_healthy{cluster,endpoint},
// sidemix_upstream_ejections_total, sidemix_upstream_ejections_skipped_total,
// sidemix_upstream_overflows_total{limit}, sidemix_upstream_no_healthy_total,
// sidemix_upstream_panic_picks_total, sidemix_upstream_health_checks_total{result}
// and sidemix_upstream_connections, all labelled by cluster, on the
// Registerer of Options. Ejections, returns, health changes and endpoint
// changes are logged.
package upstream
