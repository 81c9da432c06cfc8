// Package benchmarks measures sidemix's hot paths with go test -bench: bag
// encoding and decoding, rule matching, the proxy's check cache and report
// enqueue. Results and the commands that produced them are in README.md.
package benchmarks
