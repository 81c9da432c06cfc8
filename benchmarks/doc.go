// Package benchmarks measures sidemix. Two kinds live here:
//
//   - hot-path micro-benchmarks (go test -bench): bag encoding and decoding
//     here, rule matching, the proxy's check cache and report enqueue beside
//     their packages; `make bench-micro`.
//   - harnesses that start the real processes and drive them with closed-loop
//     load, side by side with peers in the same run: policybench (the policy
//     path: mixer Checks, redisquota against envoyproxy/ratelimit, quota
//     prefetch; `make bench-policy`, command cmd/policybench), reportbench
//     (the report path; `make bench-report`) and meshbench (the whole suite:
//     Istio's fortio latency set-up through sidemix sidecars, nginx and
//     haproxy, ceilings, scaling, the mixer rows; `make bench` and
//     `make bench-quick`, command cmd/meshbench).
//
// The harnesses share internal/load (closed-loop runner, fixed-precision
// latency histogram), internal/procstat (a process's CPU and memory from
// /proc) and internal/harness (start, pin with taskset, stop; Redis; peers
// built with go install). A new suite is a package like policybench: its
// scenarios return Measurements, run in interleaved rounds, and render as
// Markdown; each has a TestSmoke that runs it for a second so it cannot rot.
// Results and the commands that produced them are in README.md.
package benchmarks
