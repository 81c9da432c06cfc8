// Package reportbench measures sidemix's report path on real processes: a
// `sidemix mixer` pinned to one core running examples/default's telemetry
// (Prometheus metrics, the access log to /dev/null) plus a kafka handler to
// a kfakebroker process and the jaeger handler to a real Jaeger, fed Report
// batches as proxy/mixerclient encodes them; and, side by side, the same
// OTLP spans sent to the mixer's OTLP ingest (rule otlp instance, the
// spans as received → kafka, otlp_proto; spans-sidemix-tracespan sends
// examples/default's tracespan instead) and to an OpenTelemetry Collector
// (otlp → batch → kafka) on the same broker. Both span servers get the
// same load: export requests marshalled once before the run and sent as
// bytes (internal/rawproto's codec), so the generator's core is not spent
// marshalling spans. Every figure is charged to the server's own CPU time
// from /proc over the measured window (benchmarks/internal/procstat).
// benchmarks/cmd/reportbench runs it; benchmarks/README.md ("Report path")
// holds the results.
//
// A round runs Scenarios in order, each against a fresh server; New starts
// the broker (and Jaeger) once for all rounds:
//
//	s, err := reportbench.New(reportbench.Options{Sidemix: "bin/sidemix", Kfake: "bin/kfakebroker",
//		Examples: "examples/default", WorkDir: dir, ServerCPUs: "0"})
//	...
//	m, err := s.Run(ctx, "report-fixed")
//
// The broker keeps every record in memory (about 3 GB per round at the
// default window): fine for three rounds on these machines, not for dozens.
package reportbench
