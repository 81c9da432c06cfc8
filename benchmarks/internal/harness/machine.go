package harness

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Command is how this run of program name was started, for the report,
// quoted for a POSIX shell.
func Command(name string) string {
	args := []string{"bin/" + name}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t$|*?[]()<>&;'\"\\!#~{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

// CPUCount is the machine's CPU count, not this process's affinity.
func CPUCount() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "processor") {
			n++
		}
	}
	return max(n, 1)
}

// CPUModel is the CPU's model name, as lscpu says it.
func CPUModel() string {
	if out, err := exec.Command("lscpu").Output(); err == nil {
		for line := range strings.SplitSeq(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "Model name:"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}

// LoadAvg is the 1, 5 and 15 minute load averages.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// FirstLine is the first line of a command's output, or "unknown".
func FirstLine(b []byte, err error) string {
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}
