// Package e2e holds sidemix's end-to-end acceptance tests: they build the
// real binary, start a mixer and sidecars as processes on loopback ports, send
// HTTP requests through the sidecars to test apps, and read the results where
// a user would: response codes and bodies, the Istio metrics the prometheus
// handler serves, the mixer's log and admin pages, and the CLI's output.
//
// The tests load the shipped configs (examples/default, examples/policies).
// examples/default serves its metrics on the fixed address 127.0.0.1:42422;
// each test copies the folder and rewrites that address to a free port, so
// tests never collide with each other or with a running demo.
package e2e
