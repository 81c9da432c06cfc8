package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/policy"
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
// GODEBUG's schedtrace only when the process starts. So the mixer, when it
// keeps sysmon awake, re-executes itself once (same PID, arguments and
// environment) with sysmonSetting added to GODEBUG.
//
// Awake has a price of its own: an idle mixer's sysmon then wakes every
// 10 ms, 100 switches of its CPU a second, ~4 ms of CPU per second on one
// pinned core of a virtual machine. A mixer that only receives reports
// (proxies send a batch a second) is idle most of the time and pays it
// all: 18% of its CPU at 1,000 mesh requests/s, against 9% with deep
// sleep. A mixer answering Checks, one RPC per request, gains from awake.
// So --sysmon auto (the default) keeps sysmon awake when the config the
// mixer starts with answers Checks or quotas, and lets it sleep deeply
// otherwise (benchmarks/README.md, "sysmon: awake for Checks, deep sleep
// for reports").

// Modes of --sysmon.
const (
	sysmonAuto  = "auto"
	sysmonAwake = "awake"
	sysmonDeep  = "deep"
)

// sysmonAwakeFor is --sysmon auto's choice for a config: awake when it has
// rules answering Checks or allocating quota.
func sysmonAwakeFor(snap *policy.Snapshot) bool {
	return snap.Uses(policy.VarietyCheck) || snap.Uses(policy.VarietyQuota)
}

// keepSysmonAwake re-executes the process with sysmonSetting added to
// GODEBUG when mode asks for sysmon awake (auto: when the config in paths
// answers Checks or quotas) and the process does not have it yet. It
// returns when the process goes on as it is: in deep mode, with an invalid
// config (the mixer's own load reports it), or when the restart failed.
func keepSysmonAwake(e *env, mode string, paths []string, registry adapters.Registry) error {
	switch mode {
	case sysmonDeep:
		return nil
	case sysmonAwake, sysmonAuto:
	default:
		return usageErrorf("--sysmon %q: want %s, %s or %s", mode, sysmonAuto, sysmonAwake, sysmonDeep)
	}
	godebug, restart := sysmonGODEBUG(os.Getenv("GODEBUG"))
	if !restart || e.reexec == nil {
		return nil
	}
	if mode == sysmonAuto {
		// Loading reads and compiles the files without starting any
		// handler; the restarted process loads them again.
		snap, err := policy.Load(paths, policy.Options{Adapters: registry})
		if err != nil || !sysmonAwakeFor(snap) {
			return nil
		}
	}
	err := e.reexec(godebug) // returns only if it failed
	fmt.Fprintf(e.stderr, "sidemix mixer: cannot restart with GODEBUG=%s (%v); the runtime's sysmon keeps its deep sleep\n", godebug, err)
	return nil
}

// sysmonNiceFor is the nice value --sysmon-nice asks for: a number from 0
// to 19, or auto. At 19 sysmon's polls wait for the working thread to
// pause instead of preempting it (7–10% of a report mixer's CPU), but a
// sysmon that other processes' work starves of CPU also retakes late a P
// held by a blocked system call: auto takes 19 only with deep sleep (a
// mixer for reports, whose batches may wait), and leaves a mixer answering
// Checks, whose p99 may not, at the process's priority.
func sysmonNiceFor(flag string, deepSleep bool) (int, error) {
	if flag == sysmonAuto {
		if deepSleep {
			return 19, nil
		}
		return 0, nil
	}
	n, err := strconv.Atoi(flag)
	if err != nil || n < 0 || n > 19 {
		return 0, usageErrorf("--sysmon-nice %q: want auto or a number from 0 to 19", flag)
	}
	return n, nil
}

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
