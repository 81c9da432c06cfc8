// Package load drives closed-loop load for the benchmark harnesses: a fixed
// number of callers each sending its next request as soon as the previous one
// is answered, for a warm-up and then a measured window, with latencies in a
// fixed-precision histogram. A harness supplies the request as an Op; the
// same runner serves gRPC Checks, rate-limit calls and HTTP requests alike.
package load
