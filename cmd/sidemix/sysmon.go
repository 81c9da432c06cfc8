package main

import (
	"os"
	"strings"
)

// The Go runtime's sysmon thread sleeps 20 µs at a time while the process
// works, backing off to 10 ms. When every P has gone idle it sleeps deeply
// instead, and the next system call of the process wakes it with a futex
// and resets its sleep to 20 µs (runtime/proc.go, sysmon). A mixer pinned
// to one core that goes idle between requests pays that on every request:
// a futex wake-up and ~50 short sleeps, each a switch of its CPU to sysmon
// and back. Measured on one core, that was 19% of the mixer's CPU at 3,000
// Checks/s and 8–10% in closed loop (benchmarks/README.md, "Where the
// mixer's CPU goes between Checks").
//
// The runtime skips the deep sleep while GODEBUG sets schedtrace, and reads
// GODEBUG's schedtrace only when the process starts. So the mixer, unless
// --sysmon-deep-sleep asks for the runtime's default, re-executes itself
// once (same PID, arguments and environment) with sysmonSetting added to
// GODEBUG. Without deep sleep, an idle mixer's sysmon wakes every 10 ms.

// sysmonSetting keeps sysmon out of deep sleep. Its period is the largest
// the runtime takes (int32 milliseconds, 24.8 days), so the scheduler line
// schedtrace prints to stderr comes once every 24.8 days of the host's
// uptime (the first one at start when the host has been up longer).
const sysmonSetting = "schedtrace=2147483647"

// sysmonGODEBUG returns godebug with sysmonSetting added, and whether the
// process must restart to have it: not when godebug already sets
// schedtrace, whether the operator chose it or this process is the
// restarted one.
func sysmonGODEBUG(godebug string) (string, bool) {
	for _, kv := range strings.Split(godebug, ",") {
		if strings.HasPrefix(strings.TrimSpace(kv), "schedtrace=") {
			return godebug, false
		}
	}
	if godebug == "" {
		return sysmonSetting, true
	}
	return godebug + "," + sysmonSetting, true
}

// sysmonDeepSleep reports whether the running process's sysmon may sleep
// deeply, for the start-up log.
func sysmonDeepSleep() bool {
	_, restart := sysmonGODEBUG(os.Getenv("GODEBUG"))
	return restart
}

// withGODEBUG is environ with GODEBUG set to godebug.
func withGODEBUG(environ []string, godebug string) []string {
	out := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			out = append(out, kv)
		}
	}
	return append(out, "GODEBUG="+godebug)
}
