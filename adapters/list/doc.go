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
package list
