package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI (CI=true), where a missing
// dependency fails a test instead of skipping it.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireBinary returns the path of the named executable. When it is not on
// PATH the test fails in CI and is skipped elsewhere.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	Require(t, name, err)
	return ""
}

// Require stops the test because `what` is unavailable (err says why): it
// fails the test in CI and skips it elsewhere. Use it for any real server or
// tool a test needs that the machine may not have.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required in CI but unavailable: %v (.ci/run must install it)", what, err)
		return
	}
	t.Skipf("%s unavailable, skipping: %v (CI=true turns this into a failure)", what, err)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns "127.0.0.1:<free port>".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// ModuleRoot returns the directory of the module's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("not inside a Go module (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(gomod)
}

// binary is one build of ./cmd/sidemix, made at most once per test process.
type binary struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

var builds struct {
	race, plain binary
}

// BuildSidemix builds ./cmd/sidemix once per test process, into a temporary
// directory, and returns the binary's path. With -race on the test, the binary
// is built with -race too.
func BuildSidemix(t testing.TB) string {
	t.Helper()
	if raceEnabled {
		return builds.race.get(t, true)
	}
	return builds.plain.get(t, false)
}

// BuildSidemixPlain builds ./cmd/sidemix without the race detector, for tests
// that measure timing under load, where the detector's slowdown and pauses
// would be measured instead of sidemix.
func BuildSidemixPlain(t testing.TB) string {
	t.Helper()
	return builds.plain.get(t, false)
}

func (b *binary) get(t testing.TB, race bool) string {
	t.Helper()
	b.once.Do(func() {
		root := ModuleRoot(t)
		b.dir, b.err = os.MkdirTemp("", "sidemix-bin-")
		if b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "sidemix")
		args := []string{"build", "-o", b.bin}
		if race {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/sidemix")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("building sidemix: %v", b.err)
	}
	return b.bin
}

// Process is a child process started by StartProcess.
type Process struct {
	Name string
	Cmd  *exec.Cmd

	mu     sync.Mutex
	output bytes.Buffer
	done   chan struct{}
	err    error
}

// Output returns what the process wrote to stdout and stderr so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.Write(b)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, valid after Done is closed.
func (p *Process) Err() error { return p.err }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to timeout for the process to exit, then
// kills it. It returns the exit error (nil for a clean exit).
func (p *Process) Stop(timeout time.Duration) error {
	if p.Exited() {
		return p.err
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v after SIGTERM; killed", p.Name, timeout)
	}
	return p.err
}

// WaitOutput waits until the process's output contains substr.
func (p *Process) WaitOutput(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Output(), substr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: output does not contain %q after %v", p.Name, substr, timeout)
}

// StartProcess starts name (a path or a command on PATH) with args. Its
// stdout and stderr are captured and logged if the test fails; it is
// stopped (SIGTERM, then SIGKILL) when the test ends.
func StartProcess(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	return StartProcessEnv(t, nil, name, args...)
}

// StartProcessEnv is StartProcess with extra environment variables
// ("KEY=value") on top of the test's own.
func StartProcessEnv(t testing.TB, env []string, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: filepath.Base(name), done: make(chan struct{})}
	p.Cmd = exec.Command(name, args...)
	p.Cmd.Stdout = p
	p.Cmd.Stderr = p
	p.Cmd.Env = append(os.Environ(), env...)
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		exitedEarly := p.Exited()
		if err := p.Stop(10 * time.Second); err != nil && exitedEarly {
			t.Logf("%s exited before the end of the test: %v", p.Name, err)
		} else if err != nil && !stoppedBySignal(err) {
			t.Logf("%s: %v", p.Name, err)
		}
		if strings.Contains(p.Output(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", p.Name)
		}
		if t.Failed() {
			t.Logf("--- output of %s %s ---\n%s", name, strings.Join(args, " "), p.Output())
		}
	})
	return p
}

// stoppedBySignal reports whether err is the exit of a process ended by
// SIGTERM or SIGKILL, which is how tests stop their children.
func stoppedBySignal(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && (ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGKILL)
}

// WaitTCP waits until addr accepts TCP connections.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	if err := PollTCP(addr, timeout); err != nil {
		t.Fatal(err)
	}
}

// PollTCP is WaitTCP without a test: it returns an error on timeout.
func PollTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s not accepting connections after %v: %v", addr, timeout, err)
}

// WaitHTTP waits until a GET of url answers with a status below 500.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := PollHTTP(url, timeout); err != nil {
		t.Fatal(err)
	}
}

// PollHTTP is WaitHTTP without a test: it returns an error on timeout.
func PollHTTP(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %s", url, timeout, last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Eventually polls cond every 50ms until it returns true or timeout passes,
// then fails the test with the message of the last call.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var msg string
	for {
		var ok bool
		ok, msg = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CommentedExample reads a file of examples/ whose documents ship commented
// out (they need a broker or collector the operator names) and returns them
// turned on, as an operator would: every line's leading "#" removed, from
// the first document on.
func CommentedExample(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var on []string
	for line := range strings.SplitSeq(string(b), "\n") {
		on = append(on, strings.TrimPrefix(line, "#"))
	}
	text := strings.Join(on, "\n")
	i := strings.Index(text, "apiVersion:")
	if i < 0 {
		t.Fatalf("%s: no document", path)
	}
	return []byte(text[i:])
}
