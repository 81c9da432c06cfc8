package policybench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
	"github.com/sidemix/sidemix/benchmarks/internal/load"
	"github.com/sidemix/sidemix/benchmarks/internal/procstat"
)

// Defaults of Options.
const (
	DefaultWorkers     = 16
	DefaultConns       = 4
	DefaultWarmup      = 2 * time.Second
	DefaultDuration    = 5 * time.Second
	DefaultPrefetchMax = 100
	DefaultFixedRate   = 3000
	// DeniedLimit is the per-second limit of the runs where most requests
	// are denied.
	DeniedLimit = 1000
)

// redisPoolSize is the Redis connection pool of both quota servers (the
// ratelimit peer's default).
const redisPoolSize = 10

// Options configure a Suite.
type Options struct {
	// Sidemix is the sidemix binary under test. Required.
	Sidemix string
	// Ratelimit is the envoyproxy/ratelimit binary (BuildRatelimit); empty
	// skips the peer's rows.
	Ratelimit string
	// WorkDir holds generated policies and configs; empty means a fresh
	// temporary directory, removed by Close.
	WorkDir string
	// ServerCPUs pins the server under test (mixer, ratelimit, and the
	// proxy of the prefetch runs), as a taskset list; GOMAXPROCS is set to
	// its CPU count. Empty pins nothing.
	ServerCPUs string
	// RedisCPUs pins Redis; the load generator runs there too when the
	// command pins itself.
	RedisCPUs string
	// Workers is the number of concurrent callers; Conns the number of
	// client connections they share (as that many proxies would).
	Workers, Conns int
	// Warmup and Duration are each run's unmeasured and measured windows.
	Warmup, Duration time.Duration
	// Rules lists the rule counts of the mixer Check runs (default 1, 10, 100).
	Rules []int
	// FixedRate is the offered load, per second, of the open-loop runs that
	// compare both quota servers at equal load.
	FixedRate int
	// PrefetchMax is the proxy's --quota-prefetch-max in the prefetch run.
	PrefetchMax int
	// RatelimitLocalCache is the ratelimit peer's LOCAL_CACHE_SIZE_IN_BYTES:
	// its cache of keys over their limit, the counterpart of redisquota's
	// over-limit cache; 0 turns it off.
	RatelimitLocalCache int
	// ProfileDir, when set, records the server of each run with
	// `perf record -g` over the measured window into
	// ProfileDir/<scenario>.<n>.perf.data (read with perf report). Runs
	// profiled are slower: use it to find hot spots, not for the table.
	ProfileDir string
	// Log receives one line per run; nil discards.
	Log io.Writer
}

