// Package mixerclient is the proxy's side of the mixer API: Check with a
// local cache and quota pools in front, and Report through a bounded buffer
// that a background sender batches, compresses and delivers, both balanced
// over one or more mixers.
//
// # Check
//
// Check first asks the check cache. The mixer answers every Check with the
// attributes its decision looked at (its referenced attributes: names, and
// for maps such as request.headers the keys, each present or absent). The
// cache keys an answer on exactly those, so a policy that only looks at
// source.principal and request.path is answered locally for every repeat of
// that pair whatever else differs. It keeps one table per set of
// references ("shape") it has seen, hashes the request once per shape with
// attribute.Signature and confirms a hit with attribute.EqualOn, so a hash
// collision never hands out another request's decision. An entry is reused
// for as long and as often as the mixer said (valid duration, valid use
// count, the asking request being the first use), and the cache is a
// bounded LRU (Options.CacheSize). Mixer-side failures (Internal,
// Unavailable, ...) are not reused at all.
//
// On a miss the bag is compressed (attribute.Encoder, pooled) and sent with
// a fresh deduplication id under Options.CheckTimeout. Quota results turn
// into the Decision too: any quota granted less than asked is
// ResourceExhausted "quota exhausted" with RetryAfter, and the tightest
// limit's figures (limit, remaining, reset) are in Decision.RateLimit. When
// the mixer cannot answer in time the Decision follows the fail policy:
// OK with Options.FailOpen (or FailPolicyOpen given to CheckWithPolicy),
// else Unavailable "mixer unavailable"; Check returns within CheckTimeout
// either way, and the failure is counted.
//
// # Quota
//
// A Check that names no quotas is charged by the mixer itself, and the
// answer says in quota_charges which quotas requests of this shape draw on
// and how much (its referenced attributes cover what that choice looked
// at, so the precondition stays cacheable). The cache keeps the charges
// with the answer. A request the cache allows must still pay them: the
// client keeps a pool of tokens per quota and per value of the attributes
// the quota result referenced (the quota's dimensions), and
//
//   - when every pool holds the charge, the request is answered here
//     (a prefetch hit, Decision.Cached);
//   - else, when the mixer refused the quota lately, the request is refused
//     here with ResourceExhausted until the refusal's Retry-After (never past
//     the window's reset), without asking again;
//   - else a Check naming the quotas is sent: with prefetch off
//     (Options.PrefetchMax 0) for exactly the charge; with prefetch on for
//     the charge plus the predicted need, best effort, at most PrefetchMax
//     in all. What the mixer grants beyond the charge goes to the pool.
//     When no mixer answers it, the fail policy decides as for any Check
//     (open: the request goes unpaid). When the mixer now denies the
//     request for another reason than quota, its answer is followed and
//     the cached one dropped.
//
// Prefetch follows Istio's mixer client: the need of the next window is the
// usage over a sliding window (Options.PrefetchWindow, ten buckets), scaled
// to the tokens' life when that is shorter. After a local hit that leaves
// the pool below half the predicted need, one background Check refills it
// (at most one under way per pool), so that the request path rarely waits.
// Pooled tokens live min(the grant's validity, Options.PrefetchMaxAge):
// a token is used at most that long after the mixer counted it, which
// bounds the overshoot against a rolling window; unused ones expire and are
// counted. Tokens taken for a request that is then refused for another of
// its quotas go back to their pool. The local pools never admit more than
// the mixer granted, and never pool more than 1/PrefetchLimitShare (1/20)
// of the quota's limit as the mixer last told it: a limit under 20 per
// window is never prefetched and stays exact, and a larger one may leave at
// most 5% per proxy pooled but unused when its window ends. The price of
// answering without a round trip: a rolling window may admit up to what the
// proxies pooled in the last PrefetchMaxAge before the window too. Options
// keep prefetch off unless PrefetchMax is set; the sidecar's command line
// turns it on (--quota-prefetch-max, default DefaultPrefetchMax), since a
// quota charged on every request otherwise costs a mixer round trip on
// every request, check cache or not.
//
// An answer with quota results but no quota_charges (a mixer that does not
// teach them) is never served from the cache: the cache keeps a marker
// instead, which also retires any older answer for the request, so every
// such request goes to the mixer.
//
// # Several mixers
//
// Options.Addr may list several mixers, comma-separated. Each has its own
// gRPC connection; calls go round the mixers that are in the rotation. A
// mixer that fails Options.EjectAfter calls in a row (UNAVAILABLE,
// DEADLINE_EXCEEDED, INTERNAL, UNKNOWN, ABORTED, DATA_LOSS), or whose
// connection is down, is ejected for Options.EjectTime, doubling with each
// ejection in a row up to 30s; afterwards it gets calls again, and its
// first failure ejects it again. When every mixer is out, calls go to the
// one whose ejection ends first. A Check that fails with UNAVAILABLE or
// DEADLINE_EXCEEDED is retried once on another mixer with the very same
// request, deduplication id included, so that a quota the mixers share (as
// redisquota) is charged once; with several mixers the first attempt gets
// half the check timeout so that the retry fits in it. (grpc-go's
// round_robin with outlier detection was the other way: its outlier
// detection is an xDS balancer that ejects on success rates over
// intervals, not on failures in a row, and cannot promise that a retry
// goes to another mixer.)
//
// # Report
//
// Report puts a bag in a buffered channel and returns: it never blocks and
// does not allocate. A full buffer drops the bag and counts it. The sender
// sends a batch when ReportBatchSize bags are waiting or every
// ReportInterval, each batch delta-encoded (attribute.Encoder.EncodeBatch).
// A batch that fails on one mixer is sent once more to another (the report
// API has no batch identity to deduplicate by: a batch whose answer was
// lost may be counted twice). While no mixer takes it the sender keeps the
// undelivered bags (oldest dropped beyond ReportBufferSize, counted),
// retries with exponential backoff capped at 5s, and delivers them when a
// mixer is back. Close flushes what is buffered, bounded by its context.
//
// # Metrics
//
// On Options.Registerer:
//
//	sidemix_proxy_check_requests_total{result="cache_hit"|"cache_miss"}
//	sidemix_proxy_check_failures_total{policy="open"|"closed"}
//	sidemix_proxy_check_denials_total{code,source="mixer"|"cache"|"local"}
//	sidemix_proxy_check_cache_entries
//	sidemix_proxy_checks_sent_total{purpose="precondition"|"quota"|"prefetch"}
//	sidemix_proxy_check_rpc_duration_seconds
//	sidemix_proxy_quota_prefetch_total{result="hit"|"miss"}
//	sidemix_proxy_quota_tokens_total{result="granted"|"used"|"expired"}
//	sidemix_proxy_quota_pools
//	sidemix_proxy_mixer_up{mixer}
//	sidemix_proxy_mixer_ejections_total{mixer}
//	sidemix_proxy_mixer_retries_total{method="check"|"report"}
//	sidemix_proxy_reports_sent_total
//	sidemix_proxy_reports_dropped_total{reason="buffer_full"|"shutdown"}
//	sidemix_proxy_report_batches_total{result="ok"|"error"}
//	sidemix_proxy_report_buffer_length
//
// The prefetch hit ratio is
// rate(sidemix_proxy_quota_prefetch_total{result="hit"}[1m]) /
// rate(sidemix_proxy_quota_prefetch_total[1m]).
//
// # Use
//
//	c, err := mixerclient.New(mixerclient.Options{Addr: "10.0.0.1:9091,10.0.0.2:9091",
//		PrefetchMax: 20, Registerer: reg})
//	...
//	d, err := c.CheckWithPolicy(ctx, bag, mixerclient.FailPolicyOpen) // d is usable even when err != nil
//	if !d.Allowed() { ... answer d.Code, d.Message, d.RetryAfter, d.RateLimit ... }
//	...
//	c.Report(finalBag)
//	...
//	c.Close(shutdownCtx)
package mixerclient
