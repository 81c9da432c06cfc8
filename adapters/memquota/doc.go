// Package memquota is an adapter that enforces rate-limit quotas in the
// mixer's memory. It suits a single mixer replica; replicas sharing a limit
// need a shared store (redisquota, which takes the same quota params).
//
// A quota instance's name selects one of the handler's quotas, and its
// dimensions split that quota into independent counters: a quota of 100 per
// second with dimension source allows every source 100 requests per second.
// An override gives the counters whose dimensions include all of its
// dimensions another limit; the first matching override wins.
//
// # Windows
//
// A quota's primary window is maxAmount per validDuration; windows adds
// more on the same counters (100 per second and 5000 per hour). An
// allocation must fit every window and is charged to all of them or to
// none: a denied allocation consumes nothing.
//
// rateLimitAlgorithm ROLLING_WINDOW (the default; Istio's memquota and
// redisquota defaulted to FIXED_WINDOW) counts usage in buckets of
// bucketDuration, by default max(validDuration/20, 10ms), and holds it from
// the start of its bucket until one bucket after validDuration has passed:
// in any interval of validDuration no more than maxAmount is granted.
// FIXED_WINDOW counts per validDuration window aligned on the Unix epoch
// and frees everything at its end, so up to twice maxAmount can pass around
// an edge.
//
// A best-effort allocation is granted what is left. A grant holds for the
// shortest window's validDuration; when nothing is granted the result's
// ValidDuration is the time until enough usage leaves the windows for the
// request to succeed, which the proxy turns into Retry-After. Limit,
// Remaining and Reset describe the tightest window (see quota.Decide).
//
// # Deduplication
//
// An allocation repeating the DeduplicationID of one for the same counter
// within minDeduplicationDuration returns the first result and charges
// nothing, so a retried request is counted once.
//
// # Reloads
//
// Counters are keyed by quota name, dimensions and window shape (algorithm,
// validDuration, bucketDuration), never by the limit. Handlers of the same
// name created by the same mixer share one store while any of them is
// open, and the mixer creates the next config's handler before it closes
// the previous one: counters survive a reload, and a raised or lowered
// limit applies at the next allocation. Changing a window's shape starts
// that window afresh.
//
// Windows whose usage has all expired are dropped on later allocations; the
// handler starts no goroutines.
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
//	    rateLimitAlgorithm: ROLLING_WINDOW
//	    quotas:
//	    - name: requestcount         # the quota instance's name
//	      maxAmount: 500
//	      validDuration: 1s
//	      bucketDuration: 50ms       # the default for 1s
//	      windows:
//	      - {maxAmount: 20000, validDuration: 1h}
//	      overrides:
//	      - dimensions: {destination: ratings}
//	        maxAmount: 10            # validDuration defaults to the quota's
//	      - dimensions: {source: batch-job}
//	        maxAmount: 2
//	        validDuration: 1m
//	        windows: []              # its own extra windows: none
package memquota
