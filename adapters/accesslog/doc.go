// Package accesslog is an adapter that writes logentry instances as JSON
// lines, one per entry, to stdout, stderr or a file, for log shippers to
// pick up.
//
// A line holds "time" (the entry's timestamp, or the time of the report
// when the instance has none, in RFC 3339 with nanoseconds, UTC),
// "severity" (INFO when empty), "instance" (the instance name) and every
// variable as a top-level key. Those three keys win over variables of the
// same name. Keys are sorted, so lines of one instance line up. Values keep
// their JSON type where they have one: strings, numbers, booleans, maps as
// objects; durations are written as Go durations ("12.3ms"), times in RFC
// 3339, IP addresses as text, and numbers JSON cannot hold (NaN, ±Inf) as
// strings.
//
// A file is opened for appending and created if missing; to log to a file
// named stdout or stderr, write ./stdout. Each Report is written with a
// single write call, so with O_APPEND the lines of handlers sharing a file
// (as the old and new handler briefly do on a config reload) never
// interleave within a batch. A report's lines are written into the
// handler's buffer, which it keeps for the next report: no memory is
// allocated per line.
//
// It accepts logentry instances.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: access}
//	spec:
//	  adapter: accesslog
//	  params:
//	    path: /var/log/sidemix/access.log   # default stdout; or stderr
//	    format: json                        # the only format, for now
package accesslog
