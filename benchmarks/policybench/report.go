package policybench

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
)

// Meta describes the run a report comes from, so its numbers can be
// reproduced and compared only with numbers of the same kind of run.
type Meta struct {
	Date       string `json:"date"`
	Command    string `json:"command"`
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	Go         string `json:"go"`
	Sidemix    string `json:"sidemix"`
	Ratelimit  string `json:"ratelimit"`
	Redis      string `json:"redis"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	Rounds     int    `json:"rounds"`
	Workers    int    `json:"workers"`
	Conns      int    `json:"conns"`
	Warmup     string `json:"warmup"`
	Duration   string `json:"duration"`
	ServerCPUs string `json:"server_cpus"`
	LoadCPUs   string `json:"loadgen_cpus"`
}

// Report is every run of a suite and the median of each scenario.
type Report struct {
	Meta        Meta            `json:"meta"`
	Rounds      [][]Measurement `json:"rounds"`
	Medians     []Measurement   `json:"medians"`
	Comparisons []Comparison    `json:"comparisons"`
}

// NewReport computes the medians of rounds, scenario by scenario.
func NewReport(meta Meta, rounds [][]Measurement) *Report {
	r := &Report{Meta: meta, Rounds: rounds, Medians: medians(rounds)}
	r.Comparisons = r.Compare()
	return r
}

// medians returns, per scenario (in first-seen order), the median of each
// figure over the rounds taken on its own; the outcomes and detail come
// from the round with the median rate. Skipped runs are left out, and a
// scenario skipped in every round stays skipped.
func medians(rounds [][]Measurement) []Measurement {
	order, by, skipped := harness.ByScenario(rounds,
		func(m Measurement) string { return m.Scenario },
		func(m Measurement) bool { return m.Skipped != "" })
	out := make([]Measurement, 0, len(order))
	for _, name := range order {
		ms := by[name]
		if len(ms) == 0 {
			out = append(out, skipped[name])
			continue
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].Rate < ms[j].Rate })
		med := ms[len(ms)/2]
		f := func(get func(Measurement) float64) float64 {
			v := make([]float64, len(ms))
			for i, m := range ms {
				v[i] = get(m)
			}
			return median(v)
		}
		med.P50Ms = f(func(m Measurement) float64 { return m.P50Ms })
		med.P90Ms = f(func(m Measurement) float64 { return m.P90Ms })
		med.P99Ms = f(func(m Measurement) float64 { return m.P99Ms })
		med.ServerCores = f(func(m Measurement) float64 { return m.ServerCores })
		med.PerCPUSecond = f(func(m Measurement) float64 { return m.PerCPUSecond })
		med.LoadgenCores = f(func(m Measurement) float64 { return m.LoadgenCores })
		med.RedisCPUUsPerOp = f(func(m Measurement) float64 { return m.RedisCPUUsPerOp })
		med.ServerPeakRSSMB = f(func(m Measurement) float64 { return m.ServerPeakRSSMB })
		med.ChecksPerRequest = f(func(m Measurement) float64 { return m.ChecksPerRequest })
		med.LocalFraction = f(func(m Measurement) float64 { return m.LocalFraction })
		out = append(out, med)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// Comparison is sidemix against the ratelimit peer in one group of runs.
// Each ratio is the median over the rounds of that round's ratio: the two
// runs of a round are taken moments apart, so a round's ratio is less
// exposed to the machine's drift than a ratio of medians.
type Comparison struct {
	Group string `json:"group"`
	// Ratios, sidemix over ratelimit; P99 below 1 is better.
	Rate         float64 `json:"per_s_ratio"`
	PerCPUSecond float64 `json:"per_cpu_s_ratio"`
	P99          float64 `json:"p99_ratio"`
	// PerRound lists the per-CPU-second ratio of each round, for spread.
	PerRound []float64 `json:"per_cpu_s_ratio_rounds"`
	// Met is the target: at least 2× per CPU-second at an equal or better p99.
	Met bool `json:"target_met"`
}

// TargetPerCPU is the target for the quota path: sidemix's
// throughput per CPU-second over ratelimit's.
const TargetPerCPU = 2.0

// Compare returns the comparisons the report can make (each pair of
// scenarios measured in at least one round).
func (r *Report) Compare() []Comparison {
	var out []Comparison
	for _, pair := range [][3]string{
		{GroupQuota, "quota-sidemix-fixed", "quota-ratelimit"},
		{GroupRate, "rate-sidemix-fixed", "rate-ratelimit"},
		{GroupDenied, "denied-sidemix-fixed", "denied-ratelimit"},
	} {
		c := Comparison{Group: pair[0]}
		var rate, p99 []float64
		for _, round := range r.Rounds {
			var a, b Measurement
			for _, m := range round {
				switch {
				case m.Skipped != "":
				case m.Scenario == pair[1]:
					a = m
				case m.Scenario == pair[2]:
					b = m
				}
			}
			if a.Rate == 0 || b.Rate == 0 || a.PerCPUSecond == 0 || b.PerCPUSecond == 0 || b.P99Ms == 0 {
				continue
			}
			rate = append(rate, a.Rate/b.Rate)
			p99 = append(p99, a.P99Ms/b.P99Ms)
			c.PerRound = append(c.PerRound, a.PerCPUSecond/b.PerCPUSecond)
		}
		if len(c.PerRound) == 0 {
			continue
		}
		c.Rate, c.P99 = median(rate), median(p99)
		c.PerCPUSecond = median(append([]float64(nil), c.PerRound...))
		c.Met = c.PerCPUSecond >= TargetPerCPU && c.P99 <= 1
		out = append(out, c)
	}
	return out
}

// Markdown renders the report as the tables of benchmarks/README.md's
// "Policy path" section.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Meta
	fmt.Fprintf(&b, "Run %s on %d × %s, %s; %s; %s; %s.\n",
		m.Date, m.CPUs, m.CPUModel, m.Go, m.Sidemix, m.Redis, orNone(m.Ratelimit, "ratelimit not built"))
	fmt.Fprintf(&b, "Medians of %d interleaved rounds; each run %s warm-up + %s measured, %d closed-loop callers over %d connections. ",
		m.Rounds, m.Warmup, m.Duration, m.Workers, m.Conns)
	fmt.Fprintf(&b, "Server pinned to CPU %s (GOMAXPROCS=1), load generator and Redis on CPU %s. Load average before/after: %s / %s.\n\n",
		orNone(m.ServerCPUs, "none"), orNone(m.LoadCPUs, "none"), m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(&b, "```sh\n%s\n```\n\n", m.Command)

	if r.has(GroupCheck) {
		r.checkTable(&b)
	}
	if r.has(GroupQuota) || r.has(GroupRate) || r.has(GroupDenied) {
		r.quotaTable(&b)
	}
	if r.has(GroupPrefetch) {
		r.prefetchTable(&b)
	}
	return b.String()
}

func (r *Report) has(group string) bool {
	for _, x := range r.Medians {
		if x.Group == group {
			return true
		}
	}
	return false
}

func (r *Report) checkTable(b *strings.Builder) {
	b.WriteString("**Mixer Check, one core** (a Check per request, no client cache; the matching rule is a memquota limit far above the load):\n\n")
	b.WriteString("| rules | checks/s | p50 ms | p90 ms | p99 ms | mixer CPU (cores) | checks per CPU-second | mixer peak RSS MiB | load generator CPU (cores) | answers |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, x := range r.Medians {
		if x.Group != GroupCheck {
			continue
		}
		if x.Skipped != "" {
			fmt.Fprintf(b, "| %s | skipped: %s ||||||||| \n", x.Scenario, x.Skipped)
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %.2f | %.2f | %.2f | %.2f | %s | %.0f | %.2f | %s |\n",
			strings.TrimSuffix(x.Detail, " rules"), thousands(x.Rate), x.P50Ms, x.P90Ms, x.P99Ms, x.ServerCores,
			thousands(x.PerCPUSecond), x.ServerPeakRSSMB, x.LoadgenCores, x.Outcomes)
	}

}

func (r *Report) quotaTable(b *strings.Builder) {
	b.WriteString("\n**Quota through Redis, side by side** (same Redis, same limit per destination and second, same load generator shape):\n\n")
	b.WriteString("| run | server | checks/s | p50 ms | p99 ms | server CPU (cores) | checks per CPU-second | Redis CPU µs per check | server peak RSS MiB | load generator CPU (cores) | answers |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, x := range r.Medians {
		if x.Group != GroupQuota && x.Group != GroupRate && x.Group != GroupDenied {
			continue
		}
		if x.Skipped != "" {
			fmt.Fprintf(b, "| %s | skipped: %s ||||||||| \n", x.Scenario, x.Skipped)
			continue
		}
		fmt.Fprintf(b, "| %s | %s (%s) | %s | %.2f | %.2f | %.2f | %s | %.1f | %.0f | %.2f | %s |\n",
			x.Scenario, x.Server, x.Detail, thousands(x.Rate), x.P50Ms, x.P99Ms, x.ServerCores,
			thousands(x.PerCPUSecond), x.RedisCPUUsPerOp, x.ServerPeakRSSMB, x.LoadgenCores, x.Outcomes)
	}
	if cs := r.Compare(); len(cs) > 0 {
		b.WriteString("\nRatios are medians of the per-round ratios (the two runs of a round are moments apart).\n\n")
		b.WriteString("| sidemix ÷ ratelimit | checks/s | checks per CPU-second (each round) | p99 (under 1: ours lower) | target: ≥ 2× per CPU-second at equal or better p99 |\n")
		b.WriteString("|---|---:|---:|---:|---|\n")
		for _, c := range cs {
			rounds := make([]string, len(c.PerRound))
			for i, v := range c.PerRound {
				rounds[i] = fmt.Sprintf("%.2f", v)
			}
			verdict := "met"
			if !c.Met {
				verdict = "missed"
			}
			fmt.Fprintf(b, "| %s | %.2f× | %.2f× (%s) | %.2f× | %s |\n",
				groupLabel(c.Group), c.Rate, c.PerCPUSecond, strings.Join(rounds, ", "), c.P99, verdict)
		}
	}
}

func (r *Report) prefetchTable(b *strings.Builder) {
	b.WriteString("\n**Proxy quota prefetch** (HTTP through one proxy whose service a QuotaSpec binds to a memquota limit far above the load):\n\n")
	b.WriteString("| proxy | requests/s | p50 ms | p99 ms | mixer Checks per request | answered from the local pool | answers |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|\n")
	for _, x := range r.Medians {
		if x.Group != GroupPrefetch {
			continue
		}
		if x.Skipped != "" {
			fmt.Fprintf(b, "| %s | skipped: %s ||||| \n", x.Detail, x.Skipped)
			continue
		}
		local := "not exported"
		if x.LocalFraction >= 0 {
			local = fmt.Sprintf("%.1f%%", 100*x.LocalFraction)
		}
		fmt.Fprintf(b, "| %s | %s | %.2f | %.2f | %.3f | %s | %s |\n",
			x.Detail, thousands(x.Rate), x.P50Ms, x.P99Ms, x.ChecksPerRequest, local, x.Outcomes)
	}
}

// groupLabel says in words what a group of runs compares.
func groupLabel(group string) string {
	switch group {
	case GroupQuota:
		return "granting, closed loop"
	case GroupRate:
		return "granting, equal offered load"
	case GroupDenied:
		return fmt.Sprintf("mostly denied (limit %s/s)", thousands(DeniedLimit))
	}
	return group
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// thousands formats v rounded, with commas: 12,345.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// Today is the date a report is stamped with.
func Today() string { return time.Now().Format("2006-01-02") }
