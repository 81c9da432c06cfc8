// Package memquota is an adapter that enforces rate-limit quotas in the
// mixer's memory. It suits a single mixer replica; replicas sharing a limit
// need a shared store (redisquota).
//
// A quota instance's name selects one of the handler's quotas, and its
// dimensions split that quota into independent counters: a quota of 100 per
// second with dimension source allows every source 100 requests per second.
// An override gives the counters whose dimensions include all of its
// dimensions another limit; the first matching override wins.
//
// # Rolling window
//
// Each counter is a rolling window of validDuration, kept as a ring of
// buckets so that memory per counter is fixed. A bucket spans
// max(validDuration/20, 10ms) (at most validDuration), which keeps a window
// to at most 21 buckets while not slicing short windows finer than the
// clock is useful for. An allocation succeeds when the amount still counted
// in the window plus the new amount is at most maxAmount. Usage is counted
// from the start of its bucket until one bucket after validDuration has
// passed, so it is held slightly longer than validDuration rather than
// shorter: in any interval of validDuration no more than maxAmount is
// granted.
//
// A denied allocation charges nothing. A best-effort allocation is granted
// what is left. A grant holds for validDuration; when nothing is granted the
// result's ValidDuration is the time until enough usage leaves the window
// for the request to succeed, which the proxy turns into Retry-After.
//
// # Deduplication
//
// An allocation repeating the DeduplicationID of one for the same counter
// within minDeduplicationDuration returns the first result and charges
// nothing, so a retried request is counted once.
//
// Counters whose usage has all expired are dropped on later allocations;
// the handler starts no goroutines. State lives in the handler, so a config
// reload starts every counter afresh.
//
// It accepts quota instances.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: quotas}
//	spec:
//	  adapter: memquota
//	  params:
//	    minDeduplicationDuration: 1s
//	    quotas:
//	    - name: requestcount         # the quota instance's name
//	      maxAmount: 500
//	      validDuration: 1s
//	      overrides:
//	      - dimensions: {destination: ratings}
//	        maxAmount: 10            # validDuration defaults to the quota's
//	      - dimensions: {source: batch-job}
//	        maxAmount: 2
//	        validDuration: 1m
package memquota
