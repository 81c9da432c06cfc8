// Command meshbench runs sidemix's whole benchmark suite on this machine and
// writes its tables, plots and summary (package benchmarks/meshbench):
// Istio's fortio latency set-up over direct, one and two sidemix sidecars,
// the outbound sidecar plain and routed (VirtualService + DestinationRule),
// nginx and haproxy in interleaved rounds (-paths picks some); the throughput ceiling of one
// proxy pinned to one core; latency and CPU against the rate; and the
// mixer's Check and Report rows through benchmarks/policybench and
// benchmarks/reportbench.
//
//	make bench          # the whole suite, ~10 minutes on 2 cores
//	make bench-quick    # one short round of everything, ~2 minutes
//
// Results go to -out/DATE/ and -out/latest/ (mesh.md, mesh.json,
// summary.json, PNGs); -readme replaces the generated block of a README.
// With -loadgen-cpus the command re-runs itself under taskset so that
// fortio stays off the ceiling runs' proxy core; the latency set-up's
// processes get every core (-all-cpus).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
	"github.com/sidemix/sidemix/benchmarks/meshbench"
	"github.com/sidemix/sidemix/internal/testenv"
)

// pinnedEnv marks the re-run under taskset, so it happens once.
const pinnedEnv = "SIDEMIX_MESHBENCH_PINNED"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		os.Exit(1)
	}
}

