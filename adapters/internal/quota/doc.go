// Package quota is the rate-limit algorithm every quota adapter shares,
// above the stores that keep the counts (memory for memquota, Redis for
// redisquota), as envoyproxy/ratelimit splits its limiter from its
// backends.
//
//   - Config is the params the adapters embed (Istio's field names) and
//     Validate checks them, each error starting with its key path.
//   - NewSet compiles a valid Config; Set.Counter resolves a quota name and
//     dimension values to a Counter: its key and the Limits of its windows
//     (after overrides).
//   - Store is what a backend implements; Decide is the decision every
//     store makes, which MemStore runs in memory and redisquota's Lua script
//     mirrors.
//   - Allocator glues them for an adapter's Allocate.
//
// A counter's state is keyed by Counter.Key (quota name and sorted
// dimensions) and a window's Layout (algorithm, length, bucket), never by
// its max, so a changed limit applies to the counts already made.
package quota
