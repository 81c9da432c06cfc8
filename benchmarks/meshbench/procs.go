package meshbench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// treeCPU is the CPU time (utime+stime, every thread) of pid and all its
// live descendants, plus what its ended and waited-for children used
// (cutime+cstime): nginx's workers are the master's children.
func treeCPU(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// Fields after the command, 0-based: 11 utime, 12 stime, 13 cutime, 14 cstime.
	total := f[11] + f[12] + f[13] + f[14]
	for _, c := range children(pid) {
		d, err := treeCPU(c)
		if err != nil {
			continue // ended between the listing and the read
		}
		total += int64(d / clockTick)
	}
	return time.Duration(total) * clockTick, nil
}

// statFields parses /proc/<pid>/stat's numeric fields after the command.
func statFields(pid int) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: malformed %q", pid, b)
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: short %q", pid, b)
	}
	out := make([]int64, 15)
	for j := 1; j < 15; j++ { // field 0 is the state letter
		n, err := strconv.ParseInt(fs[j], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/stat field %d %q: %v", pid, j, fs[j], err)
		}
		out[j] = n
	}
	return out, nil
}

// children lists pid's child processes (from every thread's children file).
func children(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// treePeakRSS is the sum of VmHWM (peak resident set) over pid and its
// live descendants, in bytes.
func treePeakRSS(pid int) (int64, error) {
	total, err := vmHWM(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range children(pid) {
		if n, err := treePeakRSS(c); err == nil {
			total += n
		}
	}
	return total, nil
}

func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("/proc/%d/status VmHWM %q: %v", pid, rest, err)
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// cpuEach is treeCPU of each of pids.
func cpuEach(pids []int) ([]time.Duration, error) {
	out := make([]time.Duration, len(pids))
	for i, p := range pids {
		d, err := treeCPU(p)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}
