package harness

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

func TestStartStopKeepsOutput(t *testing.T) {
	spec := Spec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", "echo ready; exec sleep 30"}}
	if _, err := exec.LookPath("taskset"); err == nil {
		spec.CPUs = "0"
	}
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(10*time.Second, func() error {
		if !strings.Contains(p.Output(), "ready") {
			return errors.New("no output yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() <= 0 || p.Exited() {
		t.Fatalf("pid %d exited %v", p.Pid(), p.Exited())
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Error("still running after Stop")
	}
}

func TestWaitReadyReportsAnEarlyExit(t *testing.T) {
	p, err := Start(Spec{Name: "false", Path: "/bin/sh", Args: []string{"-c", "echo broken config; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(10*time.Second, func() error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "broken config") {
		t.Errorf("want the exit and its output, got %v", err)
	}
}

func TestFreeAddrsDistinct(t *testing.T) {
	addrs, err := FreeAddrs(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] || !strings.HasPrefix(a, "127.0.0.1:") || Port(a) == "" {
			t.Errorf("addresses %v", addrs)
		}
		seen[a] = true
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 4}
	_, _ = b.Write([]byte("abc"))
	_, _ = b.Write([]byte("defg"))
	if got := b.String(); got != "defg" {
		t.Errorf("tail = %q", got)
	}
}

func TestRedis(t *testing.T) {
	testenv.RequireBinary(t, "redis-server")
	r, err := StartRedis("")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop(5 * time.Second)
	if got, err := r.Do("SET", "k", "v"); err != nil || got != "OK" {
		t.Fatalf("SET = %q, %v", got, err)
	}
	if got, err := r.Do("DBSIZE"); err != nil || got != "1" {
		t.Fatalf("DBSIZE = %q, %v", got, err)
	}
	if _, err := r.Do("NOSUCHCOMMAND"); err == nil {
		t.Error("want an error reply")
	}
}

func TestByScenario(t *testing.T) {
	type run struct {
		name string
		skip bool
		v    int
	}
	rounds := [][]run{
		{{"a", false, 1}, {"b", true, 0}, {"c", true, 0}},
		{{"a", false, 2}, {"b", false, 3}, {"c", true, 0}},
	}
	order, runs, skips := ByScenario(rounds, func(r run) string { return r.name }, func(r run) bool { return r.skip })
	if got := strings.Join(order, ","); got != "a,b,c" {
		t.Fatalf("order %q, want a,b,c", got)
	}
	if len(runs["a"]) != 2 || len(runs["b"]) != 1 || runs["b"][0].v != 3 || len(runs["c"]) != 0 {
		t.Fatalf("runs %v", runs)
	}
	if _, ok := skips["c"]; !ok {
		t.Fatalf("c skipped in every round, skips %v", skips)
	}
}
