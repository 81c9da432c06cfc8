package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
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

// Repin runs this command again under taskset on cpus, with env set so
// that the second run knows it is pinned already; it returns only on
// failure.
func Repin(cpus, env string) error {
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return fmt.Errorf("-loadgen-cpus %s needs taskset (or pass -loadgen-cpus '' -server-cpus ''): %v", cpus, err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{"taskset", "-c", cpus, self}, os.Args[1:]...)
	return syscall.Exec(ts, args, append(os.Environ(), env+"=1"))
}

// WriteReport writes a run's report into dir as NAME.json and its
// Markdown as NAME.md.
func WriteReport(dir, name string, rep any, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".md"), []byte(md), 0o644)
}
