// Command policybench measures sidemix's policy path on this machine: the
// mixer's Check throughput and latency on one core with 1, 10 and 100 rules,
// redisquota allocations against a real Redis side by side with
// envoyproxy/ratelimit (built from its Go module into a temporary directory),
// and the proxy's quota-prefetch hit ratio. It runs every scenario in
// interleaved rounds and writes the medians as Markdown and JSON.
//
//	make build && go build -o bin/policybench ./benchmarks/cmd/policybench
//	bin/policybench -sidemix bin/sidemix -out benchmarks/results
//
// `make bench-policy` does both. With -loadgen-cpus the command re-runs
// itself under taskset, so that the load generator and Redis share one core
// and the server under test (pinned by -server-cpus) has the other.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
	"github.com/sidemix/sidemix/benchmarks/policybench"
)

// pinnedEnv marks the re-run under taskset, so it happens once.
const pinnedEnv = "SIDEMIX_POLICYBENCH_PINNED"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "policybench:", err)
		os.Exit(1)
	}
}

func run() error {
	sidemix := flag.String("sidemix", "bin/sidemix", "sidemix `binary` under test (make build)")
	rlBin := flag.String("ratelimit", "", "prebuilt envoyproxy/ratelimit `binary`; empty builds it with go install into a temporary directory")
	rlVersion := flag.String("ratelimit-version", "latest", "module `version` of envoyproxy/ratelimit to build")
	noRL := flag.Bool("no-ratelimit", false, "skip the ratelimit peer")
	rlCache := flag.Int("ratelimit-local-cache", 1<<20, "the ratelimit peer's LOCAL_CACHE_SIZE_IN_BYTES (its over-limit cache, as redisquota's); 0 turns it off")
	rounds := flag.Int("rounds", 3, "interleaved rounds; the report gives each scenario's median")
	warmup := flag.Duration("warmup", policybench.DefaultWarmup, "unmeasured warm-up of each run")
	duration := flag.Duration("duration", policybench.DefaultDuration, "measured window of each run")
	workers := flag.Int("workers", policybench.DefaultWorkers, "concurrent closed-loop callers")
	conns := flag.Int("conns", policybench.DefaultConns, "client connections the callers share")
	serverCPUs := flag.String("server-cpus", "0", "taskset `list` for the server under test; empty pins nothing")
	loadCPUs := flag.String("loadgen-cpus", "1", "taskset `list` for this load generator and Redis; empty pins nothing")
	fixedRate := flag.Int("rate", policybench.DefaultFixedRate, "offered load per second of the open-loop runs comparing both quota servers at equal load")
	prefetchMax := flag.Int("quota-prefetch-max", policybench.DefaultPrefetchMax, "the proxy's --quota-prefetch-max in the prefetch run")
	only := flag.String("only", "", "run only the scenarios matching this `regexp` (check-1, quota-ratelimit, prefetch-on, ...)")
	out := flag.String("out", "benchmarks/results", "`folder` for DATE/policy.{md,json} and latest/policy.{md,json}; empty writes nothing")
	profile := flag.String("profile", "", "record each run's server with perf record -g into this `folder` (slows the runs: for finding hot spots, not for the table)")
	render := flag.String("render", "", "render the report again from a saved policy.json `file` instead of running, into -out (under the run's date) and -readme")
	readme := flag.String("readme", "", "README `file` whose generated policy-path block is replaced by the new tables")
	flag.Parse()

	if *render != "" {
		return renderSaved(*render, *readme, *out)
	}
	if *loadCPUs != "" && os.Getenv(pinnedEnv) == "" {
		return harness.Repin(*loadCPUs, pinnedEnv)
	}
	var filter *regexp.Regexp
	if *only != "" {
		var err error
		if filter, err = regexp.Compile(*only); err != nil {
			return fmt.Errorf("-only: %v", err)
		}
	}
	if _, err := os.Stat(*sidemix); err != nil {
		return fmt.Errorf("-sidemix: %v (run make build first)", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ratelimit := *rlBin
	if !*noRL && ratelimit == "" && (filter == nil || filter.MatchString("ratelimit")) {
		dir, err := os.MkdirTemp("", "ratelimit-build-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "building %s@%s (not kept) ...\n", policybench.RatelimitPackage, *rlVersion)
		if ratelimit, err = policybench.BuildRatelimit(ctx, dir, *rlVersion); err != nil {
			return err
		}
	}
	if *noRL {
		ratelimit = ""
	}

	meta := policybench.Meta{
		Date:       time.Now().Format("2006-01-02 15:04 MST"),
		Command:    harness.Command("policybench"),
		CPUs:       harness.CPUCount(),
		CPUModel:   harness.CPUModel(),
		Go:         runtime.Version(),
		Sidemix:    harness.FirstLine(exec.Command(*sidemix, "version").Output()),
		Redis:      harness.FirstLine(exec.Command("redis-server", "--version").Output()),
		LoadBefore: harness.LoadAvg(),
		Rounds:     *rounds,
		Workers:    *workers,
		Conns:      *conns,
		Warmup:     warmup.String(),
		Duration:   duration.String(),
		ServerCPUs: *serverCPUs,
		LoadCPUs:   *loadCPUs,
	}
	if ratelimit != "" {
		meta.Ratelimit = harness.ModuleVersion(ratelimit)
	}

	suite, err := policybench.New(policybench.Options{
		Sidemix:             *sidemix,
		Ratelimit:           ratelimit,
		ServerCPUs:          *serverCPUs,
		RedisCPUs:           *loadCPUs,
		Workers:             *workers,
		Conns:               *conns,
		Warmup:              *warmup,
		Duration:            *duration,
		FixedRate:           *fixedRate,
		PrefetchMax:         *prefetchMax,
		ProfileDir:          *profile,
		Log:                 os.Stderr,
		RatelimitLocalCache: *rlCache,
	})
	if err != nil {
		return err
	}
	defer suite.Close()

	var all [][]policybench.Measurement
	for r := range *rounds {
		fmt.Fprintf(os.Stderr, "-- round %d of %d (load %s)\n", r+1, *rounds, harness.LoadAvg())
		var round []policybench.Measurement
		for _, sc := range suite.Scenarios() {
			if filter != nil && !filter.MatchString(sc.Name) {
				continue
			}
			m, err := suite.Run(ctx, sc)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
			round = append(round, m)
		}
		all = append(all, round)
	}
	meta.LoadAfter = harness.LoadAvg()

	rep := policybench.NewReport(meta, all)
	md := rep.Markdown()
	fmt.Print(md)
	if *out != "" {
		if err := writeReports(*out, time.Now().Format("2006-01-02"), rep, md); err != nil {
			return err
		}
	}
	if *readme != "" {
		if err := replaceBlock(*readme, md); err != nil {
			return err
		}
	}
	return nil
}

// renderSaved prints the tables of a saved report, recomputed from its
// rounds, and writes them as a run would: into out (the run's date folder
// and latest) and readme, when set.
func renderSaved(path, readme, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var saved policybench.Report
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	rep := policybench.NewReport(saved.Meta, saved.Rounds)
	md := rep.Markdown()
	fmt.Print(md)
	if out != "" {
		date, _, _ := strings.Cut(saved.Meta.Date, " ")
		if date == "" {
			return fmt.Errorf("%s: no date in meta", path)
		}
		if err := writeReports(out, date, rep, md); err != nil {
			return err
		}
	}
	if readme != "" {
		return replaceBlock(readme, md)
	}
	return nil
}

// writeReports writes the report into out/date and out/latest.
func writeReports(out, date string, rep *policybench.Report, md string) error {
	for _, dir := range []string{filepath.Join(out, date), filepath.Join(out, "latest")} {
		if err := harness.WriteReport(dir, "policy", rep, md); err != nil {
			return err
		}
	}
	return nil
}

// The generated block of a README lies between these lines.
const (
	blockBegin = "<!-- policybench:begin (generated by benchmarks/cmd/policybench -readme) -->"
	blockEnd   = "<!-- policybench:end -->"
)

// replaceBlock puts md between the block markers of the file at path.
func replaceBlock(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, blockBegin), strings.Index(s, blockEnd)
	if i < 0 || j < i {
		return errors.New(path + ": no policybench block markers to replace")
	}
	s = s[:i+len(blockBegin)] + "\n" + md + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
