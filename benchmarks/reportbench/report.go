package reportbench

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
	"github.com/sidemix/sidemix/benchmarks/internal/procstat"
)

// Meta describes the run a report comes from.
type Meta struct {
	Date       string `json:"date"`
	Command    string `json:"command"`
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	Go         string `json:"go"`
	Sidemix    string `json:"sidemix"`
	Otelcol    string `json:"otelcol"`
	Jaeger     string `json:"jaeger"`
	LoadBefore string `json:"load_before"`
	LoadDuring string `json:"load_during"`
	LoadAfter  string `json:"load_after"`
	Rounds     int    `json:"rounds"`
	Warmup     string `json:"warmup"`
	Duration   string `json:"duration"`
	Drain      string `json:"drain"`
	MeshRate   int    `json:"mesh_rate"`
	Batch      int    `json:"batch"`
	SpanBatch  int    `json:"span_batch"`
	SpanRate   int    `json:"span_rate"`
	// SpanCallers is 0 in reports from before the option (2 callers).
	SpanCallers int    `json:"span_callers,omitempty"`
	ServerCPUs  string `json:"server_cpus"`
	LoadCPUs    string `json:"loadgen_cpus"`
}

// Report is every round and each scenario's medians.
type Report struct {
	Meta    Meta            `json:"meta"`
	Rounds  [][]Measurement `json:"rounds"`
	Medians []Measurement   `json:"medians"`
}

