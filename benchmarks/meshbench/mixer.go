package meshbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sidemix/sidemix/benchmarks/policybench"
	"github.com/sidemix/sidemix/benchmarks/reportbench"
)

// MixerOptions configure RunMixer.
type MixerOptions struct {
	// Sidemix is required; Kfake (the broker binary) or BrokerAddr is
	// required for the Report rows; Examples is examples/default.
	Sidemix, Kfake, BrokerAddr, Examples string
	// WorkDir holds the two libraries' configs.
	WorkDir string
	// ServerCPUs pins the mixer ("0"), LoadCPUs Redis (the load
	// generator is this process).
	ServerCPUs, LoadCPUs string
	// Rules are the Check policies' sizes (1, 10, 100).
	Rules []int
	// Warmup and Duration shape each run.
	Warmup, Duration time.Duration
	// MeshRate is the Report run's mesh requests/s (two reporting proxies).
	MeshRate int
	// Batch is the records per Report (reportbench's default: the proxy's
	// 1,000); short runs at a low MeshRate need smaller batches to send any.
	Batch int
	Log   io.Writer
}

// RunMixer measures the mixer rows with benchmarks/policybench (Check with
// each rule count, no client cache: one Check per request) and
// benchmarks/reportbench (Report closed loop with examples/default's
// telemetry, and at MeshRate), one run each.
func RunMixer(ctx context.Context, o MixerOptions) (*MixerRows, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if len(o.Rules) == 0 {
		o.Rules = []int{1, 10, 100}
	}
	if o.MeshRate <= 0 {
		o.MeshRate = reportbench.DefaultMeshRate
	}
	pin := "unpinned"
	if o.ServerCPUs != "" {
		pin = fmt.Sprintf("mixer pinned to CPU %s with GOMAXPROCS=%d", o.ServerCPUs, cpuCount(o.ServerCPUs))
	}
	rows := &MixerRows{MeshRate: o.MeshRate, Settings: fmt.Sprintf(
		"benchmarks/policybench and benchmarks/reportbench, one run each of %s after %s warm-up, %s", o.Duration, o.Warmup, pin)}

	pdir := filepath.Join(o.WorkDir, "policybench")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return nil, err
	}
	ps, err := policybench.New(policybench.Options{Sidemix: o.Sidemix, WorkDir: pdir, ServerCPUs: o.ServerCPUs, RedisCPUs: o.LoadCPUs,
		Rules: o.Rules, Warmup: o.Warmup, Duration: o.Duration, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer ps.Close()
	for _, n := range o.Rules {
		name := fmt.Sprintf("check-%d", n)
		sc, ok := ps.Scenario(name)
		if !ok {
			return nil, fmt.Errorf("policybench has no scenario %s", name)
		}
		m, err := ps.Run(ctx, sc)
		if err != nil {
			return nil, err
		}
		if m.Skipped != "" {
			return nil, fmt.Errorf("%s skipped: %s", name, m.Skipped)
		}
		rows.Check = append(rows.Check, CheckRow{Rules: n, Rate: m.Rate, P99Ms: m.P99Ms, PerCPUSecond: m.PerCPUSecond})
	}

	rdir := filepath.Join(o.WorkDir, "reportbench")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return nil, err
	}
	rs, err := reportbench.New(reportbench.Options{Sidemix: o.Sidemix, Kfake: o.Kfake, BrokerAddr: o.BrokerAddr, Examples: o.Examples,
		WorkDir: rdir, Warmup: o.Warmup, Duration: o.Duration, MeshRate: o.MeshRate, Batch: o.Batch, ServerCPUs: o.ServerCPUs, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	mx, err := rs.Run(ctx, "report-max")
	if err != nil {
		return nil, err
	}
	fx, err := rs.Run(ctx, "report-fixed")
	if err != nil {
		return nil, err
	}
	if mx.Skipped != "" || fx.Skipped != "" {
		return nil, fmt.Errorf("report runs skipped: %s %s", mx.Skipped, fx.Skipped)
	}
	rows.ReportPerCore = mx.PerCPUSecond
	rows.ReportFixedVCPU = fx.VCPU
	return rows, nil
}
