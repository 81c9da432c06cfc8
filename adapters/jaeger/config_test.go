package jaeger_test

import (
	"strings"
	"testing"

	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/jaeger"
)

func lines(ls ...string) string { return strings.Join(ls, "\n") }

func TestConfig(t *testing.T) {
	configtest.Run(t, jaeger.Factory(), []configtest.Case{
		{File: "full.yaml"},
		{File: "otlp.yaml"},
		{File: "tls.yaml"},
		{File: "noretry.yaml"},
		{File: "retry.bad.yaml", Want: lines(
			`retry.initialInterval: must be positive, got 0s`,
			`retry.maxInterval: -1s is less than retry.initialInterval 0s`,
			`retry.maxElapsedTime: must be positive, got 0s`,
		)},
		{File: "empty.bad.yaml", Want: `endpoint: required (host:port of the Jaeger collector)`},
		{File: "values.bad.yaml", Want: lines(
			`endpoint: "jaeger" is not host:port`,
			`protocol: unknown protocol "thrift" (want grpc or otlp)`,
			`timeout: must be positive, got 0s`,
			`maxBatchSize: must be positive, got 0`,
			`flushInterval: must be positive, got -1s`,
			`maxQueueSize: -5 is less than maxBatchSize 0`,
			`processTags: a tag has an empty name`,
		)},
		{File: "port.bad.yaml", Want: lines(
			`endpoint: "127.0.0.1:99999" has no valid port`,
			`maxQueueSize: 10 is less than maxBatchSize 100`,
		)},
		{File: "tls.bad.yaml", Want: `tls: certFile and keyFile go together (one is missing)`},
		{File: "tlsfiles.bad.yaml", Want: `tls: caFile: open testdata/no-such-ca.pem: no such file or directory`},
		{File: "tlsoff.bad.yaml", Want: `tls: options are set but TLS is off (tls.enabled is false)`},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 2: field max_batch_size not found in type jaeger.Config"},
	})
}
