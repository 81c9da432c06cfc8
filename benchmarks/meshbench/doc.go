// Package meshbench measures what a sidemix sidecar adds to a request,
// side by side with what users would otherwise run, in one run on one
// machine, the way Istio measured its published figures: fortio
// (fortio.org/fortio's periodic runner and fast HTTP client) at 1,000
// requests/s over 16 HTTP/1.1 connections with a 1 KB payload, against
// fortio's echo server as the app.
//
// A Suite starts the app, a mixer (examples/default's telemetry, a deny
// rule that does not match, a memquota far above the load, tracing to
// Jaeger when given), and every path's proxies, all on 127.0.0.1:
//
//   - direct: fortio to the app;
//   - sidemix_1: one sidecar, the app's inbound;
//   - sidemix_2: the client's outbound sidecar and the app's inbound one;
//   - sidemix_out and sidemix_out_routed (issue 6): the client's outbound
//     sidecar straight to the app, with plain --upstreams, and with
//     --routes (a VirtualService splitting 90/10 over two subsets, two app
//     instances, of a DestinationRule with outlier detection; a timeout
//     and retries): what routing costs over the plain path
//     ([Report.RoutingCost]);
//   - nginx and haproxy: plain reverse proxies (Debian packages), with
//     configs written to the work folder, no logs, keep-alive upstreams.
//
// Latency runs interleave the paths (A B C D E A B C D E …) so drift hits
// all alike; Options.Paths runs a subset. Each run reports p50/p90/p99/p99.9 from the harness's own
// histogram (under 0.8% error), the proxy processes' and the mixer's CPU
// (utime+stime of every process of the tree, from /proc/<pid>/stat) per
// 1,000 requests, and the proxies' peak RSS (VmHWM). Ceiling runs pin one
// proxy to one core and drive it closed-loop; scaling runs step the rate.
// RunMixer adds the mixer rows by calling benchmarks/policybench and
// benchmarks/reportbench with short settings.
package meshbench
