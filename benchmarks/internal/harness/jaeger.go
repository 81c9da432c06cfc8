package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// jaegerConfig is internal/testenv's: Jaeger v2 all-in-one with memory
// storage, every port on loopback.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [jaeger]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  jaeger:
    protocols:
      grpc:
        endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// Jaeger is a Jaeger v2 all-in-one the harness started.
type Jaeger struct {
	*Proc
	// Addr is its collector's gRPC address (jaeger-idl api_v2).
	Addr string
}

// StartJaeger starts the Jaeger binary bin (internal/testenv's cached
// build) with its config written into dir, pinned to cpus when set, and
// waits until its collector accepts connections.
func StartJaeger(bin, dir, cpus string) (*Jaeger, error) {
	addrs, err := FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, addrs[0], addrs[1], addrs[2]), 0o644); err != nil {
		return nil, err
	}
	p, err := Start(Spec{Name: "jaeger", Path: bin, Args: []string{"--config", cfg}, CPUs: cpus})
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(60*time.Second, TCPReady(addrs[2])); err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, err
	}
	return &Jaeger{Proc: p, Addr: addrs[2]}, nil
}
