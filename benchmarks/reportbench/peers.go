package reportbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
)

func (s *Suite) startJaeger() error {
	j, err := harness.StartJaeger(s.opts.Jaeger, s.opts.WorkDir, "")
	if err != nil {
		return err
	}
	s.jaeger, s.jaegerAddr = j.Proc, j.Addr
	return nil
}

// otelcolConfig is the collector's side of the comparison: OTLP/gRPC in,
// the batch processor (1000 spans or its default 200ms: its default of 8192
// spans makes ~2 MB records, over the broker's 1 MB message.max.bytes), the
// kafka exporter (OTLP protobuf, one record per batch) to the suite's broker;
// its own metrics on a loopback port so delivered spans can be counted.
const otelcolConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  batch:
    send_batch_size: 1000
    send_batch_max_size: 1000
exporters:
  kafka:
    brokers: [%s]
    traces:
      topic: otel.spans
      encoding: otlp_proto
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %s
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [kafka]
`

func (s *Suite) runSpansOtelcol(ctx context.Context, name string, rate float64) (Measurement, error) {
	addrs, err := harness.FreeAddrs(2)
	if err != nil {
		return Measurement{}, err
	}
	cfg := filepath.Join(s.opts.WorkDir, "otelcol.yaml")
	text := fmt.Sprintf(otelcolConfig, addrs[0], s.brokerAddr, harness.Port(addrs[1]))
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return Measurement{}, err
	}
	p, err := harness.Start(harness.Spec{Name: "otelcol", Path: s.opts.Otelcol, Args: []string{"--config", cfg},
		Env: s.serverEnv(), CPUs: s.opts.ServerCPUs})
	if err != nil {
		return Measurement{}, err
	}
	defer p.Stop(20 * time.Second)
	metrics := "http://" + addrs[1] + "/metrics"
	if err := p.WaitReady(30*time.Second, func() error {
		if err := harness.TCPReady(addrs[0])(); err != nil {
			return err
		}
		return harness.HTTPReady(metrics)()
	}); err != nil {
		return Measurement{}, err
	}
	counters := map[string]*regexp.Regexp{
		"sent":           regexp.MustCompile(`^otelcol_exporter_sent_spans(?:_total)?\{.*\} (\S+)`),
		"send_failed":    regexp.MustCompile(`^otelcol_exporter_send_failed_spans(?:_total)?\{.*\} (\S+)`),
		"enqueue_failed": regexp.MustCompile(`^otelcol_exporter_enqueue_failed_spans(?:_total)?\{.*\} (\S+)`),
		"refused":        regexp.MustCompile(`^otelcol_receiver_refused_spans(?:_total)?\{.*\} (\S+)`),
		// The exporter's sending queue (batches), as the kafka handler's
		// buffer on the sidemix side.
		"queue_size": regexp.MustCompile(`^otelcol_exporter_queue_size\{.*\} (\S+)`),
	}
	return s.runSpans(ctx, name, rate, &server{Proc: p, metricsURL: metrics}, addrs[0], counters, drainSpec{
		sent: []string{"sent"}, dropped: []string{"send_failed", "enqueue_failed", "refused"}, gauges: []string{"queue_size"}})
}
