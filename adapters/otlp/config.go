package otlp

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"

	"github.com/sidemix/sidemix/adapters/internal/tlsconfig"
)

// Protocols, as written in protocol.
const (
	// ProtocolGRPC sends the OTLP trace and log services over gRPC (port
	// 4317 by convention).
	ProtocolGRPC = "grpc"
	// ProtocolHTTP POSTs OTLP protobuf to /v1/traces and /v1/logs (port
	// 4318 by convention).
	ProtocolHTTP = "http"
)

// Compressions, as written in compression.
const (
	CompressionGzip = "gzip"
	CompressionNone = "none"
)

// Defaults.
const (
	DefaultTimeout         = 5 * time.Second
	DefaultMaxBatchSize    = 512
	DefaultFlushInterval   = time.Second
	DefaultMaxQueueSize    = 10000
	DefaultInitialInterval = 100 * time.Millisecond
	DefaultMaxInterval     = 5 * time.Second
	DefaultMaxElapsedTime  = 30 * time.Second
)

// redactedValue replaces header values wherever params are shown.
const redactedValue = "xxxxx"

// Config is the otlp adapter's params.
type Config struct {
	// Endpoint is host:port for grpc, and for http a URL
	// (http://host:4318 or https://...) to which /v1/traces and /v1/logs
	// are appended.
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc (the default) or http.
	Protocol string `yaml:"protocol"`
	// Headers go with every request (gRPC metadata or HTTP headers), e.g.
	// an API key. Their values are secrets: never shown or logged.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds each attempt to send a batch.
	Timeout time.Duration `yaml:"timeout"`
	// TLS secures a grpc connection; for http the endpoint's https scheme
	// does, with these options.
	TLS TLS `yaml:"tls"`
	// Compression is gzip (the default) or none.
	Compression string `yaml:"compression"`
	// MaxBatchSize spans (or log records) buffered start a send at once.
	MaxBatchSize int `yaml:"maxBatchSize"`
	// FlushInterval is the longest an item waits in the buffer.
	FlushInterval time.Duration `yaml:"flushInterval"`
	// MaxQueueSize bounds the spans, and separately the log records,
	// buffered while sends are slow or failing; more are dropped and
	// counted.
	MaxQueueSize int `yaml:"maxQueueSize"`
	// Retry governs resending a batch the endpoint could not take.
	Retry Retry `yaml:"retry"`
}

// Retry is the `retry:` params, shared with the other adapters that send
// through handlerkit.Batcher.
type Retry = handlerkit.RetryConfig

// NewConfig returns the defaults: grpc with gzip, a 5s timeout, batches of
// up to 512 sent at least every second, 10000 buffered, retries for 30s.
func NewConfig() *Config {
	return &Config{
		Protocol:      ProtocolGRPC,
		Timeout:       DefaultTimeout,
		Compression:   CompressionGzip,
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
	https := false
	switch c.Protocol {
	case ProtocolGRPC:
		if c.Endpoint == "" {
			add("endpoint: required (host:port of the OTLP/gRPC receiver)")
		} else if host, port, err := net.SplitHostPort(c.Endpoint); err != nil || host == "" {
			add("endpoint: %q is not host:port", c.Endpoint)
		} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			add("endpoint: %q has no valid port", c.Endpoint)
		}
	case ProtocolHTTP:
		if c.Endpoint == "" {
			add("endpoint: required (URL of the OTLP/HTTP receiver, e.g. http://127.0.0.1:4318)")
		} else if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("endpoint: %q is not an http:// or https:// URL", c.Endpoint)
		} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			add("endpoint: %q: a query, fragment or user info is not allowed", redactURL(u))
		} else {
			https = u.Scheme == "https"
			if c.TLS.Enabled && !https {
				add("tls.enabled: TLS over http needs an https:// endpoint")
			}
		}
	default:
		add("protocol: unknown protocol %q (want %s or %s)", c.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			add("headers: %q is not a header name", k)
		}
	}
	if c.Timeout <= 0 {
		add("timeout: must be positive, got %v", c.Timeout)
	}
	switch c.Compression {
	case CompressionGzip, CompressionNone:
	default:
		add("compression: unknown compression %q (want %s or %s)", c.Compression, CompressionGzip, CompressionNone)
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
	errs = append(errs, c.TLS.Validate(c.Protocol == ProtocolHTTP && https, "tls.enabled false, or not an https endpoint"))
	return errors.Join(errs...)
}

// Redacted is the params with every header value replaced, for
// /debug/config and logs.
func (c *Config) Redacted() any {
	r := *c
	if c.Headers != nil {
		r.Headers = maps.Clone(c.Headers)
		for k := range r.Headers {
			r.Headers[k] = redactedValue
		}
	}
	return &r
}

// useTLS reports whether the connection is secured.
func (c *Config) useTLS() bool {
	if c.Protocol == ProtocolHTTP {
		return strings.HasPrefix(strings.ToLower(c.Endpoint), "https:")
	}
	return c.TLS.Enabled
}

func redactURL(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = url.User(redactedValue)
	return c.String()
}
