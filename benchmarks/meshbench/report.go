package meshbench

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Meta describes a run for the report.
type Meta struct {
	Date     string            `json:"date"`
	Command  string            `json:"command"`
	CPUs     int               `json:"cpus"`
	CPUModel string            `json:"cpu_model"`
	Go       string            `json:"go"`
	Versions map[string]string `json:"versions"`
	Tracing  string            `json:"tracing"`
	Policy   string            `json:"policy"`
	Variant  string            `json:"variant,omitempty"`
	Rounds   int               `json:"rounds"`
	QPS      int               `json:"qps"`
	Conns    int               `json:"conns"`
	Payload  int               `json:"payload"`
	Warmup   string            `json:"warmup"`
	Duration string            `json:"duration"`
	// Workers says how many cores/workers each proxy had in the latency
	// set-up.
	Workers    string `json:"workers"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

// CheckRow is the mixer's Check throughput with n rules (policybench).
type CheckRow struct {
	Rules        int     `json:"rules"`
	Rate         float64 `json:"per_s"`
	P99Ms        float64 `json:"p99_ms"`
	PerCPUSecond float64 `json:"per_cpu_s"`
}

// MixerRows are the mixer's own figures.
type MixerRows struct {
	Check []CheckRow `json:"check"`
	// ReportPerCore is Report records per mixer CPU second, closed loop,
	// default telemetry (reportbench report-max).
	ReportPerCore float64 `json:"report_records_per_cpu_s"`
	// ReportFixedVCPU is the mixer's cores at MeshRate mesh requests/s
	// with two reporting proxies (reportbench report-fixed).
	ReportFixedVCPU float64 `json:"report_fixed_vcpu"`
	MeshRate        int     `json:"mesh_rate"`
	Settings        string  `json:"settings"`
}

// Report is a run's figures: the latency rounds, peak RSS, the scaling and
// ceiling runs, and the mixer rows.
type Report struct {
	Meta   Meta               `json:"meta"`
	Rounds [][]Run            `json:"rounds"`
	RSSMB  map[string]float64 `json:"rss_mb"`
	// MixerRSSMB is the latency set-up's mixer's peak RSS.
	MixerRSSMB float64    `json:"mixer_rss_mb"`
	Scaling    []Run      `json:"scaling"`
	Ceiling    []Run      `json:"ceiling"`
	Mixer      *MixerRows `json:"mixer,omitempty"`
	// Median is each path's median over the rounds (computed).
	Median map[string]Run `json:"median"`
}

// NewReport computes the medians of the latency rounds.
func NewReport(meta Meta, rounds [][]Run, rss map[string]float64, scaling, ceiling []Run, mixer *MixerRows) *Report {
	r := &Report{Meta: meta, Rounds: rounds, RSSMB: rss, Scaling: scaling, Ceiling: ceiling, Mixer: mixer, Median: map[string]Run{}}
	by := map[string][]Run{}
	for _, round := range rounds {
		for _, run := range round {
			by[run.Path] = append(by[run.Path], run)
		}
	}
	for name, runs := range by {
		r.Median[name] = medianRun(runs)
	}
	return r
}

func medianRun(runs []Run) Run {
	m := runs[0]
	f := func(get func(Run) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		return median(v)
	}
	m.Round = -1
	m.Achieved = f(func(r Run) float64 { return r.Achieved })
	m.P50Ms = f(func(r Run) float64 { return r.P50Ms })
	m.P90Ms = f(func(r Run) float64 { return r.P90Ms })
	m.P99Ms = f(func(r Run) float64 { return r.P99Ms })
	m.P999Ms = f(func(r Run) float64 { return r.P999Ms })
	m.MaxMs = f(func(r Run) float64 { return r.MaxMs })
	m.ProxyCPU = f(func(r Run) float64 { return r.ProxyCPU })
	m.MixerCPU = f(func(r Run) float64 { return r.MixerCPU })
	m.ProxyCPUPer1k = f(func(r Run) float64 { return r.ProxyCPUPer1k })
	m.MixerCPUPer1k = f(func(r Run) float64 { return r.MixerCPUPer1k })
	m.ProxyCores = f(func(r Run) float64 { return r.ProxyCores })
	m.ProxyCPUPer1kEach = nil
	for i := range runs[0].ProxyCPUPer1kEach {
		m.ProxyCPUPer1kEach = append(m.ProxyCPUPer1kEach, f(func(r Run) float64 {
			if i < len(r.ProxyCPUPer1kEach) {
				return r.ProxyCPUPer1kEach[i]
			}
			return 0
		}))
	}
	m.Requests, m.Errors = 0, 0
	for _, r := range runs {
		m.Requests += r.Requests
		m.Errors += r.Errors
	}
	return m
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// PathSummary is one path's line of summary.json.
type PathSummary struct {
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	CPUSPer1k float64 `json:"cpu_s_per_1k"`
	RSSMB     float64 `json:"rss_mb"`
}

// Summary is benchmarks/results/latest/summary.json: per path the
// medians, plus the mixer's CPU seconds per 1,000 mesh requests (two
// sidecars reporting each request, as in a mesh).
type Summary struct {
	Paths         map[string]PathSummary
	MixerCPUPer1k float64
	// Routing is issue 6's comparison, when the run had both routing
	// paths: under "routing", beside issue 5's fields.
	Routing *RoutingSummary
}

// RoutingSummary compares the routed outbound sidecar with the plain one.
type RoutingSummary struct {
	Plain  PathSummary `json:"plain"`
	Routed PathSummary `json:"routed"`
	// The routed path's cost over the plain one, in percent: of the
	// latency added over direct at p50 and p90, and of proxy CPU per 1,000
	// requests. Target: each ≤ 10.
	AddedP50Pct float64 `json:"added_p50_overhead_pct"`
	AddedP90Pct float64 `json:"added_p90_overhead_pct"`
	CPUPct      float64 `json:"cpu_overhead_pct"`
}

// routingKey is RoutingSummary's key in summary.json.
const routingKey = "routing"

// MarshalJSON writes the paths and mixer_cpu_s_per_1k side by side.
func (s Summary) MarshalJSON() ([]byte, error) {
	m := map[string]any{"mixer_cpu_s_per_1k": round4(s.MixerCPUPer1k)}
	for k, v := range s.Paths {
		m[k] = v
	}
	if s.Routing != nil {
		m[routingKey] = s.Routing
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *Summary) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	s.Paths = map[string]PathSummary{}
	for k, v := range raw {
		if k == "mixer_cpu_s_per_1k" {
			if err := json.Unmarshal(v, &s.MixerCPUPer1k); err != nil {
				return fmt.Errorf("summary %s: %v", k, err)
			}
			continue
		}
		if k == routingKey {
			s.Routing = &RoutingSummary{}
			if err := json.Unmarshal(v, s.Routing); err != nil {
				return fmt.Errorf("summary %s: %v", k, err)
			}
			continue
		}
		var p PathSummary
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("summary %s: %v", k, err)
		}
		s.Paths[k] = p
	}
	return nil
}

func round4(v float64) float64 {
	return float64(int64(v*1e4+0.5)) / 1e4
}

// Summary is the machine-readable summary.
func (r *Report) Summary() Summary {
	s := Summary{Paths: map[string]PathSummary{}}
	ps := func(name string, m Run) PathSummary {
		return PathSummary{P50Ms: round4(m.P50Ms), P90Ms: round4(m.P90Ms), P99Ms: round4(m.P99Ms),
			CPUSPer1k: round4(m.ProxyCPUPer1k), RSSMB: round4(r.RSSMB[name])}
	}
	for name, m := range r.Median {
		if !slices.Contains(Paths, name) {
			continue
		}
		s.Paths[name] = ps(name, m)
	}
	if c, ok := r.RoutingCost(); ok {
		s.Routing = &RoutingSummary{Plain: ps(SidemixOut, r.Median[SidemixOut]), Routed: ps(SidemixRouted, r.Median[SidemixRouted]),
			AddedP50Pct: round4(c.AddedP50Pct), AddedP90Pct: round4(c.AddedP90Pct), CPUPct: round4(c.CPUPct)}
	}
	if m, ok := r.Median[Sidemix2]; ok {
		s.MixerCPUPer1k = m.MixerCPUPer1k
	} else if m, ok := r.Median[Sidemix1]; ok {
		s.MixerCPUPer1k = m.MixerCPUPer1k
	}
	return s
}

// Goal is one line of the goals table.
type Goal struct {
	Measure, Anchor, Target string
	Value                   string
	Met                     bool
	Known                   bool
	By                      string
}

// Goals compares the run with the targets.
func (r *Report) Goals() []Goal {
	d, okD := r.Median[Direct]
	s1, ok1 := r.Median[Sidemix1]
	s2, ok2 := r.Median[Sidemix2]
	ng, okN := r.Median[Nginx]
	var gs []Goal
	g := Goal{Measure: "added P90, two sidecars, Istio's set-up", Anchor: "Istio 1.4 with Mixer: 6.3 ms; Telemetry v2: 2.65 ms; ambient ztunnel pair: 0.17 ms", Target: "≤ 0.25 ms"}
	if okD && ok2 {
		v := s2.P90Ms - d.P90Ms
		g.Known, g.Met, g.Value = true, v <= 0.25, fmt.Sprintf("%.3f ms", v)
		g.By = by(v, 0.25, "ms")
	}
	gs = append(gs, g)
	g = Goal{Measure: "sidecar CPU per 1,000 rps", Anchor: "Envoy in Istio 1.4: 0.5 vCPU; Istio 1.24 sidecar: 0.20 vCPU", Target: "≤ 0.05 vCPU"}
	if ok1 {
		v := s1.ProxyCPUPer1k
		g.Known, g.Met, g.Value = true, v <= 0.05, fmt.Sprintf("%.3f vCPU", v)
		g.By = by(v, 0.05, "vCPU")
	}
	gs = append(gs, g)
	g = Goal{Measure: "mixer CPU per 1,000 mesh rps (telemetry)", Anchor: "istio-telemetry: 0.6 vCPU", Target: "≤ 0.01 vCPU"}
	if ok2 {
		v := s2.MixerCPUPer1k
		g.Known, g.Met, g.Value = true, v <= 0.01, fmt.Sprintf("%.3f vCPU (two sidecars reporting, policy Checks included)", v)
		g.By = by(v, 0.01, "vCPU")
	}
	gs = append(gs, g)
	g = Goal{Measure: "sidecar RSS at 1,000 rps", Anchor: "Istio 1.24 sidecar: 60 MB", Target: "≤ 25 MB"}
	if v, ok := r.RSSMB[Sidemix1]; ok && v > 0 {
		g.Known, g.Met, g.Value = true, v <= 25, fmt.Sprintf("%.1f MB", v)
		g.By = by(v, 25, "MB")
	}
	gs = append(gs, g)
	g = Goal{Measure: "added latency vs nginx, same run", Anchor: "nginx as plain proxy", Target: "≤ 1.5× nginx's added p90, with policy + telemetry + tracing"}
	if okD && ok1 && okN {
		an := ng.P90Ms - d.P90Ms
		as := s1.P90Ms - d.P90Ms
		if an > 0 {
			v := as / an
			g.Known, g.Met, g.Value = true, v <= 1.5, fmt.Sprintf("%.2f× (sidemix %.3f ms, nginx %.3f ms added)", v, as, an)
			g.By = by(v, 1.5, "×")
		} else {
			g.Value = fmt.Sprintf("nginx added %.3f ms: no ratio", an)
		}
	}
	gs = append(gs, g)
	return gs
}

// RoutingTargetPct is issue 6's bound on what routing may cost over the
// plain sidecar path, in percent.
const RoutingTargetPct = 10

// RoutingCost is the routed path's cost over the plain outbound sidecar:
// its added latency over direct (p50, p90) and its proxy CPU per 1,000
// requests, each in percent of the plain path's. false unless the run has
// direct and both routing paths.
func (r *Report) RoutingCost() (c RoutingSummary, ok bool) {
	d, okD := r.Median[Direct]
	pl, okP := r.Median[SidemixOut]
	ro, okR := r.Median[SidemixRouted]
	if !okD || !okP || !okR {
		return c, false
	}
	pct := func(routed, plain float64) float64 {
		if plain <= 0 {
			return 0
		}
		return 100 * (routed/plain - 1)
	}
	c.AddedP50Pct = pct(ro.P50Ms-d.P50Ms, pl.P50Ms-d.P50Ms)
	c.AddedP90Pct = pct(ro.P90Ms-d.P90Ms, pl.P90Ms-d.P90Ms)
	c.CPUPct = pct(ro.ProxyCPUPer1k, pl.ProxyCPUPer1k)
	return c, true
}

// RoutingGoals compares the routed path with issue 6's target.
func (r *Report) RoutingGoals() []Goal {
	c, ok := r.RoutingCost()
	pl, ro, d := r.Median[SidemixOut], r.Median[SidemixRouted], r.Median[Direct]
	target := fmt.Sprintf("≤ %d%% over plain", RoutingTargetPct)
	g := func(measure, value string, v float64) Goal {
		out := Goal{Measure: measure, Anchor: "the plain outbound sidecar (--upstreams), same rounds", Target: target}
		if ok {
			out.Known, out.Met, out.Value, out.By = true, v <= RoutingTargetPct, value, by(v, RoutingTargetPct, "points")
		}
		return out
	}
	return []Goal{
		g("routing: added p90 over direct", fmt.Sprintf("%+.1f%% (%.3f vs %.3f ms)", c.AddedP90Pct, ro.P90Ms-d.P90Ms, pl.P90Ms-d.P90Ms), c.AddedP90Pct),
		g("routing: added p50 over direct", fmt.Sprintf("%+.1f%% (%.3f vs %.3f ms)", c.AddedP50Pct, ro.P50Ms-d.P50Ms, pl.P50Ms-d.P50Ms), c.AddedP50Pct),
		g("routing: proxy CPU per 1,000 requests", fmt.Sprintf("%+.1f%% (%.4f vs %.4f vCPU)", c.CPUPct, ro.ProxyCPUPer1k, pl.ProxyCPUPer1k), c.CPUPct),
	}
}

func by(v, target float64, unit string) string {
	if v <= target {
		return "met"
	}
	return fmt.Sprintf("missed by %.3g %s (%.1f× the target)", v-target, unit, v/target)
}

// Markdown renders the report; images links the plots with this prefix
// (their folder relative to where the Markdown goes, "" for the same one).
func (r *Report) Markdown(images string) string {
	var b strings.Builder
	m := r.Meta
	fmt.Fprintf(&b, "### Mesh benchmark — %s\n\n", m.Date)
	fmt.Fprintf(&b, "Machine: %d CPUs, %s; %s; load before/after %s / %s.  \n", m.CPUs, m.CPUModel, m.Go, m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(&b, "Peers: %s.  \n", versions(m.Versions))
	fmt.Fprintf(&b, "Command: `%s`\n\n", m.Command)
	fmt.Fprintf(&b, "**Latency, Istio's set-up**: fortio (periodic runner, fast client) at %d requests/s, %d connections, %d-byte POST payload, HTTP/1.1, to fortio's echo server; %d interleaved rounds of %s (after %s warm-up), medians. Workers: %s. Tracing: %s. Mixer policy: %s, beside examples/default.\n\n",
		m.QPS, m.Conns, m.Payload, m.Rounds, m.Duration, m.Warmup, m.Workers, m.Tracing, m.Policy)
	b.WriteString("| path | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 | added p90 | added p99 | proxy CPU s / 1k req | mixer CPU s / 1k req | peak RSS MB | non-200 |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	d, haveD := r.Median[Direct]
	for _, name := range allPaths {
		x, ok := r.Median[name]
		if !ok {
			continue
		}
		added := func(v, base float64) string {
			if !haveD || name == Direct {
				return "—"
			}
			return fmt.Sprintf("%+.3f", v-base)
		}
		cpu, mix, rss := "—", "—", "—"
		if name != Direct {
			cpu = fmt.Sprintf("%.4f", x.ProxyCPUPer1k)
			if len(x.ProxyCPUPer1kEach) > 1 {
				parts := make([]string, len(x.ProxyCPUPer1kEach))
				for i, v := range x.ProxyCPUPer1kEach {
					parts[i] = fmt.Sprintf("%.4f", v)
				}
				cpu += " (" + strings.Join(parts, " + ") + ")"
			}
			rss = fmt.Sprintf("%.1f", r.RSSMB[name])
		}
		if slices.Contains(sidemixPaths, name) {
			mix = fmt.Sprintf("%.4f", x.MixerCPUPer1k)
		}
		fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f | %.3f | %s | %s | %s | %s | %s | %s | %d |\n", name, x.P50Ms, x.P90Ms, x.P99Ms, x.P999Ms,
			added(x.P50Ms, d.P50Ms), added(x.P90Ms, d.P90Ms), added(x.P99Ms, d.P99Ms), cpu, mix, rss, x.Errors)
	}
	if m.Variant != "" {
		fmt.Fprintf(&b, "\n%s is sidemix_1 with `%s` added to the sidecar's flags, in the same rounds (not in summary.json or the goals).\n", Variant, m.Variant)
	}
	_, okOut := r.Median[SidemixOut]
	_, okRouted := r.Median[SidemixRouted]
	if okOut || okRouted {
		fmt.Fprintf(&b, "\n%s is the client's outbound sidecar straight to the app with plain `--upstreams`; %s the same sidecar with `--routes`: a VirtualService splitting %d/%d over subsets v1 and v2 (two app instances) of a DestinationRule with outlier detection, a 10s timeout and retries (attempts 2, perTryTimeout 5s, retryOn 5xx,connect-failure,reset). Issue 6's comparison; in summary.json under \"routing\" only.\n",
			SidemixOut, SidemixRouted, 100-RoutedCanary, RoutedCanary)
	}
	fmt.Fprintf(&b, "\n![latency by path](%slatency.png)\n", images)
	b.WriteString("\nCPU seconds per 1,000 requests equal vCPU per 1,000 requests/s. sidemix_2's proxy CPU and RSS are both sidecars together (CPU split outbound + inbound); the mixer column is the one mixer all sidecars share (policy Checks and telemetry Reports)")
	if r.MixerRSSMB > 0 {
		fmt.Fprintf(&b, ", whose peak RSS was %.1f MB", r.MixerRSSMB)
	}
	b.WriteString(".\n\n")

	if len(r.Ceiling) > 0 {
		b.WriteString("**Throughput ceiling**: one proxy pinned to one core with one worker (sidemix `GOMAXPROCS=1`, nginx `worker_processes 1`, haproxy `nbthread 1`); app, mixer and fortio on the other core; fortio closed loop over the same connections. sidemix with policy and telemetry on.\n\n")
		b.WriteString("| proxy | requests/s | proxy cores used | requests/s per proxy core | p50 ms | p99 ms | non-200 |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range r.Ceiling {
			fmt.Fprintf(&b, "| %s | %s | %.2f | %s | %.3f | %.3f | %d |\n", c.Path, thousands(c.Achieved), c.ProxyCores, thousands(c.Achieved/max(c.ProxyCores, 1e-9)), c.P50Ms, c.P99Ms, c.Errors)
		}
		b.WriteString("\nA proxy using well under one core was not the bound: the other core (fortio, app, mixer) was.\n\n")
	}

	if len(r.Scaling) > 0 {
		b.WriteString("**Scaling**: one run per rate and path, paths interleaved at each rate.\n\n")
		fmt.Fprintf(&b, "![added p90 vs rate](%sscaling-p90.png) ![proxy CPU per 1,000 requests vs rate](%sscaling-cpu.png)\n\n", images, images)
		b.WriteString("| rate /s | path | achieved /s | p90 ms | added p90 ms | proxy CPU s / 1k req |\n|---:|---|---:|---:|---:|---:|\n")
		for _, s := range r.Scaling {
			add := "—"
			if s.Path != Direct {
				if base, ok := r.scalingDirect(s.QPS); ok {
					add = fmt.Sprintf("%+.3f", s.P90Ms-base.P90Ms)
				}
			}
			cpu := "—"
			if s.Path != Direct {
				cpu = fmt.Sprintf("%.4f", s.ProxyCPUPer1k)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %.3f | %s | %s |\n", thousands(s.QPS), s.Path, thousands(s.Achieved), s.P90Ms, add, cpu)
		}
		b.WriteString("\n")
	}

	if x := r.Mixer; x != nil {
		fmt.Fprintf(&b, "**Mixer** (%s):\n\n", x.Settings)
		b.WriteString("| measure | value |\n|---|---:|\n")
		for _, c := range x.Check {
			fmt.Fprintf(&b, "| Check, %d rule(s), one core, no client cache: requests/s | %s (p99 %.2f ms) |\n", c.Rules, thousands(c.Rate), c.P99Ms)
		}
		fmt.Fprintf(&b, "| Report, default telemetry: records/s per core | %s |\n", thousands(x.ReportPerCore))
		fmt.Fprintf(&b, "| Report at %s mesh requests/s (two reporting proxies): mixer vCPU per 1,000 mesh rps | %.4f |\n", thousands(float64(x.MeshRate)), x.ReportFixedVCPU*1000/float64(max(x.MeshRate, 1)))
		if m2, ok := r.Median[Sidemix2]; ok {
			fmt.Fprintf(&b, "| latency set-up, sidemix_2 (Checks + Reports of two sidecars): mixer vCPU per 1,000 mesh rps | %.4f |\n", m2.MixerCPUPer1k)
		}
		b.WriteString("\n")
	}

	if _, ok := r.RoutingCost(); ok {
		b.WriteString("**Routing** (issue 6): sidemix_out_routed's cost over sidemix_out, in percent of sidemix_out's added latency (over direct) and proxy CPU.\n\n| measure | anchor | sidemix target | this run | where it stands |\n|---|---|---|---|---|\n")
		for _, g := range r.RoutingGoals() {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", g.Measure, g.Anchor, g.Target, g.Value, g.By)
		}
		b.WriteString("\n")
	}
	b.WriteString("**Goals** (issue 5):\n\n| measure | anchor | sidemix target | this run | where it stands |\n|---|---|---|---|---|\n")
	for _, g := range r.Goals() {
		st := "not measured"
		if g.Known {
			st = g.By
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", g.Measure, g.Anchor, g.Target, or(g.Value, "—"), st)
	}
	return b.String()
}

func (r *Report) scalingDirect(qps float64) (Run, bool) {
	for _, s := range r.Scaling {
		if s.Path == Direct && s.QPS == qps {
			return s, true
		}
	}
	return Run{}, false
}

func versions(v map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(v) {
		parts = append(parts, k+" "+v[k])
	}
	return strings.Join(parts, "; ")
}

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// thousands formats v rounded, with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
