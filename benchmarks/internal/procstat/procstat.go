// Package procstat reads a process's CPU time and memory from /proc, so a
// benchmark can charge a server exactly the CPU it used during a measured
// window (threads that ended included) without instrumenting it.
//
// CPU is read in nanoseconds from the process's CPU clock
// (clock_gettime of clock_getcpuclockid(pid): the scheduler's run time of
// all its threads, those that exited included). Where that clock cannot be
// read, the sum of /proc/<pid>/task/*/schedstat (run time of the live
// threads, in ns) is used when no thread ended within the window, and
// otherwise (a thread of the window's start gone at its end, or the sum
// short of the tick figure) utime+stime of /proc/<pid>/stat in 10 ms clock
// ticks. All three count the same scheduler run time; only their step
// differs. A Span says which one measured it.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every
// Linux architecture Go supports (the kernel fixes it for the ABI).
const clockTick = 10 * time.Millisecond

// CPUTime is the user plus system CPU time pid has used so far, in steps
// of 10ms (the tick figure of /proc/<pid>/stat).
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

// processClock is the CPU time of all of pid's threads, those that exited
// included, in nanoseconds: clock_gettime of the clock id
// clock_getcpuclockid(3) gives for pid (CPUCLOCK_SCHED of the process,
// linux/posix-timers.h: the scheduler's sum_exec_runtime).
func processClock(pid int) (time.Duration, error) {
	id := int32(^uint32(pid)<<3 | 2)
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, fmt.Errorf("procstat: CPU clock of %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// threadTimes reads the first field of /proc/<pid>/task/*/schedstat (time
// on CPU in ns) of every live thread of pid.
func threadTimes(pid int) (map[int]time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	times := make(map[int]time.Duration, len(ents))
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if os.IsNotExist(err) {
			continue // the thread ended since ReadDir
		}
		if err != nil {
			return nil, err
		}
		f := strings.Fields(string(b))
		if len(f) != 3 {
			return nil, fmt.Errorf("procstat: malformed %s/%d/schedstat %q", dir, tid, b)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("procstat: %s/%d/schedstat: %v", dir, tid, err)
		}
		times[tid] = time.Duration(ns)
	}
	return times, nil
}

// Source says how a Span's CPU was read.
type Source string

const (
	// Clock is the process's CPU clock, in ns, threads that ended included.
	Clock Source = "clock"
	// Schedstat is the sum over the live threads' schedstat, in ns; used
	// only when every thread of the window's start was still there at its
	// end.
	Schedstat Source = "schedstat"
	// Ticks is utime+stime of /proc/<pid>/stat, in 10 ms steps.
	Ticks Source = "ticks"
)

// Sample is one reading of a process's CPU time.
type Sample struct {
	ticks    time.Duration
	clock    time.Duration
	clockErr error
	threads  map[int]time.Duration // nil when the clock was read
	tasksErr error
}

// Read samples pid's CPU time. Only the tick figure of /proc/<pid>/stat
// is required; the ns figures are read when the kernel offers them.
func Read(pid int) (Sample, error) {
	var s Sample
	s.clock, s.clockErr = processClock(pid)
	if s.clockErr != nil {
		s.threads, s.tasksErr = threadTimes(pid)
	}
	var err error
	s.ticks, err = CPUTime(pid)
	return s, err
}

// Span is the CPU a process used between two samples, and how it was read.
type Span struct {
	CPU    time.Duration
	Source Source
	// Why is, for Source other than Clock, why the finer meters could not
	// be used.
	Why string
}

// Since returns the CPU used from start to s, in ns where both samples
// allow it, otherwise in ticks.
func (s Sample) Since(start Sample) Span {
	if s.clockErr == nil && start.clockErr == nil {
		return Span{CPU: s.clock - start.clock, Source: Clock}
	}
	why := fmt.Sprint(start.clockErr)
	if s.clockErr != nil {
		why = s.clockErr.Error()
	}
	ticks := Span{CPU: s.ticks - start.ticks, Source: Ticks}
	switch {
	case start.tasksErr != nil:
		ticks.Why = why + "; schedstat: " + start.tasksErr.Error()
		return ticks
	case s.tasksErr != nil:
		ticks.Why = why + "; schedstat: " + s.tasksErr.Error()
		return ticks
	case start.threads == nil || s.threads == nil:
		ticks.Why = why
		return ticks
	}
	var cpu time.Duration
	for tid, t0 := range start.threads {
		t1, ok := s.threads[tid]
		if !ok {
			ticks.Why = fmt.Sprintf("%s; thread %d ended in the window and took its schedstat time with it", why, tid)
			return ticks
		}
		cpu += t1 - t0
	}
	for tid, t1 := range s.threads {
		if _, ok := start.threads[tid]; !ok {
			cpu += t1 // started in the window
		}
	}
	// A thread that started and ended within the window left no trace in
	// either sample; utime+stime counts it (it is the same run time,
	// truncated to ticks field by field).
	if ticks.CPU > cpu+2*clockTick {
		ticks.Why = fmt.Sprintf("%s; schedstat's %v is short of the ticks' %v: threads that started and ended in the window", why, cpu, ticks.CPU)
		return ticks
	}
	return Span{CPU: cpu, Source: Schedstat, Why: why}
}

// String is the span's CPU and, when not read from the CPU clock, how.
func (s Span) String() string {
	if s.Source == Clock {
		return s.CPU.String()
	}
	return fmt.Sprintf("%v (%s: %s)", s.CPU, s.Source, s.Why)
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
	start Sample
	err   error
	// CPU is the CPU time used between Start and Stop, and Span how it
	// was read.
	CPU  time.Duration
	Span Span
}

// NewMeter returns a meter of pid.
func NewMeter(pid int) *Meter { return &Meter{pid: pid} }

// Start reads the CPU time at the window's start.
func (m *Meter) Start() { m.start, m.err = Read(m.pid) }

// Stop reads the CPU time at the window's end and sets CPU.
func (m *Meter) Stop() {
	if m.err != nil {
		return
	}
	var end Sample
	end, m.err = Read(m.pid)
	m.Span = end.Since(m.start)
	m.CPU = m.Span.CPU
}

// Err is the first error of Start or Stop.
func (m *Meter) Err() error { return m.err }
