// Package list is an adapter that allows or denies a value by looking it up
// in a list, with the semantics of Istio's list adapter: a whitelist denies
// values missing from the list, a blacklist denies values on it.
//
// Entries are matched according to entryType:
//
//   - STRINGS: exact match.
//   - CASE_INSENSITIVE_STRINGS: match after lower-casing both sides.
//   - REGEX: RE2 expressions that must match the whole value (they are
//     anchored for you).
//   - IP_ADDRESSES: IPs and CIDR prefixes ("10.0.0.0/8", "fd00::/8"); a bare
//     IP is a one-address prefix. A value that is not an IP is denied in
//     both modes, since nothing can be said about it.
//
// # Remote lists
//
// With providerUrl, the list's entries are fetched over HTTP(S) and added to
// the overrides. The body is one entry per line (surrounding spaces
// trimmed, blank lines and lines starting with '#' ignored) or, when its
// Content-Type is application/json or *+json, a JSON array of strings.
// Create fetches once, waiting at most fetchTimeout, then a background
// goroutine fetches every refreshInterval (with If-None-Match and
// If-Modified-Since when the provider sent an ETag or Last-Modified) until
// Close.
//
// A failed fetch (unreachable, a status other than 200, a body that is not a
// list, an entry that is not valid for entryType) never changes the list:
// it is counted in sidemix_list_fetch_errors_total{handler} and logged when
// its error differs from the previous one. The last fetched list keeps
// answering for ttl after the fetch that brought it; after that, and before
// the first fetch succeeds, Check returns an error ("list unavailable: ..."),
// so the rule's failPolicy decides: closed, the default, denies with
// UNAVAILABLE as Istio's list adapter did once its ttl passed, and open lets
// requests through. A failed first fetch does not fail Create; the
// overrides alone are never used in place of an unavailable list, since a
// whitelist or blacklist missing its provider's part would answer wrongly
// either way.
//
// Self metrics besides the fetch errors: sidemix_list_entries{handler}
// (entries of the last list, overrides included),
// sidemix_list_last_fetch_timestamp_seconds{handler}, and
// sidemix_list_checks_total{handler,result} with result allowed, denied or
// unavailable.
//
// # Answers
//
// Unlike Istio, which answered NOT_FOUND for a value missing from a
// whitelist, every denial is PERMISSION_DENIED, so the proxy answers 403.
// Answers may be cached by the proxy for cachingInterval or cachingUseCount
// uses, whichever ends first.
//
// It accepts listentry instances.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: internal-only}
//	spec:
//	  adapter: list
//	  params:
//	    entryType: IP_ADDRESSES   # STRINGS (default), CASE_INSENSITIVE_STRINGS, REGEX
//	    blacklist: false          # default: a whitelist
//	    overrides: [10.0.0.0/8, "fd00::/8", 192.168.1.7]
//	    cachingInterval: 5s
//	    cachingUseCount: 1000
//
// and a blacklist kept on a server:
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: banned-agents}
//	spec:
//	  adapter: list
//	  params:
//	    providerUrl: https://lists.example.com/banned-agents.txt
//	    refreshInterval: 1m   # default 1m, at least 1s
//	    ttl: 5m               # default 5m, at least refreshInterval
//	    fetchTimeout: 5s      # default 5s
//	    blacklist: true
//	    overrides: [badbot]   # added to the fetched entries
package list
