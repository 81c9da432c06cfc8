// Command reportbench measures sidemix's report path on this machine
// (benchmarks/README.md, "Report path"): a `sidemix mixer` on one core
// running examples/default's telemetry plus kafka (to a kfakebroker
// process) and jaeger (to a real Jaeger v2) fed Report batches as
// proxy/mixerclient sends them, closed loop and at a fixed mesh rate; and
// the same OTLP spans sent to the mixer's OTLP ingest (tracespan → kafka)
// and to an OpenTelemetry Collector (otlp → batch → kafka) built here with
// the collector's builder into a cache folder (never committed).
//
//	make bench-report
//
// With -loadgen-cpus the command re-runs itself under taskset, so that the
// load generator has one core and the server under test (-server-cpus) the
// other.
package main

import (
	"context"
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
	"github.com/sidemix/sidemix/benchmarks/reportbench"
	"github.com/sidemix/sidemix/internal/testenv"
)

// pinnedEnv marks the re-run under taskset, so it happens once.
const pinnedEnv = "SIDEMIX_REPORTBENCH_PINNED"

// The collector's builder and components: the newest the module proxy here
// serves in full (issue 4, "Known facts").
const (
	builderPkg     = "go.opentelemetry.io/collector/cmd/builder"
	otelcolVersion = "v0.155.0"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "reportbench:", err)
		os.Exit(1)
	}
}

