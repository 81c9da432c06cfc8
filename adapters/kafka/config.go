package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/tlsconfig"
)

// Encodings of a record's value.
const (
	EncodingJSON      = "json"
	EncodingOTLPProto = "otlp_proto"
)

// Values of requiredAcks.
const (
	AcksNone = "none"
	AcksOne  = "one"
	AcksAll  = "all"
)

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Defaults.
const (
	DefaultBatchSize    = 1000
	DefaultBatchBytes   = 1 << 20 // kafka-go's default, below Kafka's message.max.bytes
	DefaultLinger       = 10 * time.Millisecond
	DefaultBufferSize   = 100000
	DefaultBufferBytes  = 64 << 20
	DefaultMaxInFlight  = 4
	maxMaxInFlight      = 64
	DefaultWriteTimeout = 10 * time.Second
)

// Config is the kafka adapter's params.
type Config struct {
	// Brokers are the bootstrap brokers, host:port.
	Brokers []string `yaml:"brokers"`
	// Topic receives every record of the handler.
	Topic string `yaml:"topic"`
	// Key is a CEL expression over the instance whose value is the record
	// key (see the package documentation); empty means records have no key.
	Key string `yaml:"key"`
	// Encoding of record values: json or otlp_proto.
	Encoding string `yaml:"encoding"`
	// OTLPBatch (otlp_proto only) writes the spans, and the log entries,
	// of one report that share a key as one record instead of one record
	// per instance, as the OpenTelemetry Collector's kafka exporter writes
	// a batch.
	OTLPBatch bool `yaml:"otlpBatch"`
	// BatchSize is the most records in one produce batch per partition.
	BatchSize int `yaml:"batchSize"`
	// BatchBytes is the most bytes in one produce batch per partition; a
	// single record above it is dropped as too large.
	BatchBytes int64 `yaml:"batchBytes"`
	// Linger is the longest a record waits for more to join its write: a
	// lane starts a write at most once per linger (unless it holds a whole
	// write's worth), and at once when it has been idle that long.
	Linger time.Duration `yaml:"linger"`
	// RequiredAcks is none, one (the leader) or all (every in-sync
	// replica). With none, write errors cannot be seen.
	RequiredAcks string `yaml:"requiredAcks"`
	// Compression of batches: none, gzip, snappy, lz4 or zstd.
	Compression string `yaml:"compression"`
	// BufferSize bounds the records held while Kafka is slow or down;
	// records beyond it are dropped and counted.
	BufferSize int `yaml:"bufferSize"`
	// BufferBytes bounds the bytes (keys, values and framing) of the
	// records held, so large records cannot grow the buffer without
	// bound; records beyond it are dropped and counted too.
	BufferBytes int64 `yaml:"bufferBytes"`
	// MaxInFlight is how many produce requests the handler may have in
	// flight at once (per partition), each from its own writer. Records
	// of one key always go through the same writer, so they stay in
	// order; records without a key are spread over the writers.
	MaxInFlight int `yaml:"maxInFlight"`
	// WriteTimeout bounds one produce request.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// AllowAutoTopicCreation asks the broker to create a missing topic
	// (brokers with auto.create.topics.enable do).
	AllowAutoTopicCreation bool `yaml:"allowAutoTopicCreation"`
	// TLS secures the connections; off by default (plaintext).
	TLS TLS `yaml:"tls"`
	// SASL authenticates the client; off unless mechanism is set.
	SASL SASL `yaml:"sasl"`
}

// SASL is the client's SASL authentication.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty turns
	// SASL off.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password is a secret: /debug/config and logs show it redacted.
	Password string `yaml:"password"`
}

// NewConfig returns the defaults: JSON records, batches of up to 1000
// records or 1 MiB, each lane writing at most once per 10ms (linger),
// acks from all in-sync replicas, no compression, up to 100000 records
// and 64 MiB buffered, 4 produce requests in flight.
func NewConfig() *Config {
	return &Config{
		Encoding:     EncodingJSON,
		BatchSize:    DefaultBatchSize,
		BatchBytes:   DefaultBatchBytes,
		Linger:       DefaultLinger,
		RequiredAcks: AcksAll,
		Compression:  "none",
		BufferSize:   DefaultBufferSize,
		BufferBytes:  DefaultBufferBytes,
		MaxInFlight:  DefaultMaxInFlight,
		WriteTimeout: DefaultWriteTimeout,
	}
}

