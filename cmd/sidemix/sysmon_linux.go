//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// sysmonTID finds the thread of the Go runtime's sysmon among the
// process's threads (/proc/self/task). The runtime starts sysmon as the
// first thread after the main one, before any goroutine of the program
// runs (runtime/proc.go, main), and Linux hands out thread ids in
// increasing order: sysmon has the lowest id above the process id, or,
// when the ids wrapped around between the two, the lowest below it.
func sysmonTID() (int, error) {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, err
	}
	pid := os.Getpid()
	above, below := -1, -1
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || tid == pid {
			continue
		}
		if tid > pid && (above < 0 || tid < above) {
			above = tid
		}
		if tid < pid && (below < 0 || tid < below) {
			below = tid
		}
	}
	switch {
	case above > 0:
		return above, nil
	case below > 0:
		return below, nil
	}
	return 0, fmt.Errorf("no thread but the main one in /proc/self/task")
}

// niceSysmon sets the nice value of sysmon's thread (setpriority on a
// thread id sets that thread's alone, on Linux).
func niceSysmon(nice int) error {
	tid, err := sysmonTID()
	if err != nil {
		return err
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
		return fmt.Errorf("setpriority of thread %d: %w", tid, err)
	}
	return nil
}