func run() error {
	sidemix := flag.String("sidemix", "bin/sidemix", "sidemix `binary` under test (make build)")
	kfake := flag.String("kfake", "bin/kfakebroker", "kfakebroker `binary` (go build ./internal/cmd/kfakebroker)")
	examples := flag.String("examples", "examples/default", "examples/default `folder`, whose telemetry the report runs load")
	jaeger := flag.String("jaeger", "auto", "Jaeger v2 `binary`; auto: internal/testenv.BuildJaeger's cached build (built if missing, ~6 min); empty: no jaeger handler")
	otelcol := flag.String("otelcol", "auto", "OpenTelemetry Collector `binary`; auto: build with the builder "+otelcolVersion+" into -cache (~4 min once); empty: skip the collector")
	cache := flag.String("cache", defaultCache(), "`folder` for the collector's build (not committed)")
	rounds := flag.Int("rounds", 3, "interleaved rounds; the report gives each scenario's median")
	warmup := flag.Duration("warmup", reportbench.DefaultWarmup, "unmeasured warm-up of each run")
	duration := flag.Duration("duration", reportbench.DefaultDuration, "measured window of each run")
	drain := flag.Duration("drain", reportbench.DefaultDrain, "after each window, wait at most this long for the server to deliver what it accepted in the window (its CPU meanwhile counts)")
	meshRate := flag.Int("rate", reportbench.DefaultMeshRate, "mesh requests per second of the fixed-rate run (two reporting proxies: twice as many records)")
	batch := flag.Int("batch", reportbench.DefaultBatch, "bags per Report (proxy/mixerclient's default)")
	spanBatch := flag.Int("span-batch", reportbench.DefaultSpanBatch, "spans per OTLP export")
	spanRate := flag.Int("span-rate", reportbench.DefaultSpanRate, "spans per second offered to both span servers in the equal-load runs")
	spanCallers := flag.Int("span-callers", reportbench.DefaultSpanCallers, "apps exporting spans to each span server (a connection and one export in flight each)")
	serverCPUs := flag.String("server-cpus", "0", "taskset `list` for the server under test; empty pins nothing")
	loadCPUs := flag.String("loadgen-cpus", "1", "taskset `list` for this load generator; empty pins nothing")
	only := flag.String("only", "", "run only the scenarios matching this `regexp` (report-max, report-fixed, report-default, report-default-1pct, spans-sidemix, spans-otelcol, ...-fixed, spans-sidemix-tracespan)")
	out := flag.String("out", "benchmarks/results", "`folder` for DATE/report.{md,json} and latest/report.{md,json}; empty writes nothing")
	flag.Parse()

	if *loadCPUs != "" && os.Getenv(pinnedEnv) == "" {
		return harness.Repin(*loadCPUs, pinnedEnv)
	}
	for _, f := range []struct{ flag, path string }{{"-sidemix", *sidemix}, {"-kfake", *kfake}, {"-examples", *examples}} {
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %v", f.flag, err)
		}
	}
	var filter *regexp.Regexp
	if *only != "" {
		var err error
		if filter, err = regexp.Compile(*only); err != nil {
			return fmt.Errorf("-only: %v", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if filter != nil && !filter.MatchString("spans-otelcol") && !filter.MatchString("spans-otelcol-fixed") {
		*otelcol = ""
	}
	if *otelcol == "auto" {
		bin, err := buildOtelcol(ctx, *cache)
		if err != nil {
			// Said precisely in the report; the sidemix side runs alone.
			fmt.Fprintf(os.Stderr, "collector build failed, comparing nothing: %v\n", err)
			bin = ""
		}
		*otelcol = bin
	}
	if *jaeger == "auto" {
		bin, err := testenv.BuildJaeger(ctx, os.Stderr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "jaeger build failed, running without the jaeger handler: %v\n", err)
			bin = ""
		}
		*jaeger = bin
	}

	work, err := os.MkdirTemp("", "reportbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	meta := reportbench.Meta{
		Date:        time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Command:     harness.Command("reportbench"),
		CPUs:        harness.CPUCount(),
		CPUModel:    harness.CPUModel(),
		Go:          runtime.Version(),
		Sidemix:     harness.FirstLine(exec.Command(*sidemix, "version").Output()),
		LoadBefore:  harness.LoadAvg(),
		Rounds:      *rounds,
		Warmup:      warmup.String(),
		Duration:    duration.String(),
		Drain:       drain.String(),
		MeshRate:    *meshRate,
		Batch:       *batch,
		SpanBatch:   *spanBatch,
		SpanRate:    *spanRate,
		SpanCallers: *spanCallers,
		ServerCPUs:  *serverCPUs,
		LoadCPUs:    *loadCPUs,
	}
	if *otelcol != "" {
		meta.Otelcol = "builder " + otelcolVersion + ", contrib kafkaexporter " + otelcolVersion
	}
	if *jaeger != "" {
		meta.Jaeger = "jaeger " + testenv.JaegerModuleVersion + " (cmd/jaeger, memory storage)"
	}

	suite, err := reportbench.New(reportbench.Options{
		Sidemix: *sidemix, Kfake: *kfake, Jaeger: *jaeger, Otelcol: *otelcol,
		Examples: *examples, WorkDir: work,
		Warmup: *warmup, Duration: *duration, Drain: *drain, MeshRate: *meshRate, Batch: *batch, SpanBatch: *spanBatch, SpanRate: *spanRate, SpanCallers: *spanCallers,
		ServerCPUs: *serverCPUs, Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	defer suite.Close()

	var all [][]reportbench.Measurement
	var during []string
	for r := range *rounds {
		fmt.Fprintf(os.Stderr, "-- round %d of %d (load %s)\n", r+1, *rounds, harness.LoadAvg())
		var round []reportbench.Measurement
		for _, name := range reportbench.Scenarios {
			if filter != nil && !filter.MatchString(name) {
				continue
			}
			m, err := suite.Run(ctx, name)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%s: %w", name, err)
			}
			round = append(round, m)
		}
		during = append(during, harness.LoadAvg())
		all = append(all, round)
	}
	meta.LoadDuring = strings.Join(during, "; ")
	meta.LoadAfter = harness.LoadAvg()

	rep := reportbench.NewReport(meta, all)
	md := rep.Markdown()
	fmt.Print(md)
	if *out != "" {
		for _, dir := range []string{filepath.Join(*out, time.Now().Format("2006-01-02")), filepath.Join(*out, "latest")} {
			if err := harness.WriteReport(dir, "report", rep, md); err != nil {
				return err
			}
		}
	}
	return nil
}

func defaultCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "sidemix", "otelcol-"+otelcolVersion)
}

// buildOtelcol returns the collector built from
// benchmarks/reportbench/otelcol-builder.yaml in cache, building it (and
// the builder) first when missing.
func buildOtelcol(ctx context.Context, cache string) (string, error) {
	bin := filepath.Join(cache, "src", "otelcol-sidemix-bench")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	manifest, err := filepath.Abs("benchmarks/reportbench/otelcol-builder.yaml")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "building the OpenTelemetry Collector %s into %s (~4 min, once) ...\n", otelcolVersion, cache)
	builder, err := harness.GoInstall(ctx, cache, builderPkg, otelcolVersion)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, builder, "--config", manifest, "--output-path", filepath.Join(cache, "src"))
	cmd.Dir = cache
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s --config %s: %v\n%s", builder, manifest, err, b)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", errors.New("the builder succeeded but left no " + bin)
	}
	return bin, nil
}
