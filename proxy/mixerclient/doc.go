// Package mixerclient is the proxy's side of the mixer API: Check with a
// local cache in front, and Report through a bounded buffer that a
// background sender batches, compresses and delivers.
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
// bounded LRU (Options.CacheSize).
//
// Answers that carried quota results are never served from the cache: a
// quota must be charged by the mixer for every request. The cache keeps a
// marker for such requests instead, which also retires any older answer
// for them. Mixer-side failures (Internal, Unavailable, ...) are not
// reused at all.
//
// On a miss the bag is compressed (attribute.Encoder, pooled) and sent with
// a fresh deduplication id under Options.CheckTimeout. Quota results turn
// into the Decision too: any quota granted less than asked is
// ResourceExhausted "quota exhausted" with RetryAfter. When the mixer
// cannot answer in time the Decision follows the fail policy: OK with
// Options.FailOpen, else Unavailable "mixer unavailable"; Check returns
// within CheckTimeout either way, and the failure is counted.
//
// # Report
//
// Report puts a bag in a buffered channel and returns: it never blocks and
// does not allocate. A full buffer drops the bag and counts it. The sender
// sends a batch when ReportBatchSize bags are waiting or every
// ReportInterval, each batch delta-encoded (attribute.Encoder.EncodeBatch).
// While the mixer is unreachable the sender keeps the undelivered bags
// (oldest dropped beyond ReportBufferSize, counted), retries with
// exponential backoff capped at 5s, and delivers them when the mixer is
// back. Close flushes what is buffered, bounded by its context.
//
// # Metrics
//
// On Options.Registerer:
//
//	sidemix_proxy_check_requests_total{result="cache_hit"|"cache_miss"}
//	sidemix_proxy_check_failures_total{policy="open"|"closed"}
//	sidemix_proxy_check_cache_entries
//	sidemix_proxy_reports_sent_total
//	sidemix_proxy_reports_dropped_total{reason="buffer_full"|"shutdown"}
//	sidemix_proxy_report_batches_total{result="ok"|"error"}
//	sidemix_proxy_report_buffer_length
//
// # Use
//
//	c, err := mixerclient.New(mixerclient.Options{Addr: "127.0.0.1:9091", Registerer: reg})
//	...
//	d, err := c.Check(ctx, bag) // d is usable even when err != nil
//	if !d.Allowed() { ... answer d.Code, d.Message ... }
//	...
//	c.Report(finalBag)
//	...
//	c.Close(shutdownCtx)
package mixerclient
