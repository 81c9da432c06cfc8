package testenv

import (
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server child process on a loopback port, with no
// persistence, for tests of Redis-backed adapters.
type Redis struct {
	t    testing.TB
	bin  string
	port int
	args []string

	mu   sync.Mutex
	proc *Process
}

// StartRedis starts /usr/bin/redis-server (or redis-server on PATH) on a
// free 127.0.0.1 port and waits until it accepts connections; extra are
// more server arguments, e.g. "--requirepass", "secret". When redis-server
// is missing the test fails in CI and is skipped elsewhere. The server is
// stopped when the test ends.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	bin, err := exec.LookPath("/usr/bin/redis-server")
	if err != nil {
		bin = RequireBinary(t, "redis-server")
	}
	r := &Redis{t: t, bin: bin, port: FreePort(t)}
	r.args = append([]string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", t.TempDir(),
	}, extra...)
	r.start()
	return r
}

func (r *Redis) start() {
	r.t.Helper()
	p := StartProcess(r.t, r.bin, r.args...)
	// Runs before StartProcess's own cleanup: a paused server would not
	// heed its SIGTERM.
	r.t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	if err := PollTCP(r.Addr(), 10*time.Second); err != nil {
		r.t.Fatalf("redis-server: %v\n%s", err, p.Output())
	}
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// Port is the server's port.
func (r *Redis) Port() int { return r.port }

// Stop shuts the server down (SIGTERM) and waits for it to exit.
func (r *Redis) Stop() {
	r.t.Helper()
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot exit
	}
	if err := p.Stop(10 * time.Second); err != nil && !stoppedBySignal(err) {
		r.t.Logf("redis-server: %v", err)
	}
}

// Kill ends the server abruptly (SIGKILL), as a crash would, and waits for
// it to exit.
func (r *Redis) Kill() {
	r.t.Helper()
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if !p.Exited() {
		_ = p.Cmd.Process.Kill()
	}
	<-p.Done()
}

// Pause freezes the server (SIGSTOP): connections stay open but nothing
// answers, as with a hung server or a network black hole. Resume undoes it.
func (r *Redis) Pause() { r.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (r *Redis) Resume() { r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("redis-server: %v: %v", sig, err)
	}
}

// Restart stops the server if it runs and starts a fresh, empty one on the
// same port.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	r.start()
}
