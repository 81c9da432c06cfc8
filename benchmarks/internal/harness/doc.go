// Package harness starts and stops the real processes a benchmark measures
// (sidemix, Redis, peers built from their Go modules), each optionally
// pinned to CPUs with taskset so that the server under test and the load
// generator do not share a core, and with its output kept for when it fails.
// Everything it starts listens on 127.0.0.1.
package harness
