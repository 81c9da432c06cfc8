package procstat

import (
	"os"
	"testing"
	"time"
)

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

func TestSelf(t *testing.T) {
	pid := os.Getpid()
	m := NewMeter(pid)
	m.Start()
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	m.Stop()
	if err := m.Err(); err != nil {
		t.Fatal(err)
	}
	if m.CPU < 0 {
		t.Errorf("CPU %v", m.CPU)
	}
	for name, f := range map[string]func(int) (int64, error){"PeakRSS": PeakRSS, "RSS": RSS} {
		n, err := f(pid)
		if err != nil || n <= 0 {
			t.Errorf("%s = %d, %v", name, n, err)
		}
	}
}
