package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// runSidemix runs the binary to completion and returns stdout, stderr and
// the exit status.
func runSidemix(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testenv.BuildSidemix(t), args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("sidemix %v did not finish in 30s", args)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestValidate: `sidemix validate` lists every error of a broken folder,
// each with file:line, and exits 1; the shipped examples are valid.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	cfg := &config{dir: dir}
	cfg.write(t, "broken.yaml", `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: broken}
spec:
  adapter: denier
  params: {status: PERMISSION_DENIED
`)
	cfg.write(t, "unknown-key.yaml", `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: typo}
spec:
  adapter: denier
  params:
    sttus: PERMISSION_DENIED
`)
	cfg.write(t, "type-error.yaml", `apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: nothing}
spec:
  template: checknothing
---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny}
spec:
  adapter: denier
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: big-requests}
spec:
  match: request.size > "big"
  actions:
  - handler: deny
    instances: [nothing]
`)
	cfg.write(t, "missing-handler.yaml", `apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: orphan}
spec:
  actions:
  - handler: nope
    instances: [nothing]
`)
	stdout, stderr, code := runSidemix(t, "validate", dir)
	if code != 1 {
		t.Errorf("validate of a broken folder: exit %d, want 1\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, want := range []struct {
		what string
		re   string
	}{
		{"YAML syntax error", `broken\.yaml:\d+: `},
		{"unknown key", `unknown-key\.yaml:7: Handler/typo: spec\.params\.sttus: .*unknown`},
		{"CEL type error", `type-error\.yaml:17: Rule/big-requests: spec\.match: .*`},
		{"missing handler", `missing-handler\.yaml:6: Rule/orphan: spec\.actions\[0\]\.handler: .*nope.*not found`},
	} {
		if !regexp.MustCompile(want.re).MatchString(stderr) {
			t.Errorf("%s: no line matching %q in:\n%s", want.what, want.re, stderr)
		}
	}

	root := testenv.ModuleRoot(t)
	stdout, stderr, code = runSidemix(t, "validate",
		filepath.Join(root, "examples", "default"),
		filepath.Join(root, "examples", "policies"),
		filepath.Join(root, "examples", "demo", "policy"))
	if code != 0 || !strings.HasPrefix(stdout, "ok: ") {
		t.Errorf("validate of the examples: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// TestCheckAndReportCommands: the operator commands talk to a real mixer.
func TestCheckAndReportCommands(t *testing.T) {
	cfg := newConfig(t, map[string]string{"deny-admin.yaml": example(t, "policies/deny-admin.yaml")})
	m := startMixer(t, cfg, "", "")

	stdout, stderr, code := runSidemix(t, "check", "--mixer", m.grpc,
		"-a", "request.path=/admin/users", "-a", "destination.workload.name=web")
	if code != 0 {
		t.Fatalf("check: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"PERMISSION_DENIED", "admin is closed", "request.path"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, code = runSidemix(t, "check", "--mixer", m.grpc, "-a", "request.path=/hello")
	if code != 0 || !strings.Contains(stdout, "OK") {
		t.Errorf("check of an allowed path: exit %d\n%s", code, stdout)
	}

	stdout, stderr, code = runSidemix(t, "report", "--mixer", m.grpc, "--count", "3",
		"-a", "destination.workload.name=cli", "-a", "response.code=201",
		"-a", "response.duration=12ms", "-a", "context.reporter.kind=inbound")
	if code != 0 {
		t.Fatalf("report: exit %d\n%s%s", code, stdout, stderr)
	}
	waitMetric(t, cfg.metricsAddr, "istio_requests_total",
		map[string]string{"destination_workload": "cli", "response_code": "201"}, 3, 10*time.Second)

	// A value that does not parse as the attribute's type is a usage error.
	_, stderr, code = runSidemix(t, "check", "--mixer", m.grpc, "-a", "response.code=abc")
	if code != 2 || !strings.Contains(stderr, "response.code") {
		t.Errorf("check with a bad INT64: exit %d, stderr %q; want 2 naming response.code", code, stderr)
	}
}

// TestMixerSysmonModes: the mixer restarts itself once, in the same
// process, with GODEBUG's schedtrace set (cmd/sidemix/sysmon.go), keeping
// what GODEBUG already held, when sysmon is to stay awake: with --sysmon
// awake, and with auto (the default) when the config answers Checks.
// --sysmon deep, and auto over a config of report rules only, leave the
// runtime's default. The start-up log says which is in effect.
func TestMixerSysmonModes(t *testing.T) {
	reports := newConfig(t, nil) // examples/default: report rules only
	checks := newConfig(t, map[string]string{"deny.yaml": denyPath("/admin")})
	t.Setenv("GODEBUG", "madvdontneed=1")
	const awake, deep = "madvdontneed=1,schedtrace=2147483647", "madvdontneed=1"
	for _, tc := range []struct {
		name      string
		c         *config
		args      []string
		godebug   string
		deepSleep string
	}{
		{"auto, checks", checks, nil, awake, "sysmonDeepSleep=false"},
		{"auto, reports only", reports, nil, deep, "sysmonDeepSleep=true"},
		{"awake", reports, []string{"--sysmon", "awake"}, awake, "sysmonDeepSleep=false"},
		{"deep", checks, []string{"--sysmon", "deep"}, deep, "sysmonDeepSleep=true"},
	} {
		m := startMixer(t, tc.c, "", "", tc.args...)
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", m.Cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var godebug []string
		for _, kv := range strings.Split(string(environ), "\x00") {
			if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
				godebug = append(godebug, v)
			}
		}
		if len(godebug) != 1 || godebug[0] != tc.godebug {
			t.Errorf("%s: the mixer's GODEBUG is %q, want [%q]", tc.name, godebug, tc.godebug)
		}
		m.WaitOutput(t, tc.deepSleep, 5*time.Second)
		if n := strings.Count(m.Output(), `msg="go runtime"`); n != 1 {
			t.Errorf("%s: %d start-up logs of the runtime's settings, want 1 (one restart at most):\n%s", tc.name, n, m.Output())
		}
		if err := m.Stop(10 * time.Second); err != nil {
			t.Errorf("%s: stop: %v", tc.name, err)
		}
	}
	// The sysmon thread, and it alone, runs at nice 19 when asked: the
	// thread the mixer lowers is the one that sleeps in nanosleep (an
	// awake sysmon sleeps there between its polls; the other threads wait
	// in futex or epoll).
	if nanosleep, ok := map[string]string{"amd64": "35", "arm64": "101"}[runtime.GOARCH]; ok {
		m := startMixer(t, reports, "", "", "--sysmon", "awake", "--sysmon-nice", "19")
		niced := nicedThreads(t, m.Cmd.Process.Pid)
		if len(niced) != 1 {
			t.Fatalf("threads at nice 19: %v, want one", niced)
		}
		slept := false
		for i := 0; i < 200 && !slept; i++ {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", m.Cmd.Process.Pid, niced[0]))
			if err != nil {
				t.Fatal(err)
			}
			slept = strings.HasPrefix(string(b), nanosleep+" ")
			time.Sleep(5 * time.Millisecond)
		}
		if !slept {
			t.Errorf("thread %s at nice 19 never sleeps in nanosleep: not sysmon", niced[0])
		}
		if err := m.Stop(10 * time.Second); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
	// auto: nice 19 with deep sleep (reports only), the process's for Checks.
	for _, tc := range []struct {
		name string
		c    *config
		args []string
		want int
	}{
		{"auto, reports only", reports, nil, 1},
		{"auto, checks", checks, nil, 0},
		{"0, reports only", reports, []string{"--sysmon-nice", "0"}, 0},
	} {
		m := startMixer(t, tc.c, "", "", tc.args...)
		if niced := nicedThreads(t, m.Cmd.Process.Pid); len(niced) != tc.want {
			t.Errorf("%s: threads at nice 19: %v, want %d", tc.name, niced, tc.want)
		}
		if err := m.Stop(10 * time.Second); err != nil {
			t.Errorf("%s: stop: %v", tc.name, err)
		}
	}
	// A mode that is not one is a usage error.
	_, stderr, code := runSidemix(t, "mixer", "--config", checks.dir, "--sysmon", "sometimes")
	if code != 2 || !strings.Contains(stderr, "--sysmon") {
		t.Errorf("--sysmon sometimes: exit %d, stderr %q; want 2 naming --sysmon", code, stderr)
	}
}

// nicedThreads lists the threads of process pid at nice 19.
func nicedThreads(t *testing.T, pid int) []string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		// Fields after the command's closing parenthesis: nice is the 19th
		// of the line, the 17th after it.
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		if f := strings.Fields(rest); len(f) > 16 && f[16] == "19" {
			out = append(out, task.Name())
		}
	}
	return out
}
