// Package testenv starts the real processes and servers that sidemix's
// end-to-end tests need, on loopback, and cleans them up when the test ends.
//
// The sidemix binary is built once per test process (BuildSidemix) and run
// with StartProcess, whose output goes to the test log when the test fails.
// FreePort/FreeAddr pick loopback ports; WaitTCP and WaitHTTP wait for a
// server to come up.
//
// External servers (Redis, Prometheus, Jaeger, ...) come from the machine.
// RequireBinary encodes the project rule for them: in CI (CI=true) a missing
// server is a test failure, never a skip; on a developer's machine the test is
// skipped with a message saying what to install.
//
// StartRedis does that for Redis: a redis-server on a free loopback port,
// without persistence, that a test can Kill and Restart on the same port.
//
//	func TestWithRedis(t *testing.T) {
//		redis := testenv.StartRedis(t)
//		client := goredis.NewClient(&goredis.Options{Addr: redis.Addr()})
//		...
//	}
//
// StartPrometheus runs Debian's prometheus on a free loopback port with a
// generated config scraping the given targets every second; Query and
// TryQuery evaluate PromQL with its HTTP API and return the instant vector.
//
// StartKafka runs a one-broker Kafka cluster (franz-go's kfake, which speaks
// the Kafka wire protocol; internal/cmd/kfakebroker, built once per test
// process) on a free loopback port, with its data in a temporary folder, so
// that Stop and Restart on the same port simulate an outage without losing
// what was written. ConsumeKcat reads a topic back with kcat (librdkafka),
// a client independent of the one under test.
//
// StartJaeger runs a Jaeger v2 all-in-one (memory storage, every port on a
// free loopback port, no self-tracing) from the binary BuildJaeger compiles
// out of the github.com/jaegertracing/jaeger module and caches in the
// user's cache directory (CI builds it once: go run ./internal/cmd/buildjaeger).
// Trace, WaitTrace, FindTraces and Services read its query API back.
package testenv
