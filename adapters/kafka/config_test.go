package kafka_test

import (
	"testing"

	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/kafka"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, kafka.Factory(), []configtest.Case{
		{File: "minimal.yaml"},
		{File: "full.yaml"},
		{File: "spans.yaml"},
		{File: "empty.bad.yaml", Want: "brokers: at least one broker (host:port) is required\n" +
			"topic: required"},
		{File: "values.bad.yaml", Want: `brokers[0]: "kafka" is not host:port` + "\n" +
			`brokers[1]: ":9092" is not host:port` + "\n" +
			`brokers[2]: "kafka:0" has no valid port` + "\n" +
			`topic: "access log" is not a valid Kafka topic name (letters, digits, '.', '_', '-'; at most 249)` + "\n" +
			`encoding: unknown encoding "avro" (want json or otlp_proto)` + "\n" +
			"batchSize: must be positive, got 0\n" +
			"batchBytes: must be positive, got -1\n" +
			"linger: must be positive, got 0s\n" +
			`requiredAcks: unknown value "leader" (want none, one or all)` + "\n" +
			`compression: unknown codec "brotli" (want none, gzip, snappy, lz4 or zstd)` + "\n" +
			"bufferSize: must be positive, got -5\n" +
			"bufferBytes: must be positive, got 0\n" +
			"maxInFlight: must be between 1 and 64, got 0\n" +
			"writeTimeout: must be positive, got 0s"},
		{File: "key.bad.yaml", Want: "key: ERROR: <input>:1:24: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}"},
		{File: "keytype.bad.yaml", Want: "key: expression has type map(string, dyn), want a scalar (string, number, bool, ...)"},
		{File: "auth.bad.yaml", Want: "tls: options are set but TLS is off (tls.enabled is false)\n" +
			`sasl.mechanism: unknown mechanism "GSSAPI" (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)` + "\n" +
			"sasl.username: required\n" +
			"sasl.password: required"},
		{File: "buffer.bad.yaml", Want: "bufferBytes: 1000 is less than batchBytes 1048576\n" +
			"maxInFlight: must be between 1 and 64, got 65"},
		{File: "otlpbatch.bad.yaml", Want: `otlpBatch: needs encoding otlp_proto, not "json"`},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 3: field lingerMs not found in type kafka.Config"},
	})
}
