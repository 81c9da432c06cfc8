package procstat

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary a child that burns CPU on request (see
// TestMain).
const childEnv = "PROCSTAT_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "burn":
		child(false)
	case "burn-exit":
		child(true)
	}
	os.Exit(0)
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// sink keeps burn's loop from being optimised away.
var sink uint64

// burn spins on the calling thread until it has used d of CPU. It reads
// the thread's clock (a system call) only every ~50 us: a goroutine that
// keeps entering system calls makes the runtime's sysmon thread wake
// every 20 us and charge the process CPU of its own.
func burn(d time.Duration) {
	end := threadCPU() + d
	for x := uint64(1); threadCPU() < end; {
		for range 50000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		sink += x
	}
}

// child reads a duration per line from stdin, burns that much CPU on one
// thread (a thread that then ends, with exit) and answers "ok"; it ends at
// EOF.
func child(exit bool) {
	// Keep the main thread to this goroutine: the burns then run on other
	// threads, which can end (the main thread cannot).
	runtime.LockOSThread()
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	for in.Scan() {
		d, err := time.ParseDuration(in.Text())
		if err != nil {
			panic(err)
		}
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			burn(d)
			close(done)
			if !exit {
				runtime.UnlockOSThread()
			}
			// Without UnlockOSThread the goroutine's thread ends with it.
		}()
		<-done
		if exit {
			time.Sleep(50 * time.Millisecond) // let the thread end
		}
		fmt.Println("ok")
	}
}

// burner is a child process that burns CPU on request.
type burner struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startBurner(t *testing.T, mode string) *burner {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "GOMAXPROCS=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &burner{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
	b.expect(t, "ready")
	return b
}

func (b *burner) expect(t *testing.T, want string) {
	t.Helper()
	if !b.out.Scan() || b.out.Text() != want {
		t.Fatalf("child said %q (%v), want %q", b.out.Text(), b.out.Err(), want)
	}
}

func (b *burner) burn(t *testing.T, d time.Duration) {
	t.Helper()
	if _, err := fmt.Fprintln(b.in, d); err != nil {
		t.Fatal(err)
	}
	b.expect(t, "ok")
}

// TestChildBurn charges a child exactly the CPU it burned: at least the
// burn (10 ms ticks would read 0-10 ms short), and no more than the burn
// plus the child's own reading and writing of a line.
func TestChildBurn(t *testing.T) {
	for _, mode := range []string{"burn", "burn-exit"} {
		t.Run(mode, func(t *testing.T) {
			b := startBurner(t, mode)
			for _, d := range []time.Duration{33 * time.Millisecond, 127 * time.Millisecond} {
				m := NewMeter(b.cmd.Process.Pid)
				m.Start()
				b.burn(t, d)
				m.Stop()
				if err := m.Err(); err != nil {
					t.Fatal(err)
				}
				if m.Span.Source != Clock {
					t.Fatalf("read by %s: %s", m.Span.Source, m.Span.Why)
				}
				if m.CPU < d || m.CPU > d+5*time.Millisecond {
					t.Errorf("burned %v, measured %v", d, m.CPU)
				}
			}
		})
	}
}

// TestSchedstat checks the fallback: the live threads' schedstat sum
// measures a burn in ns, and a window in which a thread ended is read in
// ticks, saying so.
func TestSchedstat(t *testing.T) {
	noClock := errors.New("no clock")
	read := func(t *testing.T, pid int) Sample {
		t.Helper()
		s, err := Read(pid)
		if err != nil {
			t.Fatal(err)
		}
		s.clockErr = noClock
		if s.threads, s.tasksErr = threadTimes(pid); s.tasksErr != nil {
			t.Fatal(s.tasksErr)
		}
		return s
	}
	const d = 77 * time.Millisecond

	b := startBurner(t, "burn")
	pid := b.cmd.Process.Pid
	s0 := read(t, pid)
	b.burn(t, d)
	sp := read(t, pid).Since(s0)
	if sp.Source != Schedstat || sp.CPU < d || sp.CPU > d+5*time.Millisecond {
		t.Errorf("burned %v, measured %v", d, sp)
	}

	b = startBurner(t, "burn-exit")
	pid = b.cmd.Process.Pid
	s0 = read(t, pid)
	for i := range 2 {
		// Each burn runs on a thread that ends in the window: one of s0's
		// (the set shrank) or one started in the window (schedstat's sum
		// falls short of the ticks).
		b.burn(t, d)
		s1 := read(t, pid)
		sp := s1.Since(s0)
		if sp.Source != Ticks || sp.Why == "" {
			t.Errorf("window %d, in which a thread ended, was read by %s (%q), want ticks", i, sp.Source, sp.Why)
		}
		// Two readings of utime and stime, each rounded to a tick, and
		// the burner's own work around the burn (up to 5 ms, as above).
		if lo, hi := d-2*clockTick, d+2*clockTick+5*time.Millisecond; sp.CPU < lo || sp.CPU > hi {
			t.Errorf("window %d: burned %v, measured %v", i, d, sp)
		}
		s0 = s1
	}
}

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis, as the kernel allows.
	line := []byte("4242 (my (od)d prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 8 0 100 0 0\n")
	got, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 175 * clockTick; got != want {
		t.Errorf("parseStat = %v, want %v", got, want)
	}
	if _, err := parseStat([]byte("garbage")); err == nil {
		t.Error("want an error for a line without ')'")
	}
}

// TestSelf checks the three meters agree on this process: the clock
// within a tick-and-a-bit of utime+stime, the live threads' schedstat
// no more than the clock.
func TestSelf(t *testing.T) {
	pid := os.Getpid()
	burn(20 * time.Millisecond)
	clock, err := processClock(pid)
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := CPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	threads, err := threadTimes(pid)
	if err != nil {
		t.Fatal(err)
	}
	clock2, err := processClock(pid)
	if err != nil {
		t.Fatal(err)
	}
	var sum time.Duration
	for _, d := range threads {
		sum += d
	}
	if ticks > clock2 || ticks < clock-2*clockTick {
		t.Errorf("ticks %v, clock %v..%v", ticks, clock, clock2)
	}
	if sum > clock2 || sum < 20*time.Millisecond {
		t.Errorf("schedstat sum %v over %d threads, clock %v..%v", sum, len(threads), clock, clock2)
	}
	for name, f := range map[string]func(int) (int64, error){"PeakRSS": PeakRSS, "RSS": RSS} {
		n, err := f(pid)
		if err != nil || n <= 0 {
			t.Errorf("%s = %d, %v", name, n, err)
		}
	}
}
