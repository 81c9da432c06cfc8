// Package redisquota is an adapter that enforces rate-limit quotas in
// Redis, so that several mixer replicas share one limit. It takes the
// quota params of memquota (Istio's names: quotas with maxAmount,
// validDuration, bucketDuration, windows and overrides;
// rateLimitAlgorithm; minDeduplicationDuration) and gives the same
// answers: see memquota's documentation and quota.Decide for the
// semantics. rateLimitAlgorithm defaults to ROLLING_WINDOW here too (Istio
// defaulted to FIXED_WINDOW).
//
// # Batches: one round trip for many allocations
//
// Allocations go to Redis in batches (group commit): while a batch is in
// flight, the allocations that arrive queue, and go together in the next
// one, so the busier the handler, the fewer round trips, writes and script
// calls per allocation, and an idle handler sends each allocation at once.
// A batch is one Lua script call (EVALSHA, loaded on first use) per
// counter, all in one pipeline. Each call is atomic in Redis: it reads
// every window of the counter once, runs the batch's allocations against
// them one after another exactly as one call per allocation would — each
// charged to all windows or to none, each answered from its
// deduplication id's record when a first allocation with that id was
// answered within minDeduplicationDuration, whether in this batch or
// before — writes the windows back once, records the new results under
// their ids, and returns granted, limit, remaining and reset for each. The
// time is each allocation's mixer clock, passed in, not Redis's: calls
// from several mixers are each judged at their own time, and of any calls
// within one window the last to run has seen the others, so no window is
// ever over its max. A rolling window is a Redis hash per counter and
// window, one field per bucket; a fixed window is the same with a single
// bucket. Keys are sidemix:quota:{<quota>{<dimensions>}}:<window>, whose
// braces keep one call's keys in one Redis Cluster slot, and they expire a
// window after their last charge. Counters are keyed by quota name,
// dimensions and window shape, never by the limit: handlers sharing a
// Redis and a quota name share its counts, a changed limit applies at the
// next allocation, and a reload starts nothing afresh.
//
// # Answers without Redis
//
// Two local answers take most allocations off the round trip, each exact
// about counts (see the accuracy tests):
//
// The over-limit cache (overLimitCache, default on; envoyproxy/ratelimit
// has the same as LOCAL_CACHE_SIZE_IN_BYTES): when Redis denies an
// allocation (nothing granted; not a best-effort partial grant), the
// handler answers further allocations of the same size (best effort: all
// of them) on that counter itself with Redis's answer, reset and
// Retry-After counted down, until Redis could answer otherwise: when the
// allocation would fit (a fixed window's end) or, if sooner, when the
// usage that blocks it first frees (a rolling window's next bucket
// boundary that drops usage), by the script's own arithmetic. Denied
// allocations charge nothing, so no count changes. A grant on the counter
// through this handler ends it, and so does an open circuit (the rule's
// failPolicy decides then). A raised limit comes with a reload, whose new
// handler starts with an empty cache. What another mixer charges meanwhile
// can only lengthen a denial; what it gives back (a lease's unused units)
// could go unused here until the entry ends, so on a counter large enough
// to lease an entry lasts at most localLease.maxDuration.
//
// Local leases (localLease: {maxFraction, maxDuration}, default 1% and
// 100ms; maxFraction 0 turns them off): when an allocation to a counter
// has to go to Redis anyway and the counter is busy, the same script call
// also takes a block of units, best effort, charged to every window at
// once, like the proxy's quota prefetch. Following allocations are
// answered from the block until it runs out or expires. The block is the
// counter's recent rate of allocations on this handler over the lease's
// time, at most maxFraction of the smallest max of the counter's windows,
// and worth a lease only from 2 units: a limit under 200 (at 1%) never
// leases. A lease lasts at most maxDuration and ends with the current
// bucket (a fixed window's window) of every window, and answers only
// allocations whose clock falls within it: each unit counts in Redis in
// the slot of the allocation it pays for, as if charged then, so no
// window ever holds more than its max, however many mixers lease. Units
// not used are given back to their slot when the lease expires (while
// that slot still counts), and at Close. A counter with a lease in flight
// makes its other allocations wait for it rather than all go to Redis.
//
// Leases keep deduplication across mixers: each allocation answered from
// a lease with a deduplication id is written to Redis under the id's key,
// as the script writes its own answers, in batches (every 10ms, one
// script call per counter for all its ids and units given back). An id
// already there was answered before, here or by another mixer: the
// lease's unit goes back instead, so a retry is charged once in the end
// (for at most 10ms it may be counted twice, which can only deny
// something, never over-admit). A retry on the same mixer is answered
// from the handler's own record of the ids it answered, without Redis.
//
// With Redis down, a live lease still answers until it expires (at most
// maxDuration); after that every allocation fails as below. Units it does
// not use, and records it could not write, are lost: the counter stays
// under its max until their slot frees, and a retry on another mixer may
// be charged again.
//
// # When Redis fails
//
// Each allocation is bounded by timeout (default 100ms) from the time it
// is queued: a batch's round trip is bounded by the earliest deadline of
// its allocations, and one whose deadline passed while it queued fails
// without being sent. Nothing is retried. After
// breaker.failureThreshold consecutive failures (default 3) the circuit
// opens: allocations fail at once with ErrCircuitOpen, without reaching
// Redis, and the mixer applies the rule's failPolicy. Under load, the
// calls in flight when Redis dies fail together, so a dead Redis costs
// about one timeout. While open, the handler pings Redis every
// breaker.probeInterval (default 500ms); the first answer closes the
// circuit. A Redis unreachable at start does not fail the handler: it
// starts with the circuit open.
//
// # Self metrics
//
//	sidemix_redisquota_allocations_total{handler,quota,result}  granted, partial, denied, duplicate, error
//	sidemix_redisquota_backend_errors_total{handler}            failed calls to Redis
//	sidemix_redisquota_circuit_open{handler}                    1 while the circuit is open
//	sidemix_redisquota_script_duration_seconds{handler}         round-trip time of a batch
//	sidemix_redisquota_batch_size{handler}                      allocations per round trip
//	sidemix_redisquota_local_answers_total{handler,source}      answered without Redis: lease, over_limit, duplicate
//	sidemix_redisquota_lease_units_total{handler,kind}          units leased (taken) and given back (returned)
//
// # Secrets
//
// redisServerUrl may carry a password (redis://:password@host:6379/0).
// Config implements adapters.Redactor and slog.LogValuer, which replace it
// with xxxxx; validation errors and the handler's logs never quote the URL.
//
// It accepts quota instances.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: shared-quota}
//	spec:
//	  adapter: redisquota
//	  params:
//	    redisServerUrl: 127.0.0.1:6379   # or redis://:password@host:6379/0
//	    connectionPoolSize: 10           # 0: go-redis's default, 10 per CPU
//	    timeout: 100ms
//	    breaker: {failureThreshold: 3, probeInterval: 500ms}
//	    rateLimitAlgorithm: ROLLING_WINDOW
//	    minDeduplicationDuration: 1s
//	    overLimitCache: true             # false: every denial asks Redis
//	    localLease: {maxFraction: 0.01, maxDuration: 100ms}   # maxFraction 0: no leases
//	    quotas:
//	    - name: requestcount
//	      maxAmount: 100
//	      validDuration: 10s
//	      bucketDuration: 500ms
//	      windows:
//	      - {maxAmount: 5000, validDuration: 1h}
//	      overrides:
//	      - dimensions: {destination: ratings}
//	        maxAmount: 10
package redisquota
