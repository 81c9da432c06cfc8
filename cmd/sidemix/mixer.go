package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/sidemix/sidemix/mixer"
	"github.com/sidemix/sidemix/policy"
)

const mixerSynopsis = `  sidemix mixer --config PATH [--config PATH...] [flags]

Runs the mixer: loads the policy files and folders given by --config (and
watches them: a valid change is applied without restart, an invalid one is
logged and the last good config keeps serving), answers Check and Report
on --grpc, and serves /healthz, /readyz, /metrics and /debug/config on --admin.
With --otlp-grpc or --otlp-http (e.g. 127.0.0.1:4317 and 127.0.0.1:4318, the
OTLP ports) it also receives spans and logs from apps' OpenTelemetry SDKs and
runs each span and log record through the report rules.
SIGINT or SIGTERM drains report queues and closes adapters.`

func runMixer(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("mixer", mixerSynopsis)
	var configs listFlag
	fs.Var(&configs, "config", "policy `path` (file or folder) to load and watch; repeatable or a comma list")
	grpcAddr := fs.String("grpc", "127.0.0.1:9091", "gRPC listen `address` of the mixer API")
	adminAddr := fs.String("admin", "127.0.0.1:9093", "admin HTTP listen `address` (health, metrics, /debug/config)")
	checkTimeout := fs.Duration("check-timeout", time.Second, "deadline for all check and quota handlers of one Check")
	validDuration := fs.Duration("default-valid-duration", 10*time.Second, "how long proxies may cache a check result that does not say")
	validUseCount := fs.Int("default-valid-use-count", 10000, "how many times proxies may reuse a check result that does not say")
	queueSize := fs.Int("report-queue-size", 10000, "per-handler report queue size, in instances; more are dropped and counted")
	batchSize := fs.Int("report-batch-size", 1000, "instances per call of a report handler")
	otlpGRPC := fs.String("otlp-grpc", "", "OTLP/gRPC listen `address` for apps' spans and logs, e.g. 127.0.0.1:4317; empty: off")
	otlpHTTP := fs.String("otlp-http", "", "OTLP/HTTP listen `address` (POST /v1/traces, /v1/logs), e.g. 127.0.0.1:4318; empty: off")
	shutdownTimeout := fs.Duration("shutdown-timeout", 15*time.Second, "how long SIGTERM may take to drain queues and close adapters")
	var gc gcSettings
	fs.IntVar(&gc.percent, "gc-percent", defaultGCPercent, "garbage collector target `percent` (as GOGC; -1 off, then set --memory-limit); when not given, GOGC from the environment if set, else this default")
	fs.StringVar(&gc.limit, "memory-limit", "", "soft memory `limit` of the Go runtime (as GOMEMLIMIT, e.g. 512MiB); empty: GOMEMLIMIT from the environment if set, else none")
	sysmon := fs.String("sysmon", sysmonAuto, "the Go runtime's sysmon thread while the mixer is idle: `mode` awake (the mixer restarts itself once with GODEBUG=schedtrace set: sysmon polls at most every 10 ms, saving the burst of 20 µs polls each time work resumes; for Checks), deep (the runtime's default deep sleep; for a mixer that mostly idles between report batches), or auto: awake when the config at start answers Checks or quotas, else deep")
	sysmonNice := fs.String("sysmon-nice", sysmonAuto, "`nice` value of the Go runtime's sysmon thread (Linux), 0 to 19: at 19 its wake-ups wait for the mixer's threads to pause instead of preempting them; auto: 19 when sysmon sleeps deeply (a mixer for reports only), 0 (the process's) when it stays awake for Checks")
	lf := addLogFlags(fs)
	if err := fs.parse(e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q (policy paths go in --config)", fs.Args())
	}
	registry, err := newRegistry()
	if err != nil {
		return err
	}
	if err := keepSysmonAwake(e, *sysmon, configs, registry); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { gc.percentSet = gc.percentSet || f.Name == "gc-percent" })
	gcPercent, memLimit, err := gc.apply(os.Getenv)
	if err != nil {
		return err
	}
	// The mixer serves no heap profile, and sampling its allocations for
	// one costs ~1% of its CPU on the report path.
	runtime.MemProfileRate = 0
	if len(configs) == 0 {
		return usageErrorf("--config is required")
	}
	logger, err := lf.logger(e.stderr)
	if err != nil {
		return err
	}
	nice, err := sysmonNiceFor(*sysmonNice, sysmonDeepSleep())
	if err != nil {
		return err
	}
	logger.Info("go runtime", "gcPercent", gcPercent, "memoryLimitBytes", memLimit, "sysmon", *sysmon, "sysmonDeepSleep", sysmonDeepSleep(), "sysmonNice", nice)
	if nice != 0 {
		if err := niceSysmon(nice); err != nil {
			logger.Warn("sysmon keeps the process's priority", "err", err)
		}
	}
	srv, err := mixer.New(mixer.Config{
		GRPCAddr:             *grpcAddr,
		AdminAddr:            *adminAddr,
		OTLPGRPCAddr:         *otlpGRPC,
		OTLPHTTPAddr:         *otlpHTTP,
		ConfigPaths:          configs,
		Adapters:             registry,
		CheckTimeout:         *checkTimeout,
		DefaultValidDuration: *validDuration,
		DefaultValidUseCount: int32(*validUseCount),
		ReportQueueSize:      *queueSize,
		ReportBatchSize:      *batchSize,
		Logger:               logger,
	})
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			printIssues(e, le)
			fmt.Fprintf(e.stderr, "sidemix mixer: the config in %v is invalid (%d issues)\n", []string(configs), len(le.Issues))
			return exitCode(1)
		}
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	return waitAndShutdown(ctx, logger, *shutdownTimeout, "mixer", srv.Shutdown)
}

// waitAndShutdown blocks until ctx ends or SIGINT/SIGTERM arrives, then
// calls shutdown with a deadline. A second signal kills the process.
func waitAndShutdown(ctx context.Context, logger *slog.Logger, timeout time.Duration, what string, shutdown func(context.Context) error) error {
	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	<-sigCtx.Done()
	stop() // from here on a second signal ends the process at once
	logger.Info("shutting down", "component", what, "timeout", timeout)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped", "component", what)
	return nil
}