// Kafka's legal topic names.
var topicRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// TLS is the client TLS block shared by the adapters that dial a backend.
type TLS = tlsconfig.Client

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Brokers) == 0 {
		add("brokers: at least one broker (host:port) is required")
	}
	for i, b := range c.Brokers {
		if host, port, err := net.SplitHostPort(b); err != nil || host == "" {
			add("brokers[%d]: %q is not host:port", i, b)
		} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			add("brokers[%d]: %q has no valid port", i, b)
		}
	}
	switch {
	case c.Topic == "":
		add("topic: required")
	case !topicRE.MatchString(c.Topic) || c.Topic == "." || c.Topic == "..":
		add("topic: %q is not a valid Kafka topic name (letters, digits, '.', '_', '-'; at most 249)", c.Topic)
	}
	if c.Key != "" {
		if _, err := compileKey(c.Key); err != nil {
			add("key: %v", err)
		}
	}
	switch c.Encoding {
	case EncodingJSON, EncodingOTLPProto:
	default:
		add("encoding: unknown encoding %q (want %s or %s)", c.Encoding, EncodingJSON, EncodingOTLPProto)
	}
	if c.OTLPBatch && c.Encoding != EncodingOTLPProto {
		add("otlpBatch: needs encoding %s, not %q", EncodingOTLPProto, c.Encoding)
	}
	if c.BatchSize <= 0 {
		add("batchSize: must be positive, got %d", c.BatchSize)
	}
	if c.BatchBytes <= 0 {
		add("batchBytes: must be positive, got %d", c.BatchBytes)
	}
	if c.Linger <= 0 {
		add("linger: must be positive, got %v", c.Linger)
	}
	if _, ok := requiredAcks[c.RequiredAcks]; !ok {
		add("requiredAcks: unknown value %q (want %s, %s or %s)", c.RequiredAcks, AcksNone, AcksOne, AcksAll)
	}
	if _, ok := compressions[c.Compression]; !ok {
		add("compression: unknown codec %q (want none, gzip, snappy, lz4 or zstd)", c.Compression)
	}
	if c.BufferSize <= 0 {
		add("bufferSize: must be positive, got %d", c.BufferSize)
	} else if c.BufferSize < c.BatchSize {
		add("bufferSize: %d is less than batchSize %d", c.BufferSize, c.BatchSize)
	}
	if c.BufferBytes <= 0 {
		add("bufferBytes: must be positive, got %d", c.BufferBytes)
	} else if c.BatchBytes > 0 && c.BufferBytes < c.BatchBytes {
		add("bufferBytes: %d is less than batchBytes %d", c.BufferBytes, c.BatchBytes)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > maxMaxInFlight {
		add("maxInFlight: must be between 1 and %d, got %d", maxMaxInFlight, c.MaxInFlight)
	}
	if c.WriteTimeout <= 0 {
		add("writeTimeout: must be positive, got %v", c.WriteTimeout)
	}
	errs = append(errs, c.TLS.Validate(false, "tls.enabled is false"), c.SASL.validate())
	return errors.Join(errs...)
}

func (s *SASL) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" {
			add("sasl.mechanism: required when a username or password is set (%s, %s or %s)", SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
		return errors.Join(errs...)
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		add("sasl.mechanism: unknown mechanism %q (want %s, %s or %s)", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if s.Username == "" {
		add("sasl.username: required")
	}
	if s.Password == "" {
		add("sasl.password: required")
	}
	return errors.Join(errs...)
}

// Redacted returns a copy of the params whose SASL password is hidden, for
// /debug/config and logs.
func (c *Config) Redacted() any {
	r := *c
	r.Brokers = append([]string(nil), c.Brokers...)
	if r.SASL.Password != "" {
		r.SASL.Password = "xxxxx"
	}
	return &r
}

// LogValue keeps the password out of logs that print the params.
func (c *Config) LogValue() slog.Value {
	// plain has no LogValue, so slog does not come back here.
	type plain Config
	return slog.AnyValue(plain(*c.Redacted().(*Config)))
}
