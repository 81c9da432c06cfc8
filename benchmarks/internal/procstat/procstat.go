// Package procstat reads a process's CPU time and memory from /proc, so a
// benchmark can charge a server exactly the CPU it used during a measured
// window (threads that ended included) without instrumenting it.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every
// Linux architecture Go supports (the kernel fixes it for the ABI).
const clockTick = 10 * time.Millisecond

// CPUTime is the user plus system CPU time pid has used so far, in steps
// of 10ms. Measure windows of seconds to keep the step small.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// parseStat returns utime+stime of a /proc/<pid>/stat line. The command
// name (field 2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("procstat: malformed stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: short stat %q", b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: stat field %q: %v", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// PeakRSS is the largest resident set pid has had (VmHWM), in bytes.
func PeakRSS(pid int) (int64, error) {
	return statusField(pid, "VmHWM:")
}

// RSS is pid's resident set now (VmRSS), in bytes.
func RSS(pid int) (int64, error) {
	return statusField(pid, "VmRSS:")
}

func statusField(pid int, name string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest) // "1234 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("procstat: %s %q: %v", name, rest, err)
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("procstat: no %s in /proc/%d/status", name, pid)
}

// Meter measures one process's CPU over a window: Start, then Stop.
type Meter struct {
	pid   int
	start time.Duration
	err   error
	// CPU is the CPU time used between Start and Stop.
	CPU time.Duration
}

// NewMeter returns a meter of pid.
func NewMeter(pid int) *Meter { return &Meter{pid: pid} }

// Start reads the CPU time at the window's start.
func (m *Meter) Start() { m.start, m.err = CPUTime(m.pid) }

// Stop reads the CPU time at the window's end and sets CPU.
func (m *Meter) Stop() {
	if m.err != nil {
		return
	}
	var end time.Duration
	end, m.err = CPUTime(m.pid)
	m.CPU = end - m.start
}

// Err is the first error of Start or Stop.
func (m *Meter) Err() error { return m.err }
