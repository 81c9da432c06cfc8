package redisquota_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/fakeclock"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/internal/quota"
	"github.com/sidemix/sidemix/adapters/memquota"
	"github.com/sidemix/sidemix/adapters/redisquota"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/testenv"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, redisquota.Factory(), []configtest.Case{
		{File: "issue.yaml"},
		{File: "full.yaml"},
		{File: "bucket.bad.yaml", Want: "quotas[0].bucketDuration: must be less than validDuration (10s), got 10s"},
		{File: "algorithm.bad.yaml", Want: `rateLimitAlgorithm: unknown algorithm "LEAKY_BUCKET" (want ROLLING_WINDOW or FIXED_WINDOW)`},
		{File: "url.bad.yaml", Want: `redisServerUrl: not a URL: missing ']' in host`},
		{File: "scheme.bad.yaml", Want: `redisServerUrl: scheme "http" is not redis or rediss`},
		{File: "connection.bad.yaml", Want: "redisServerUrl: required (host:port or redis://host:port/db)\n" +
			"connectionPoolSize: -1 is negative\n" +
			"timeout: must be positive, got 0s\n" +
			"breaker.failureThreshold: must be at least 1, got 0\n" +
			"breaker.probeInterval: must be positive, got -1s"},
		{File: "lease.bad.yaml", Want: "localLease.maxFraction: must be between 0 (no leases) and 0.1, got 0.5\n" +
			"localLease.maxDuration: must be positive and at most 1s, got 2s"},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 1: field redisServerURL not found in type redisquota.Config"},
	})
}

func TestURLForms(t *testing.T) {
	for url, want := range map[string]string{
		"localhost:6379":                      "",
		"[::1]:6379":                          "",
		"redis://127.0.0.1:6379/3":            "",
		"rediss://user:pw@host:6380/0":        "",
		"redis://host":                        "",
		"host":                                "redisServerUrl: not host:port nor a redis:// URL",
		":6379":                               "redisServerUrl: not host:port nor a redis:// URL",
		"redis://:pw@host:6379/x":             `redisServerUrl: invalid database number: "x"`,
		"redis://:pw@host:6379/0?pool_size=3": "redisServerUrl: query parameters are not supported; use connectionPoolSize, timeout and breaker",
	} {
		c := redisquota.NewConfig()
		c.RedisServerURL = url
		c.Quotas = []quota.Quota{{Name: "q", MaxAmount: 1, ValidDuration: time.Second}}
		got := ""
		if err := c.Validate(); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("%s: %q, want %q", url, got, want)
		}
	}
}