// NewReport computes the medians of rounds, scenario by scenario, each
// figure on its own; skipped runs are left out.
func NewReport(meta Meta, rounds [][]Measurement) *Report {
	order, by, skipped := harness.ByScenario(rounds,
		func(m Measurement) string { return m.Scenario },
		func(m Measurement) bool { return m.Skipped != "" })
	r := &Report{Meta: meta, Rounds: rounds}
	for _, name := range order {
		ms := by[name]
		if len(ms) == 0 {
			r.Medians = append(r.Medians, skipped[name])
			continue
		}
		f := func(get func(Measurement) float64) float64 {
			v := make([]float64, len(ms))
			for i, m := range ms {
				v[i] = get(m)
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		med := Measurement{Scenario: name}
		med.Items = int64(f(func(m Measurement) float64 { return float64(m.Items) }))
		med.Rate = f(func(m Measurement) float64 { return m.Rate })
		med.CPU = f(func(m Measurement) float64 { return m.CPU })
		med.PerCPUSecond = f(func(m Measurement) float64 { return m.PerCPUSecond })
		med.VCPU = f(func(m Measurement) float64 { return m.VCPU })
		med.Drain = f(func(m Measurement) float64 { return m.Drain })
		med.Shortfall = int64(f(func(m Measurement) float64 { return float64(m.Shortfall) }))
		med.Delivered = int64(f(func(m Measurement) float64 { return float64(m.Delivered) }))
		med.Dropped = int64(f(func(m Measurement) float64 { return float64(m.Dropped) }))
		med.JaegerSent = int64(f(func(m Measurement) float64 { return float64(m.JaegerSent) }))
		med.Errors = int64(f(func(m Measurement) float64 { return float64(m.Errors) }))
		med.CPUMeter = string(procstat.Clock)
		for _, m := range ms {
			if m.FirstError != "" {
				med.FirstError = m.FirstError
			}
			if m.CPUMeter != string(procstat.Clock) {
				med.CPUMeter = m.CPUMeter // a fallback in any round
			}
		}
		r.Medians = append(r.Medians, med)
	}
	return r
}

func (r *Report) median(name string) (Measurement, bool) {
	for _, m := range r.Medians {
		if m.Scenario == name && m.Skipped == "" {
			return m, true
		}
	}
	return Measurement{}, false
}

// Markdown renders the medians and where each target stands.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Meta
	fmt.Fprintf(&b, "Run of %s: `%s`; %d CPUs (%s), %s; %s.\n", m.Date, m.Command, m.CPUs, m.CPUModel, m.Go, m.Sidemix)
	fmt.Fprintf(&b, "Servers pinned to CPU %q with GOMAXPROCS=1, load generator on %q; warm-up %s, window %s; medians of %d rounds. "+
		"Load average before / during / after: %s / %s / %s. Collector: %s. Jaeger: %s.\n\n",
		m.ServerCPUs, m.LoadCPUs, m.Warmup, m.Duration, m.Rounds, m.LoadBefore, m.LoadDuring, m.LoadAfter, or(m.Otelcol, "not run"), or(m.Jaeger, "not run"))
	b.WriteString("CPU counts the window and the drain after it, until the server has delivered what it accepted in the window (at most " + or(m.Drain, "the drain bound") + "); " +
		"the shortfall is what it accepted in the window but did not deliver (dropped, or still held then), and items per CPU-second count only the delivered ones. " +
		"CPU is read in ns from the server's process CPU clock (all its threads, those that ended included)")
	for _, x := range r.Medians {
		if x.Skipped == "" && x.CPUMeter != string(procstat.Clock) {
			fmt.Fprintf(&b, "; %s's in a round by %s", x.Scenario, or(x.CPUMeter, "10 ms ticks (a result of before the ns meter)"))
		}
	}
	b.WriteString(".\n\n")
	b.WriteString("| scenario | what | items/s | server vCPU (CPU of window + drain ÷ window) | items per server CPU-second (window + drain) | drain s | shortfall | delivered to Kafka, window + drain (report: records; spans: spans) | dropped | Jaeger spans | errors |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	what := map[string]string{
		"report-max":              fmt.Sprintf("Report batches of %d records, 2 proxies, closed loop; rules → prometheus + accesslog + kafka (json) + jaeger", m.Batch),
		"report-fixed":            fmt.Sprintf("same at %d mesh requests/s = %d records/s (2 reporting proxies, 1 batch/s each)", m.MeshRate, 2*m.MeshRate),
		"report-default":          fmt.Sprintf("examples/default as shipped (no kafka rule; every trace sampled, the proxy's default) at %d mesh requests/s", m.MeshRate),
		"report-default-1pct":     fmt.Sprintf("examples/default as shipped, 1%% of traces sampled (Istio's default), at %d mesh requests/s", m.MeshRate),
		"spans-sidemix":           fmt.Sprintf("OTLP/gRPC exports of %d spans, %d clients, closed loop → mixer --otlp-grpc, otlp instance (spans as received, per resource) → kafka (otlp_proto, a queue batch's resources per record, cut at 1 MiB)", m.SpanBatch, max(m.SpanCallers, DefaultSpanCallers)),
		"spans-sidemix-tracespan": "spans-sidemix with examples/default's tracespan instead (every span decoded into a bag and rebuilt; one TracesData record per queue batch)",
		"spans-otelcol":           "same spans → OpenTelemetry Collector otlp → batch → kafka (otlp_proto, 1 batch per record)",
		"spans-sidemix-fixed":     fmt.Sprintf("spans-sidemix at %d spans/s offered (equal load)", m.SpanRate),
		"spans-otelcol-fixed":     fmt.Sprintf("spans-otelcol at %d spans/s offered (equal load)", m.SpanRate),
	}
	for _, x := range r.Medians {
		if x.Skipped != "" {
			fmt.Fprintf(&b, "| %s | %s | skipped: %s | | | | | | | | |\n", x.Scenario, what[x.Scenario], x.Skipped)
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.3f | %s | %.2f | %s | %s | %s | %s | %d |\n", x.Scenario, what[x.Scenario],
			thousands(x.Rate), x.VCPU, thousands(x.PerCPUSecond), x.Drain, count(x.Shortfall), count(x.Delivered), count(x.Dropped), count(x.JaegerSent), x.Errors)
	}
	b.WriteString("\n| target | measured | where it stands |\n|---|---|---|\n")
	if x, ok := r.median("report-max"); ok {
		fmt.Fprintf(&b, "| attribute records per second per core | %s records per mixer CPU-second (closed loop) | — (no number set) |\n", thousands(x.PerCPUSecond))
	}
	if x, ok := r.median("report-fixed"); ok && m.MeshRate > 0 {
		per := x.VCPU / (float64(m.MeshRate) / 1000)
		fmt.Fprintf(&b, "| ≤ 0.01 vCPU per 1,000 requests/s (Istio's Mixer: 0.6), judged on report-fixed (every trace sampled + kafka) | %.4f vCPU per 1,000 rps | %s |\n", per, verdict(per <= 0.01))
	}
	for _, name := range []string{"report-default", "report-default-1pct"} {
		if x, ok := r.median(name); ok && m.MeshRate > 0 {
			fmt.Fprintf(&b, "| (context, not the target's row) %s | %.4f vCPU per 1,000 rps | — |\n", name, x.VCPU/(float64(m.MeshRate)/1000))
		}
	}
	sx, okS := r.median("spans-sidemix")
	ox, okO := r.median("spans-otelcol")
	switch {
	case okS && okO && ox.PerCPUSecond > 0:
		ratio := sx.PerCPUSecond / ox.PerCPUSecond
		fmt.Fprintf(&b, "| spans per CPU-second ≥ 5× the collector's | %s vs %s: %.2f× | %s |\n",
			thousands(sx.PerCPUSecond), thousands(ox.PerCPUSecond), ratio, verdict(ratio >= 5))
	case okS:
		fmt.Fprintf(&b, "| spans per CPU-second ≥ 5× the collector's | sidemix %s; collector not run | not compared |\n", thousands(sx.PerCPUSecond))
	}
	sf, okSF := r.median("spans-sidemix-fixed")
	of, okOF := r.median("spans-otelcol-fixed")
	if okSF && okOF && sf.VCPU > 0 {
		fmt.Fprintf(&b, "| same at equal load (%d spans/s offered to both) | sidemix %.3f vCPU vs collector %.3f vCPU: sidemix's spans per CPU-second are %.2f× the collector's | %s |\n",
			m.SpanRate, sf.VCPU, of.VCPU, of.VCPU/sf.VCPU, verdict(of.VCPU/sf.VCPU >= 5))
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func count(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return thousands(float64(n))
}

// thousands formats v rounded with comma separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}
