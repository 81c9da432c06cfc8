package prometheus_test

import (
	"strings"
	"testing"

	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/prometheus"
)

func lines(ls ...string) string { return strings.Join(ls, "\n") }

func TestConfig(t *testing.T) {
	configtest.Run(t, prometheus.Factory(), []configtest.Case{
		{File: "full.yaml"},
		{File: "no-listen.yaml"},
		{File: "empty.bad.yaml", Want: lines(
			`addr: "localhost" is not host:port`,
			`metrics: at least one metric is required`,
		)},
		{File: "names.bad.yaml", Want: lines(
			`addr: ":http" has no valid port`,
			`namespace: "9lives" is not a valid Prometheus metric name prefix`,
			`metrics[0].name: required, since instanceName "request-count" is not a valid Prometheus metric name`,
			`metrics[1].name: "requests.total" is not a valid Prometheus metric name`,
			`metrics[3].name: "9lives_requests_total" is already exported by metrics[2]`,
			`metrics[4].instanceName: required`,
			`metrics[5].kind: unknown kind "SUMMARY" (want COUNTER, GAUGE or DISTRIBUTION)`,
			`metrics[6].kind: required (COUNTER, GAUGE or DISTRIBUTION)`,
			`metrics[7].labelNames[1]: "bad-label" is not a valid Prometheus label name`,
			`metrics[7].labelNames[2]: "__reserved" is not a valid Prometheus label name`,
			`metrics[7].labelNames[3]: "ok" is listed twice`,
		)},
		{File: "buckets.bad.yaml", Want: lines(
			`metrics[0].buckets: required for a DISTRIBUTION`,
			`metrics[1].buckets: only a DISTRIBUTION has buckets`,
			`metrics[2].buckets.explicitBuckets.bounds[2]: 5 does not exceed the previous bound`,
			`metrics[2].buckets.explicitBuckets.bounds[3]: 3 does not exceed the previous bound`,
			`metrics[2].labelNames[0]: "le" is reserved in a DISTRIBUTION`,
			`metrics[3].buckets.exponentialBuckets.numFiniteBuckets: must be in 1..1000, got 0`,
			`metrics[3].buckets.exponentialBuckets.scale: must be positive and finite, got 0`,
			`metrics[3].buckets.exponentialBuckets.growthFactor: must be greater than 1 and finite, got 1`,
			`metrics[3].buckets.linearBuckets.numFiniteBuckets: must be in 1..1000, got -1`,
			`metrics[3].buckets.linearBuckets.width: must be positive and finite, got 0`,
			`metrics[3].buckets.linearBuckets.offset: must be finite, got +Inf`,
			`metrics[3].buckets: set exactly one of explicitBuckets, exponentialBuckets or linearBuckets (2 are set)`,
			`metrics[4].buckets.explicitBuckets.bounds: must have 1..1001 bounds, got 0`,
			`metrics[5].buckets: set exactly one of explicitBuckets, exponentialBuckets or linearBuckets (0 are set)`,
			`metrics[6].buckets: the last bound overflows to +Inf`,
			`metrics[7].buckets.linearBuckets.numFiniteBuckets: must be in 1..1000, got 100000`,
		)},
		{File: "limits.bad.yaml", Want: lines(
			`maxSeries: must be 0 (no cap) or more, got -1`,
			`constLabels: "__reserved" is not a valid Prometheus label name`,
			`constLabels: "bad-name" is not a valid Prometheus label name`,
			`metricsExpirationPolicy.metricsExpiryDuration: required, a positive duration such as 10m (got 0s)`,
			`metricsExpirationPolicy.expiryCheckIntervalDuration: must be at least 1ms, or unset for half the expiry duration (got -1s)`,
			`metrics[0].maxSeries: must be 0 (no cap) or more, got -5`,
			`metrics[0].labelNames[1]: "mesh" is also in constLabels`,
			`metrics[1]: constLabels has "le", which is reserved in a DISTRIBUTION`,
		)},
		{File: "expiry-interval.bad.yaml", Want: lines(
			`metricsExpirationPolicy.expiryCheckIntervalDuration: must be at least 1ms, or unset for half the expiry duration (got 1µs)`,
		)},
		{File: "expiry-units.bad.yaml", Want: "yaml: unmarshal errors:\n  line 2: cannot unmarshal !!str `10 minutes` into time.Duration"},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 2: field instance_name not found in type prometheus.Metric"},
	})
}
