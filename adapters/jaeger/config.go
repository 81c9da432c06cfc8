package jaeger

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"

	"github.com/sidemix/sidemix/adapters/internal/tlsconfig"
)

// Protocols, as written in protocol.
const (
	// ProtocolGRPC sends Jaeger's api_v2 CollectorService.PostSpans (the
	// jaeger receiver's gRPC endpoint, port 14250 by convention).
	ProtocolGRPC = "grpc"
	// ProtocolOTLP sends OTLP traces over gRPC (port 4317 by convention).
	ProtocolOTLP = "otlp"
)

// Defaults.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultMaxBatchSize  = 2000
	DefaultFlushInterval = time.Second
	DefaultMaxQueueSize  = 10000

	DefaultInitialInterval = 100 * time.Millisecond
	DefaultMaxInterval     = 5 * time.Second
	DefaultMaxElapsedTime  = 30 * time.Second
)

// Config is the jaeger adapter's params.
type Config struct {
	// Endpoint is the collector's host:port.
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc (api_v2 PostSpans, the default) or otlp.
	Protocol string `yaml:"protocol"`
	// TLS secures the connection; off by default (plaintext).
	TLS TLS `yaml:"tls"`
	// Timeout bounds each send.
	Timeout time.Duration `yaml:"timeout"`
	// MaxBatchSize spans buffered start a send at once.
	MaxBatchSize int `yaml:"maxBatchSize"`
	// FlushInterval is the longest a span waits in the buffer.
	FlushInterval time.Duration `yaml:"flushInterval"`
	// MaxQueueSize bounds the spans buffered while sends are slow or
	// failing; spans beyond it are dropped and counted.
	MaxQueueSize int `yaml:"maxQueueSize"`
	// Retry governs resending a batch the collector could not take.
	Retry Retry `yaml:"retry"`
	// ProcessTags are added to every process (every source workload's
	// service), e.g. the mesh or cluster name.
	ProcessTags map[string]string `yaml:"processTags"`
}

// Retry is the `retry:` params, shared with the other adapters that send
// through handlerkit.Batcher.
type Retry = handlerkit.RetryConfig

// NewConfig returns the defaults: protocol grpc, a 5s timeout, batches of
// up to 500 spans sent at least every second, up to 10000 spans buffered,
// a failed batch retried from 100ms doubling to 5s, for up to 30s.
func NewConfig() *Config {
	return &Config{
		Protocol:      ProtocolGRPC,
		Timeout:       DefaultTimeout,
		MaxBatchSize:  DefaultMaxBatchSize,
		FlushInterval: DefaultFlushInterval,
		MaxQueueSize:  DefaultMaxQueueSize,
		Retry: Retry{
			Enabled:         true,
			InitialInterval: DefaultInitialInterval,
			MaxInterval:     DefaultMaxInterval,
			MaxElapsedTime:  DefaultMaxElapsedTime,
		},
	}
}

// TLS is the client TLS block shared by the adapters that dial a backend.
type TLS = tlsconfig.Client

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Endpoint == "" {
		add("endpoint: required (host:port of the Jaeger collector)")
	} else if host, port, err := net.SplitHostPort(c.Endpoint); err != nil || host == "" {
		add("endpoint: %q is not host:port", c.Endpoint)
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		add("endpoint: %q has no valid port", c.Endpoint)
	}
	switch c.Protocol {
	case ProtocolGRPC, ProtocolOTLP:
	default:
		add("protocol: unknown protocol %q (want %s or %s)", c.Protocol, ProtocolGRPC, ProtocolOTLP)
	}
	if c.Timeout <= 0 {
		add("timeout: must be positive, got %v", c.Timeout)
	}
	if c.MaxBatchSize <= 0 {
		add("maxBatchSize: must be positive, got %d", c.MaxBatchSize)
	}
	if c.FlushInterval <= 0 {
		add("flushInterval: must be positive, got %v", c.FlushInterval)
	}
	if c.MaxQueueSize < c.MaxBatchSize {
		add("maxQueueSize: %d is less than maxBatchSize %d", c.MaxQueueSize, c.MaxBatchSize)
	}
	errs = append(errs, c.Retry.Validate())
	for k := range c.ProcessTags {
		if k == "" {
			add("processTags: a tag has an empty name")
		}
	}
	errs = append(errs, c.TLS.Validate(false, "tls.enabled is false"))
	return errors.Join(errs...)
}