func run() error {
	sidemix := flag.String("sidemix", "bin/sidemix", "sidemix `binary` under test (make build)")
	echo := flag.String("echo", "bin/fortioecho", "fortio echo server `binary` (go build ./benchmarks/cmd/fortioecho)")
	kfake := flag.String("kfake", "bin/kfakebroker", "Kafka-protocol broker `binary` for the Report rows (go build ./internal/cmd/kfakebroker)")
	nginx := flag.String("nginx", meshbench.LookPeer("nginx"), "nginx `binary`; empty skips the nginx path")
	haproxy := flag.String("haproxy", meshbench.LookPeer("haproxy"), "haproxy `binary`; empty skips the haproxy path")
	jaeger := flag.String("jaeger", "auto", "Jaeger v2 `binary` receiving the sidecars' spans; auto: internal/testenv's cached build (built if missing, ~6 min); empty: no tracing handler")
	rounds := flag.Int("rounds", 4, "interleaved rounds of the latency set-up; the tables give medians")
	warmup := flag.Duration("warmup", meshbench.DefaultWarmup, "unmeasured warm-up of each run")
	duration := flag.Duration("duration", meshbench.DefaultDuration, "measured window of each run")
	qps := flag.Int("qps", meshbench.DefaultQPS, "requests/s of the latency set-up")
	conns := flag.Int("conns", meshbench.DefaultConns, "fortio connections")
	payload := flag.Int("payload", meshbench.DefaultPayload, "request body bytes")
	rates := flag.String("rates", "500,1000,2000,4000", "comma-separated `rates` of the scaling runs")
	mixerWarmup := flag.Duration("mixer-warmup", time.Second, "warm-up of each mixer run")
	mixerDuration := flag.Duration("mixer-duration", 4*time.Second, "measured window of each mixer run")
	policy := flag.String("policy", "", "policy `file` loaded into the mixer beside examples/default instead of the suite's (a deny rule that does not match, a memquota bound to the app's service echo)")
	variant := flag.String("variant", "", "extra `flags` of a sixth path, sidemix_1_variant: one sidecar with these flags added (space-separated, e.g. --quota-prefetch-max=100), in the same rounds")
	paths := flag.String("paths", "", "comma-separated latency `paths` to run (e.g. direct,sidemix_out,sidemix_out_routed); empty: all")
	parts := flag.String("parts", "latency,scaling,ceiling,mixer", "comma-separated `parts` to run")
	proxyCPU := flag.String("proxy-cpu", "0", "taskset `list` of the ceiling runs' proxy and of the mixer runs' mixer")
	loadCPUs := flag.String("loadgen-cpus", "1", "taskset `list` for this process (fortio) and, in the ceiling runs, the app and mixer; empty pins nothing")
	out := flag.String("out", "benchmarks/results", "`folder` for DATE/ and latest/ (mesh.md, mesh.json, summary.json, PNGs); empty writes nothing")
	readme := flag.String("readme", "", "README `file` whose generated meshbench block is replaced by the new tables")
	flag.Parse()

	if *loadCPUs != "" && os.Getenv(pinnedEnv) == "" {
		return harness.Repin(*loadCPUs, pinnedEnv)
	}
	want := map[string]bool{}
	for p := range strings.SplitSeq(*parts, ",") {
		switch p = strings.TrimSpace(p); p {
		case "latency", "scaling", "ceiling", "mixer":
			want[p] = true
		default:
			return fmt.Errorf("-parts: unknown part %q (latency, scaling, ceiling, mixer)", p)
		}
	}
	var pathList []string
	for p := range strings.SplitSeq(*paths, ",") {
		if p = strings.TrimSpace(p); p != "" {
			pathList = append(pathList, p)
		}
	}
	var rateList []int
	for f := range strings.SplitSeq(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("-rates: %q is not a positive rate", f)
		}
		rateList = append(rateList, n)
	}
	for flagName, path := range map[string]string{"-sidemix": *sidemix, "-echo": *echo} {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s: %v (make bench builds it)", flagName, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	jaegerVersion := ""
	if *jaeger == "auto" {
		jaegerVersion = testenv.JaegerModuleVersion + " (cmd/jaeger, memory storage)"
		bin, err := testenv.BuildJaeger(ctx, os.Stderr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "jaeger build failed, running without the tracing handler: %v\n", err)
			bin = ""
		}
		*jaeger = bin
	}
	work, err := os.MkdirTemp("", "meshbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	examples, err := filepath.Abs("examples/default")
	if err != nil {
		return err
	}
	allCPUs := ""
	if *loadCPUs != "" {
		allCPUs = fmt.Sprintf("0-%d", harness.CPUCount()-1)
	}
	workers := "every proxy may use every core: sidemix GOMAXPROCS unset (one per core), nginx worker_processes and haproxy nbthread = cores"
	suite, err := meshbench.New(meshbench.Options{
		Sidemix: *sidemix, Echo: *echo, Nginx: *nginx, HAProxy: *haproxy, Jaeger: *jaeger,
		Examples: examples, Policy: *policy, Variant: strings.Fields(*variant), Paths: pathList, WorkDir: work,
		QPS: *qps, Conns: *conns, Payload: *payload, Warmup: *warmup, Duration: *duration,
		AllCPUs: allCPUs, ProxyCPU: *proxyCPU, OtherCPUs: *loadCPUs,
		Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	defer suite.Close()
	versions := suite.Versions()
	versions["fortio"] = moduleVersion("fortio.org/fortio")
	versions["go"] = runtime.Version()
	if *jaeger != "" && jaegerVersion != "" {
		versions["jaeger"] = jaegerVersion
	}
	meta := meshbench.Meta{
		Date:       time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Command:    harness.Command("meshbench"),
		CPUs:       harness.CPUCount(),
		CPUModel:   harness.CPUModel(),
		Go:         runtime.Version(),
		Versions:   versions,
		Tracing:    suite.Tracing,
		Variant:    *variant,
		Policy:     or(*policy, "the suite's: a deny rule that does not match, a memquota far above the load bound to the app"),
		Rounds:     *rounds,
		QPS:        *qps,
		Conns:      *conns,
		Payload:    *payload,
		Warmup:     warmup.String(),
		Duration:   duration.String(),
		Workers:    workers,
		LoadBefore: harness.LoadAvg(),
	}
	var all [][]meshbench.Run
	var rss map[string]float64
	mixerRSS := 0.0
	if want["latency"] {
		for r := range *rounds {
			fmt.Fprintf(os.Stderr, "-- latency round %d of %d (load %s)\n", r+1, *rounds, harness.LoadAvg())
			runs, err := suite.Latency(ctx, r)
			if err != nil {
				return err
			}
			all = append(all, runs)
		}
		if rss, err = suite.PeakRSS(); err != nil {
			return err
		}
		mixerRSS = suite.MixerPeakRSS()
		fmt.Fprintf(os.Stderr, "peak RSS MB: %v; mixer %.1f\n", rss, mixerRSS)
	}
	var scaling, ceiling []meshbench.Run
	if want["scaling"] {
		fmt.Fprintln(os.Stderr, "-- scaling")
		if scaling, err = suite.Scaling(ctx, rateList); err != nil {
			return err
		}
	}
	if want["ceiling"] {
		fmt.Fprintln(os.Stderr, "-- ceiling")
		for _, name := range meshbench.CeilingPaths {
			if !suite.Has(name) {
				continue
			}
			r, err := suite.Ceiling(ctx, name)
			if err != nil {
				return err
			}
			ceiling = append(ceiling, r)
		}
	}
	suite.Close()
	var mixer *meshbench.MixerRows
	if want["mixer"] {
		fmt.Fprintln(os.Stderr, "-- mixer")
		if mixer, err = meshbench.RunMixer(ctx, meshbench.MixerOptions{
			Sidemix: *sidemix, Kfake: *kfake, Examples: examples, WorkDir: work,
			ServerCPUs: *proxyCPU, LoadCPUs: *loadCPUs,
			Warmup: *mixerWarmup, Duration: *mixerDuration, Log: os.Stderr,
		}); err != nil {
			return err
		}
	}
	meta.LoadAfter = harness.LoadAvg()
	rep := meshbench.NewReport(meta, all, rss, scaling, ceiling, mixer)
	rep.MixerRSSMB = mixerRSS
	fmt.Print(rep.Markdown(""))
	if *out != "" {
		date := time.Now().UTC().Format("2006-01-02")
		for _, dir := range []string{filepath.Join(*out, date), filepath.Join(*out, "latest")} {
			if err := write(dir, rep); err != nil {
				return err
			}
		}
	}
	if *readme != "" {
		images := ""
		if *out != "" {
			rel, err := filepath.Rel(filepath.Dir(*readme), filepath.Join(*out, "latest"))
			if err != nil {
				return err
			}
			images = filepath.ToSlash(rel) + "/"
		}
		return replaceBlock(*readme, rep.Markdown(images))
	}
	return nil
}

// write puts the report, its summary and its plots into dir.
func write(dir string, rep *meshbench.Report) error {
	if err := harness.WriteReport(dir, "mesh", rep, rep.Markdown("")); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep.Summary(), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return rep.WritePlots(dir)
}

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// moduleVersion is the version of a module this command was built with.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}

// The generated block of a README lies between these lines.
const (
	blockBegin = "<!-- meshbench:begin (generated by benchmarks/cmd/meshbench -readme) -->"
	blockEnd   = "<!-- meshbench:end -->"
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
		return errors.New(path + ": no meshbench block markers to replace")
	}
	s = s[:i+len(blockBegin)] + "\n" + md + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
