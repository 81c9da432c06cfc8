package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec describes a process to start.
type Spec struct {
	// Name labels the process in errors.
	Name string
	// Path is the executable, Args its arguments.
	Path string
	Args []string
	// Env is added to the harness's own environment ("KEY=value").
	Env []string
	// CPUs, when set, pins the process to these CPUs (a taskset list such
	// as "0" or "0,1"); empty leaves it wherever the scheduler puts it.
	CPUs string
	// Dir is the working directory; empty means the harness's own.
	Dir string
}

// Proc is a process started by Start.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error
}

// Start starts the process described by s. With s.CPUs it runs through
// taskset, which sets the affinity and then execs the program, so Pid is
// the program's own.
func Start(s Spec) (*Proc, error) {
	path, args := s.Path, s.Args
	if s.CPUs != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("%s: pinning to CPUs %s needs taskset: %w", s.Name, s.CPUs, err)
		}
		args = append([]string{"-c", s.CPUs, path}, args...)
		path = ts
	}
	p := &Proc{Name: s.Name, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(os.Environ(), s.Env...)
	p.cmd.Dir = s.Dir
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	// Its own process group: a ^C to the harness reaches the harness, which
	// stops its children in order, instead of killing all at once.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output is the end of what the process wrote to stdout and stderr.
func (p *Proc) Output() string { return p.out.String() }

// Stop sends SIGTERM, waits up to timeout, then kills the process.
func (p *Proc) Stop(timeout time.Duration) error {
	if p.Exited() {
		return p.exitErr()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.Name, timeout)
	}
	return nil
}

// Interrupt sends SIGINT (how perf and similar tools are told to finish
// writing) and waits up to timeout, then kills the process.
func (p *Proc) Interrupt(timeout time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGINT; killed", p.Name, timeout)
	}
}

func (p *Proc) exitErr() error {
	return fmt.Errorf("%s exited: %v\n%s", p.Name, p.err, p.Output())
}

// WaitReady polls ready until it returns nil, the process exits, or
// timeout passes.
func (p *Proc) WaitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if p.Exited() {
			return p.exitErr()
		}
		if err = ready(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v\n%s", p.Name, timeout, err, p.Output())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TCPReady is a WaitReady probe: addr accepts connections.
func TCPReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	}
}

// HTTPReady is a WaitReady probe: a GET of url answers 2xx.
func HTTPReady(url string) func() error {
	client := &http.Client{Timeout: time.Second}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return errors.New(resp.Status)
		}
		return nil
	}
}

// FreeAddr returns "127.0.0.1:<port>" with a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// FreeAddrs returns n distinct free loopback addresses.
func FreeAddrs(n int) ([]string, error) {
	// Hold every listener until all are chosen so no port repeats.
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// Port returns the port of a host:port address.
func Port(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// GoInstall runs `go install pkg@version` with GOBIN=dir and returns the
// path of the built command (named after the package's last element).
func GoInstall(ctx context.Context, dir, pkg, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "install", pkg+"@"+version)
	// Outside any module, so the project's go.mod neither constrains nor
	// records the build.
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go install %s@%s: %v\n%s", pkg, version, err, out)
	}
	return dir + "/" + pkg[strings.LastIndexByte(pkg, '/')+1:], nil
}

// ModuleVersion returns the main module version a Go binary was built from
// (`go version -m`), or "unknown".
func ModuleVersion(bin string) string {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" {
			return f[1] + "@" + f[2]
		}
	}
	return "unknown"
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