func (o *Options) setDefaults() {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Conns <= 0 {
		o.Conns = DefaultConns
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if len(o.Rules) == 0 {
		o.Rules = []int{1, 10, 100}
	}
	if o.FixedRate <= 0 {
		o.FixedRate = DefaultFixedRate
	}
	if o.PrefetchMax <= 0 {
		o.PrefetchMax = DefaultPrefetchMax
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Suite runs the policy-path benchmarks against one Redis it owns.
type Suite struct {
	opts    Options
	redis   *harness.Redis
	tmpWork bool
	current string // the scenario running, for profile file names
	runs    int
}

// New starts Redis and returns a suite ready to run scenarios.
func New(opts Options) (*Suite, error) {
	opts.setDefaults()
	if opts.Sidemix == "" {
		return nil, errors.New("policybench: Options.Sidemix is required")
	}
	s := &Suite{opts: opts}
	if s.opts.WorkDir == "" {
		dir, err := os.MkdirTemp("", "policybench-")
		if err != nil {
			return nil, err
		}
		s.opts.WorkDir, s.tmpWork = dir, true
	}
	r, err := harness.StartRedis(opts.RedisCPUs)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.redis = r
	return s, nil
}

// Close stops Redis and removes a temporary work directory.
func (s *Suite) Close() {
	if s.redis != nil {
		_ = s.redis.Stop(5 * time.Second)
	}
	if s.tmpWork {
		os.RemoveAll(s.opts.WorkDir)
	}
}

// serverEnv is the environment of a pinned server: GOMAXPROCS = its CPUs,
// as a deployment with a CPU limit of that many cores would set it.
func (s *Suite) serverEnv() []string {
	if s.opts.ServerCPUs == "" {
		return nil
	}
	return []string{fmt.Sprintf("GOMAXPROCS=%d", cpuCount(s.opts.ServerCPUs))}
}

// cpuCount counts the CPUs of a taskset list such as "0", "0,2" or "0-3".
func cpuCount(list string) int {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		var lo, hi int
		if _, err := fmt.Sscanf(part, "%d-%d", &lo, &hi); err == nil && hi >= lo {
			n += hi - lo + 1
		} else {
			n++
		}
	}
	return max(n, 1)
}

// Group names of scenarios, in the order the report lists them.
const (
	GroupCheck    = "check"
	GroupQuota    = "quota"
	GroupRate     = "quota-rate"
	GroupDenied   = "quota-denied"
	GroupPrefetch = "prefetch"
)

// Scenario is one measured configuration.
type Scenario struct {
	Name  string
	Group string
	run   func(ctx context.Context, s *Suite) (Measurement, error)
}

// Measurement is what one run of a scenario measured. Rates are per
// second of wall time; CPU figures are cores (CPU seconds per second).
type Measurement struct {
	Scenario string `json:"scenario"`
	Group    string `json:"group"`
	// Server is "sidemix" or "ratelimit"; Detail says what varies (rules,
	// algorithm, prefetch).
	Server string `json:"server"`
	Detail string `json:"detail"`
	// Requests were answered in the measured window, Rate per second.
	Requests int64   `json:"requests"`
	Rate     float64 `json:"per_s"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	// ServerCores is the server's CPU use; PerCPUSecond is answered
	// requests per CPU second of the server.
	ServerCores  float64 `json:"server_cores"`
	PerCPUSecond float64 `json:"per_cpu_s"`
	// LoadgenCores is the load generator's own CPU use: near its core's
	// capacity the client, not the server, bounds Rate.
	LoadgenCores float64 `json:"loadgen_cores"`
	// RedisCPUUsPerOp is Redis's CPU per answered request, in µs.
	RedisCPUUsPerOp float64 `json:"redis_cpu_us_per_op"`
	// ServerPeakRSSMB is the server's largest resident set (VmHWM) by the
	// end of the run, in MiB: what a GC setting costs in memory.
	ServerPeakRSSMB float64 `json:"server_peak_rss_mb,omitempty"`
	// Outcomes is the answers' split, Errors the failed requests.
	Outcomes string `json:"outcomes"`
	Errors   int64  `json:"errors"`
	// Prefetch runs: mixer Checks per proxied request, and the fraction of
	// requests the proxy answered from its prefetched quota (-1 unknown).
	ChecksPerRequest float64 `json:"checks_per_request,omitempty"`
	LocalFraction    float64 `json:"local_fraction,omitempty"`
	// Skipped says why the scenario did not run.
	Skipped string `json:"skipped,omitempty"`
}

// errSkip marks a scenario that cannot run with this build or machine.
type errSkip struct{ why string }

func (e errSkip) Error() string { return e.why }

func skipf(format string, args ...any) error { return errSkip{fmt.Sprintf(format, args...)} }

// Scenarios lists the suite's scenarios in run order.
func (s *Suite) Scenarios() []Scenario {
	var out []Scenario
	for _, n := range s.opts.Rules {
		out = append(out, Scenario{Name: fmt.Sprintf("check-%d", n), Group: GroupCheck,
			run: func(ctx context.Context, s *Suite) (Measurement, error) { return s.runCheck(ctx, n) }})
	}
	quota := func(name, group, server, algo string, limit int64, rate float64) Scenario {
		return Scenario{Name: name, Group: group, run: func(ctx context.Context, s *Suite) (Measurement, error) {
			var m Measurement
			var err error
			if server == "ratelimit" {
				m, err = s.runRatelimit(ctx, limit, rate)
			} else {
				m, err = s.runRedisQuota(ctx, algo, limit, rate)
			}
			if rate > 0 {
				m.Detail += fmt.Sprintf(", offered %s/s", thousands(rate))
			}
			return m, err
		}}
	}
	rate := float64(s.opts.FixedRate)
	out = append(out,
		quota("quota-sidemix-fixed", GroupQuota, "sidemix", "FIXED_WINDOW", grantLimit, 0),
		quota("quota-ratelimit", GroupQuota, "ratelimit", "", grantLimit, 0),
		quota("quota-sidemix-rolling", GroupQuota, "sidemix", "ROLLING_WINDOW", grantLimit, 0),
		quota("rate-sidemix-fixed", GroupRate, "sidemix", "FIXED_WINDOW", grantLimit, rate),
		quota("rate-ratelimit", GroupRate, "ratelimit", "", grantLimit, rate),
		quota("denied-sidemix-fixed", GroupDenied, "sidemix", "FIXED_WINDOW", DeniedLimit, 0),
		quota("denied-ratelimit", GroupDenied, "ratelimit", "", DeniedLimit, 0),
		Scenario{Name: "prefetch-off", Group: GroupPrefetch,
			run: func(ctx context.Context, s *Suite) (Measurement, error) { return s.runPrefetch(ctx, 0) }},
		Scenario{Name: "prefetch-on", Group: GroupPrefetch,
			run: func(ctx context.Context, s *Suite) (Measurement, error) {
				return s.runPrefetch(ctx, s.opts.PrefetchMax)
			}},
	)
	return out
}

// Scenario returns the scenario of that name.
func (s *Suite) Scenario(name string) (Scenario, bool) {
	for _, sc := range s.Scenarios() {
		if sc.Name == name {
			return sc, true
		}
	}
	return Scenario{}, false
}

// Run runs one scenario on a clean Redis. A scenario this build or machine
// cannot run comes back with Skipped set and no error.
func (s *Suite) Run(ctx context.Context, sc Scenario) (Measurement, error) {
	if _, err := s.redis.Do("FLUSHALL"); err != nil {
		return Measurement{}, fmt.Errorf("redis FLUSHALL: %w", err)
	}
	s.current = sc.Name
	s.runs++
	m, err := sc.run(ctx, s)
	m.Scenario, m.Group = sc.Name, sc.Group
	var skip errSkip
	if errors.As(err, &skip) {
		m.Skipped = skip.why
		fmt.Fprintf(s.opts.Log, "%-22s skipped: %s\n", sc.Name, skip.why)
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("%s: %w", sc.Name, err)
	}
	fmt.Fprintf(s.opts.Log, "%-22s %s\n", sc.Name, m.Line())
	return m, nil
}

// Line is a one-line summary of m for progress output.
func (m Measurement) Line() string {
	s := fmt.Sprintf("%9.0f/s  p50 %6.2fms  p99 %6.2fms  server %.2f cores  %8.0f per CPU-s  loadgen %.2f cores",
		m.Rate, m.P50Ms, m.P99Ms, m.ServerCores, m.PerCPUSecond, m.LoadgenCores)
	if m.RedisCPUUsPerOp > 0 {
		s += fmt.Sprintf("  redis %.1fµs/op", m.RedisCPUUsPerOp)
	}
	if m.ServerPeakRSSMB > 0 {
		s += fmt.Sprintf("  peak RSS %.0fMiB", m.ServerPeakRSSMB)
	}
	if m.Group == GroupPrefetch {
		s += fmt.Sprintf("  checks/request %.3f", m.ChecksPerRequest)
		if m.LocalFraction >= 0 {
			s += fmt.Sprintf("  local %.1f%%", 100*m.LocalFraction)
		}
	}
	s += "  [" + m.Outcomes + "]"
	if m.Errors > 0 {
		s += fmt.Sprintf("  errors %d", m.Errors)
	}
	return s
}

// measure runs op (closed-loop, or open-loop at rate per second when rate
// is positive) and charges serverPid's CPU over the measured window.
// window, when set, is called at the window's start and end too.
func (s *Suite) measure(ctx context.Context, op load.Op, serverPid int, rate float64, window func(start bool)) (Measurement, error) {
	server := procstat.NewMeter(serverPid)
	self := procstat.NewMeter(os.Getpid())
	redis := procstat.NewMeter(s.redis.Pid())
	var prof *harness.Proc
	var peakRSS int64
	res, err := load.Run(ctx, load.Options{
		Workers:  s.opts.Workers,
		Warmup:   s.opts.Warmup,
		Duration: s.opts.Duration,
		Rate:     rate,
		OnStart: func() {
			server.Start()
			self.Start()
			redis.Start()
			if window != nil {
				window(true)
			}
			if s.opts.ProfileDir != "" {
				prof = s.startPerf(serverPid)
			}
		},
		OnStop: func() {
			if rss, err := procstat.PeakRSS(serverPid); err == nil {
				peakRSS = rss
			}
			server.Stop()
			self.Stop()
			redis.Stop()
			if window != nil {
				window(false)
			}
			if prof != nil {
				_ = prof.Interrupt(10 * time.Second)
			}
		},
	}, op)
	if err != nil {
		return Measurement{}, err
	}
	for _, m := range []*procstat.Meter{server, self, redis} {
		if m.Err() != nil {
			return Measurement{}, m.Err()
		}
	}
	if res.OK == 0 {
		return Measurement{}, fmt.Errorf("no request answered in %v (%d errors, first: %v)", res.Elapsed, res.Errors, res.FirstError)
	}
	// More than 1% failed requests mean the numbers describe a failing
	// server: report that instead.
	if res.Errors*100 > res.OK+res.Errors {
		return Measurement{}, fmt.Errorf("%d of %d requests failed, first: %v", res.Errors, res.OK+res.Errors, res.FirstError)
	}
	secs := res.Elapsed.Seconds()
	ms := func(q float64) float64 { return float64(res.Latency.Quantile(q)) / 1e6 }
	m := Measurement{
		Requests:     res.OK,
		Rate:         res.Rate(),
		P50Ms:        ms(0.50),
		P90Ms:        ms(0.90),
		P99Ms:        ms(0.99),
		ServerCores:  server.CPU.Seconds() / secs,
		LoadgenCores: self.CPU.Seconds() / secs,
		Outcomes:     res.OutcomeSummary(),
		Errors:       res.Errors,
	}
	if server.CPU > 0 {
		m.PerCPUSecond = float64(res.OK) / server.CPU.Seconds()
	}
	m.RedisCPUUsPerOp = redis.CPU.Seconds() * 1e6 / float64(res.OK)
	m.ServerPeakRSSMB = float64(peakRSS) / (1 << 20)
	return m, nil
}

// startPerf starts `perf record -g` on pid, or logs why it cannot.
func (s *Suite) startPerf(pid int) *harness.Proc {
	if err := os.MkdirAll(s.opts.ProfileDir, 0o755); err != nil {
		fmt.Fprintf(s.opts.Log, "profile: %v\n", err)
		return nil
	}
	out := filepath.Join(s.opts.ProfileDir, fmt.Sprintf("%s.%d.perf.data", s.current, s.runs))
	p, err := harness.Start(harness.Spec{Name: "perf record", Path: "perf",
		Args: []string{"record", "-F", "999", "-g", "-p", fmt.Sprint(pid), "-o", out}})
	if err != nil {
		fmt.Fprintf(s.opts.Log, "profile: %v\n", err)
		return nil
	}
	return p
}

// runCheck measures the mixer's Check path with a policy of n rules.
func (s *Suite) runCheck(ctx context.Context, n int) (Measurement, error) {
	dir := filepath.Join(s.opts.WorkDir, fmt.Sprintf("check-%d", n))
	if err := writeCheckPolicy(dir, n); err != nil {
		return Measurement{}, err
	}
	m, err := s.mixerRun(ctx, dir, 0)
	m.Server, m.Detail = "sidemix", fmt.Sprintf("%d rules", n)
	// Redis plays no part here.
	m.RedisCPUUsPerOp = 0
	return m, err
}

// runRedisQuota measures the Check path with one redisquota rule.
func (s *Suite) runRedisQuota(ctx context.Context, algorithm string, limit int64, rate float64) (Measurement, error) {
	dir, err := os.MkdirTemp(s.opts.WorkDir, "redisquota-")
	if err != nil {
		return Measurement{}, err
	}
	if err := writeRedisQuotaPolicy(dir, s.redis.Addr, algorithm, limit, time.Second, redisPoolSize); err != nil {
		return Measurement{}, err
	}
	if err := s.validate(dir); err != nil {
		return Measurement{}, err
	}
	m, err := s.mixerRun(ctx, dir, rate)
	m.Server, m.Detail = "sidemix", fmt.Sprintf("redisquota %s, %s/s", algorithm, thousands(float64(limit)))
	return m, err
}

// mixerRun starts a mixer on the policy in dir, checks it answers, and
// measures Checks against it.
func (s *Suite) mixerRun(ctx context.Context, dir string, rate float64) (Measurement, error) {
	mx, err := s.startMixer(dir)
	if err != nil {
		return Measurement{}, err
	}
	defer mx.Stop(10 * time.Second)
	conns, err := dial(mx.grpcAddr, s.opts.Conns)
	if err != nil {
		return Measurement{}, err
	}
	defer closeAll(conns)
	op := checkOp(conns, s.opts.Workers)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	outcome, err := op(pctx, 0)
	cancel()
	if err != nil || outcome != "OK" {
		return Measurement{}, fmt.Errorf("first Check: %q, %v\n%s", outcome, err, mx.Output())
	}
	m, err := s.measure(ctx, op, mx.Pid(), rate, nil)
	if err != nil {
		return m, fmt.Errorf("%w\nmixer output:\n%s", err, mx.Output())
	}
	return m, nil
}

// runRatelimit measures the envoyproxy/ratelimit peer with the same limit.
func (s *Suite) runRatelimit(ctx context.Context, limit int64, rate float64) (Measurement, error) {
	if s.opts.Ratelimit == "" {
		return Measurement{}, skipf("no ratelimit binary (build it with BuildRatelimit)")
	}
	rl, err := s.startRatelimit(limit, "second")
	if err != nil {
		return Measurement{}, err
	}
	defer rl.Stop(10 * time.Second)
	conns, err := dial(rl.grpcAddr, s.opts.Conns)
	if err != nil {
		return Measurement{}, err
	}
	defer closeAll(conns)
	m, err := s.measure(ctx, rlsOp(conns), rl.Pid(), rate, nil)
	m.Server, m.Detail = "ratelimit", fmt.Sprintf("fixed window, %s/s", thousands(float64(limit)))
	if s.opts.RatelimitLocalCache > 0 {
		m.Detail += fmt.Sprintf(", local cache %s B", thousands(float64(s.opts.RatelimitLocalCache)))
	}
	if err != nil {
		return m, fmt.Errorf("%w\nratelimit output:\n%s", err, rl.Output())
	}
	return m, nil
}