func TestRedaction(t *testing.T) {
	c := redisquota.NewConfig()
	c.RedisServerURL = "redis://admin:hunter2@10.0.0.1:6379/1"
	var r adapters.Redactor = c
	if got := r.Redacted().(*redisquota.Config).RedisServerURL; got != "redis://admin:xxxxx@10.0.0.1:6379/1" {
		t.Errorf("redacted URL %q", got)
	}
	if c.RedisServerURL != "redis://admin:hunter2@10.0.0.1:6379/1" {
		t.Error("Redacted changed the config")
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("params", "params", c)
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), "10.0.0.1") {
		t.Errorf("log line: %s", buf.String())
	}
	for in, want := range map[string]string{
		"10.0.0.1:6379":      "10.0.0.1:6379",
		"redis://h:1/0":      "redis://h:1/0",
		"redis://:pw@[::1/0": "(unparsable URL, redacted)",
	} {
		if got := redisquota.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func create(t *testing.T, f adapters.Factory, set adapters.Settings, params string) adapters.QuotaAllocator {
	t.Helper()
	if f.Name == redisquota.Name && !strings.Contains(params, "timeout:") {
		// miniredis interprets Lua slowly, more so under -race on a busy
		// machine: 100ms is not enough there.
		params = "timeout: 10s\n" + params
	}
	return configtest.Create(t, f, set, []byte(params)).(adapters.QuotaAllocator)
}

func alloc(t *testing.T, h adapters.QuotaAllocator, q *template.Quota, args adapters.QuotaArgs) adapters.QuotaResult {
	t.Helper()
	r, err := h.Allocate(context.Background(), q, args)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSameAnswersAsMemquota runs one random sequence of allocations
// through redisquota (on miniredis) and memquota, on one clock: the Lua
// script and quota.Decide must agree on every field of every result.
func TestSameAnswersAsMemquota(t *testing.T) {
	for _, alg := range []string{"ROLLING_WINDOW", "FIXED_WINDOW"} {
		t.Run(alg, func(t *testing.T) {
			mr := miniredis.RunT(t)
			clk := fakeclock.New(fakeclock.OnAMinute)
			quotas := `
rateLimitAlgorithm: ` + alg + `
minDeduplicationDuration: 300ms
quotas:
- name: rq
  maxAmount: 10
  validDuration: 1s
  bucketDuration: 100ms
  windows:
  - {maxAmount: 25, validDuration: 5s}
  overrides:
  - dimensions: {source: b}
    maxAmount: 4
    validDuration: 700ms
    windows: []
`
			red := create(t, redisquota.Factory(), adapters.Settings{Now: clk.Now}, "redisServerUrl: "+mr.Addr()+"\n"+quotas)
			mem := create(t, memquota.Factory(), adapters.Settings{Now: clk.Now}, quotas)
			rnd := rand.New(rand.NewPCG(1, 2))
			for i := range 3000 {
				q := &template.Quota{Name: "rq", Dimensions: map[string]any{"source": []string{"a", "b"}[rnd.IntN(2)]}}
				args := adapters.QuotaArgs{Amount: rnd.Int64N(6), BestEffort: rnd.IntN(3) == 0}
				if rnd.IntN(4) == 0 {
					args.DeduplicationID = fmt.Sprint("d", rnd.IntN(5))
				}
				want := alloc(t, mem, q, args)
				if got := alloc(t, red, q, args); got != want {
					t.Fatalf("step %d at +%v, %v %+v:\nredisquota %+v\n  memquota %+v", i, clk.Now().Sub(time.Unix(1_700_000_040, 0)), q.Dimensions, args, got, want)
				}
				// Redis expires deduplication entries on its own clock.
				d := time.Duration(rnd.IntN(60)) * time.Millisecond
				clk.Advance(d)
				mr.FastForward(d)
			}
		})
	}
}

func TestDeduplication(t *testing.T) {
	mr := miniredis.RunT(t)
	clk := fakeclock.New(fakeclock.OnAMinute)
	h := create(t, redisquota.Factory(), adapters.Settings{Now: clk.Now}, `
redisServerUrl: `+mr.Addr()+`
minDeduplicationDuration: 2s
quotas:
- {name: rq, maxAmount: 3, validDuration: 1m}
- {name: other, maxAmount: 3, validDuration: 1m}
`)
	q := &template.Quota{Name: "rq", Dimensions: map[string]any{"source": "a"}}
	first := alloc(t, h, q, adapters.QuotaArgs{DeduplicationID: "req-1", Amount: 2})
	clk.Advance(time.Second)
	// A retry is answered as the first time and charges nothing.
	if again := alloc(t, h, q, adapters.QuotaArgs{DeduplicationID: "req-1", Amount: 2}); again != first {
		t.Errorf("retry got %+v, want the first answer %+v", again, first)
	}
	if r := alloc(t, h, q, adapters.QuotaArgs{DeduplicationID: "req-2", Amount: 1}); r.Amount != 1 {
		t.Errorf("req-2 granted %d, want 1", r.Amount)
	}
	// The same id on another quota is another allocation.
	if r := alloc(t, h, &template.Quota{Name: "other"}, adapters.QuotaArgs{DeduplicationID: "req-1", Amount: 2}); r.Amount != 2 {
		t.Errorf("req-1 on other granted %d, want 2", r.Amount)
	}
	// Redis forgets the id after minDeduplicationDuration.
	mr.FastForward(2 * time.Second)
	clk.Advance(2 * time.Second)
	if r := alloc(t, h, q, adapters.QuotaArgs{DeduplicationID: "req-1", Amount: 2}); r.Amount != 0 {
		t.Errorf("req-1 after the dedup time granted %d, want 0 (3 of 3 used)", r.Amount)
	}
}

func TestRaisedLimitKeepsCounters(t *testing.T) {
	mr := miniredis.RunT(t)
	clk := fakeclock.New(fakeclock.OnAMinute)
	q := &template.Quota{Name: "rq"}
	h := create(t, redisquota.Factory(), adapters.Settings{Now: clk.Now}, "redisServerUrl: "+mr.Addr()+"\nquotas: [{name: rq, maxAmount: 3, validDuration: 1s}]")
	alloc(t, h, q, adapters.QuotaArgs{Amount: 3})
	// Another handler (the next config, or another mixer) with a raised
	// limit sees the same counts.
	raised := create(t, redisquota.Factory(), adapters.Settings{Now: clk.Now}, "redisServerUrl: "+mr.Addr()+"\nquotas: [{name: rq, maxAmount: 5, validDuration: 1s}]")
	r := alloc(t, raised, q, adapters.QuotaArgs{Amount: 5, BestEffort: true})
	if want := (adapters.QuotaResult{Amount: 2, ValidDuration: time.Second, Limit: 5, Remaining: 0, Reset: 1050 * time.Millisecond}); r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
}

func TestPassword(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.RequireAuth("hunter2")
	var logs syncBuffer
	set := adapters.Settings{Name: "q", Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Now: fakeclock.New(fakeclock.OnAMinute).Now}
	h := create(t, redisquota.Factory(), set, "redisServerUrl: redis://:hunter2@"+mr.Addr()+"/0\nquotas: [{name: rq, maxAmount: 3, validDuration: 1s}]")
	if r := alloc(t, h, &template.Quota{Name: "rq"}, adapters.QuotaArgs{Amount: 1}); r.Amount != 1 {
		t.Errorf("granted %d, want 1", r.Amount)
	}
	// A wrong password fails at every allocation, and is not logged.
	bad := create(t, redisquota.Factory(), set, "redisServerUrl: redis://:swordfish@"+mr.Addr()+"/0\nquotas: [{name: rq, maxAmount: 3, validDuration: 1s}]")
	_, err := bad.Allocate(context.Background(), &template.Quota{Name: "rq"}, adapters.QuotaArgs{Amount: 1})
	if err == nil {
		t.Fatal("allocation with a wrong password succeeded")
	}
	for _, s := range []string{logs.String(), err.Error()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "swordfish") {
			t.Errorf("password leaked: %s", s)
		}
	}
	if !strings.Contains(logs.String(), "circuit open") {
		t.Errorf("no log of the open circuit:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCircuitBreaker(t *testing.T) {
	mr := miniredis.RunT(t)
	reg := prometheus.NewRegistry()
	h := create(t, redisquota.Factory(), adapters.Settings{Name: "shared", Registerer: reg, Now: fakeclock.New(fakeclock.OnAMinute).Now}, `
redisServerUrl: `+mr.Addr()+`
timeout: 1s
breaker: {failureThreshold: 2, probeInterval: 10ms}
quotas: [{name: rq, maxAmount: 100, validDuration: 1s}]
`)
	q := &template.Quota{Name: "rq"}
	ctx := context.Background()
	metric := func(name string, labels map[string]string) float64 {
		return metrictest.Value(t, reg, name, labels)
	}
	alloc(t, h, q, adapters.QuotaArgs{Amount: 1})

	mr.Close()
	// Two failures reach Redis (refused connections); then the circuit is
	// open and calls fail without trying.
	for i := range 5 {
		_, err := h.Allocate(ctx, q, adapters.QuotaArgs{Amount: 1})
		if err == nil {
			t.Fatalf("allocation %d succeeded with Redis down", i)
		}
		if open := errors.Is(err, redisquota.ErrCircuitOpen); open != (i >= 2) {
			t.Errorf("allocation %d: %v; circuit open: %v, want %v", i, err, open, i >= 2)
		}
	}
	if got := metric("sidemix_redisquota_circuit_open", map[string]string{"handler": "shared"}); got != 1 {
		t.Errorf("circuit_open = %v, want 1", got)
	}
	if got := metric("sidemix_redisquota_backend_errors_total", map[string]string{"handler": "shared"}); got != 2 {
		t.Errorf("backend_errors_total = %v, want 2", got)
	}
	if got := metric("sidemix_redisquota_allocations_total", map[string]string{"handler": "shared", "quota": "rq", "result": "error"}); got != 5 {
		t.Errorf("allocations_total{error} = %v, want 5", got)
	}

	// Redis comes back (empty): the probe closes the circuit.
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		_, err := h.Allocate(ctx, q, adapters.QuotaArgs{Amount: 1})
		return err == nil, fmt.Sprint(err)
	})
	if got := metric("sidemix_redisquota_circuit_open", map[string]string{"handler": "shared"}); got != 0 {
		t.Errorf("circuit_open = %v after recovery, want 0", got)
	}
	if got := metric("sidemix_redisquota_allocations_total", map[string]string{"handler": "shared", "quota": "rq", "result": "granted"}); got != 2 {
		t.Errorf("allocations_total{granted} = %v, want 2", got)
	}
}

func TestUnreachableAtStart(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there
	h := create(t, redisquota.Factory(), adapters.Settings{}, `
redisServerUrl: `+addr+`
breaker: {probeInterval: 10ms}
quotas: [{name: rq, maxAmount: 100, validDuration: 1s}]
`)
	// Create succeeded, with the circuit open from the start.
	if _, err := h.Allocate(context.Background(), &template.Quota{Name: "rq"}, adapters.QuotaArgs{Amount: 1}); !errors.Is(err, redisquota.ErrCircuitOpen) {
		t.Errorf("error %v, want the open circuit's", err)
	}
}

func TestAllocateErrors(t *testing.T) {
	mr := miniredis.RunT(t)
	h := create(t, redisquota.Factory(), adapters.Settings{}, "redisServerUrl: "+mr.Addr()+"\nquotas: [{name: rq, maxAmount: 1, validDuration: 1s}]")
	ctx := context.Background()
	if _, err := h.Allocate(ctx, &template.Quota{Name: "nope"}, adapters.QuotaArgs{Amount: 1}); err == nil {
		t.Error("Allocate of an unknown quota succeeded")
	}
	if _, err := h.Allocate(ctx, &template.Quota{Name: "rq"}, adapters.QuotaArgs{Amount: -1}); err == nil {
		t.Error("Allocate of a negative amount succeeded")
	}
	if _, err := h.Allocate(ctx, nil, adapters.QuotaArgs{Amount: 1}); err == nil {
		t.Error("Allocate of nil succeeded")
	}
}

func ExampleFactory() {
	mr, err := miniredis.Run() // a real Redis in production
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	f := redisquota.Factory()
	cfg, _ := configtest.Decode(f, []byte(`
redisServerUrl: `+mr.Addr()+`
timeout: 10s
quotas:
- name: requestcount
  maxAmount: 2
  validDuration: 1s
`))
	now := time.Unix(1_700_000_000, 0)
	h, err := f.Create(context.Background(), adapters.Settings{Name: "shared-quota", Now: func() time.Time { return now }}, cfg)
	if err != nil {
		panic(err)
	}
	defer h.Close(context.Background())
	q := &template.Quota{Name: "requestcount", Dimensions: map[string]any{"destination": "web"}}
	for range 3 {
		r, _ := h.(adapters.QuotaAllocator).Allocate(context.Background(), q, adapters.QuotaArgs{Amount: 1})
		fmt.Println(r.Amount, r.ValidDuration, r.Limit, r.Remaining)
	}
	// Output:
	// 1 1s 2 1
	// 1 1s 2 0
	// 0 1.05s 2 0
}
