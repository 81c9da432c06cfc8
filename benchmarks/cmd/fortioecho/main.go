// Command fortioecho is fortio's echo server (fortio.org/fortio/fhttp, the
// app of Istio's published latency set-up) as a process of its own, for
// benchmarks/meshbench: it answers every request on -addr with the request's
// body. fortio's own command cannot be built here (its scripting module is
// not on the module proxy), so this wraps the same library handler.
//
//	fortioecho -addr 127.0.0.1:8080
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"fortio.org/fortio/fhttp"
	"fortio.org/log"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen `address` (loopback)")
	flag.Parse()
	log.SetLogLevelQuiet(log.Warning)
	_, a := fhttp.ServeTCP(*addr, "")
	if a == nil {
		fmt.Fprintf(os.Stderr, "fortioecho: cannot listen on %s\n", *addr)
		os.Exit(1)
	}
	fmt.Printf("fortioecho listening on %s\n", a)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
