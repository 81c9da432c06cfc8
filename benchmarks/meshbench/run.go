package meshbench

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// Run is one measured run of one path.
type Run struct {
	Path  string `json:"path"`
	Round int    `json:"round"`
	// QPS is the offered rate (0: closed loop, as fast as answered);
	// Achieved what fortio reached.
	QPS      float64 `json:"qps"`
	Achieved float64 `json:"achieved_qps"`
	// Requests were answered in the window (any status); Errors are the
	// answers other than 200 and the failed requests.
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Codes    string  `json:"codes"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	// ProxyCPU and MixerCPU are CPU seconds in the window (the path's
	// proxy processes; the mixer, for the sidemix paths); per 1k is per
	// 1,000 requests, which is also cores per 1,000 requests/s.
	ProxyCPU      float64 `json:"proxy_cpu_s"`
	MixerCPU      float64 `json:"mixer_cpu_s"`
	ProxyCPUPer1k float64 `json:"proxy_cpu_s_per_1k"`
	// ProxyCPUPer1kEach splits ProxyCPUPer1k by proxy process when the
	// path has several (sidemix_2: outbound, inbound).
	ProxyCPUPer1kEach []float64 `json:"proxy_cpu_s_per_1k_each,omitempty"`
	MixerCPUPer1k     float64   `json:"mixer_cpu_s_per_1k"`
	// ProxyCores is ProxyCPU over the window: near the cores the proxy may
	// use, the proxy bounded Achieved.
	ProxyCores float64 `json:"proxy_cores"`
}

func (r Run) String() string {
	return fmt.Sprintf("%-9s qps %6.0f/%6.0f  p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f ms  proxy %.4f mixer %.4f cpu-s/1k  errors %d",
		r.Path, r.QPS, r.Achieved, r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.ProxyCPUPer1k, r.MixerCPUPer1k, r.Errors)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// measure warms p up, then drives it at qps for the suite's Duration,
// reading the proxies' and mixer's CPU at the window's edges.
func (s *Suite) measure(ctx context.Context, p *path, mixerPid int, qps float64, conns int) (Run, error) {
	if _, err := fortioRun(ctx, p.t, qps, conns, s.payload, s.opts.Warmup); err != nil {
		return Run{}, err
	}
	pids := p.pids()
	each0, err := cpuEach(pids)
	if err != nil {
		return Run{}, fmt.Errorf("%s: %v", p.name, err)
	}
	var m0, m1 time.Duration
	if mixerPid > 0 {
		if m0, err = treeCPU(mixerPid); err != nil {
			return Run{}, err
		}
	}
	t0 := time.Now()
	res, err := fortioRun(ctx, p.t, qps, conns, s.payload, s.opts.Duration)
	if err != nil {
		return Run{}, err
	}
	wall := time.Since(t0)
	each1, err := cpuEach(pids)
	if err != nil {
		return Run{}, fmt.Errorf("%s: %v", p.name, err)
	}
	var c0, c1 time.Duration
	for i := range pids {
		c0, c1 = c0+each0[i], c1+each1[i]
	}
	if mixerPid > 0 {
		if m1, err = treeCPU(mixerPid); err != nil {
			return Run{}, err
		}
	}
	r := Run{Path: p.name, QPS: max(qps, 0), Achieved: res.achieved, Requests: res.ok + res.errors, Errors: res.errors,
		Codes: codeSummary(res.codes), P50Ms: ms(res.latency.Quantile(0.5)), P90Ms: ms(res.latency.Quantile(0.9)),
		P99Ms: ms(res.latency.Quantile(0.99)), P999Ms: ms(res.latency.Quantile(0.999)), MaxMs: ms(res.latency.Max()),
		ProxyCPU: (c1 - c0).Seconds(), MixerCPU: (m1 - m0).Seconds()}
	if r.Requests > 0 {
		k := float64(r.Requests) / 1000
		r.ProxyCPUPer1k, r.MixerCPUPer1k = r.ProxyCPU/k, r.MixerCPU/k
		if len(pids) > 1 {
			for i := range pids {
				r.ProxyCPUPer1kEach = append(r.ProxyCPUPer1kEach, (each1[i]-each0[i]).Seconds()/k)
			}
		}
	}
	r.ProxyCores = r.ProxyCPU / wall.Seconds()
	if r.Requests == 0 {
		return r, fmt.Errorf("%s: no request answered (%s)", p.name, r.Codes)
	}
	return r, nil
}

func (s *Suite) mixerPid(name string) int {
	if slices.Contains(sidemixPaths, name) {
		return s.main.mixer.Pid()
	}
	return 0
}

// Latency runs one round of the latency set-up: every path in turn at the
// suite's QPS.
func (s *Suite) Latency(ctx context.Context, round int) ([]Run, error) {
	var out []Run
	for _, name := range allPaths {
		p := s.paths[name]
		if p == nil {
			continue
		}
		if round == 0 {
			if err := s.waitAnswers(ctx, p); err != nil {
				return nil, err
			}
		}
		r, err := s.measure(ctx, p, s.mixerPid(name), float64(s.opts.QPS), s.opts.Conns)
		if err != nil {
			return nil, err
		}
		r.Round = round
		s.logf("round %d  %s", round+1, r)
		out = append(out, r)
	}
	return out, nil
}

// PeakRSS is each path's peak resident set (VmHWM summed over its proxy
// processes), in MB.
func (s *Suite) PeakRSS() (map[string]float64, error) {
	out := map[string]float64{}
	for name, p := range s.paths {
		var total int64
		for _, pid := range p.pids() {
			n, err := treePeakRSS(pid)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			total += n
		}
		out[name] = float64(total) / (1 << 20)
	}
	return out, nil
}

// MixerPeakRSS is the mixer's VmHWM in MB.
func (s *Suite) MixerPeakRSS() float64 {
	n, _ := treePeakRSS(s.main.mixer.Pid())
	return float64(n) / (1 << 20)
}

// ScalingPaths are the paths the scaling runs step through.
var ScalingPaths = []string{Direct, Sidemix1, Nginx}

// Scaling runs direct, sidemix_1 and nginx at each rate in turn (rate by
// rate, paths interleaved); a path that falls short of a rate by more than
// 10% is saturated and not driven at the higher rates.
func (s *Suite) Scaling(ctx context.Context, rates []int) ([]Run, error) {
	slices.Sort(rates)
	saturated := map[string]bool{}
	var out []Run
	for _, rate := range rates {
		for _, name := range ScalingPaths {
			p := s.paths[name]
			if p == nil || saturated[name] {
				continue
			}
			r, err := s.measure(ctx, p, s.mixerPid(name), float64(rate), s.opts.Conns)
			if err != nil {
				return nil, err
			}
			s.logf("scaling %5d/s  %s", rate, r)
			out = append(out, r)
			if r.Achieved < 0.9*float64(rate) {
				saturated[name] = true
			}
		}
	}
	return out, nil
}

// CeilingPaths are the proxies the ceiling runs pin to one core.
var CeilingPaths = []string{Sidemix1, Nginx, HAProxy}

// Ceiling measures the most requests/s one proxy of path name passes,
// pinned to the suite's ProxyCPU with one worker (GOMAXPROCS=1, one nginx
// worker, one haproxy thread), the app and a mixer of its own on
// OtherCPUs; fortio drives it closed-loop over the suite's connections.
func (s *Suite) Ceiling(ctx context.Context, name string) (Run, error) {
	b, err := s.startBackend("ceiling-"+name, s.opts.OtherCPUs, nil)
	if err != nil {
		return Run{}, err
	}
	defer b.stop()
	p, err := s.startPath(name, b, s.opts.ProxyCPU, 1)
	if err != nil {
		return Run{}, err
	}
	if p == nil {
		return Run{}, fmt.Errorf("meshbench: no binary for %s", name)
	}
	defer p.stop()
	if err := s.waitAnswers(ctx, p); err != nil {
		return Run{}, err
	}
	mixerPid := 0
	if name == Sidemix1 {
		mixerPid = b.mixer.Pid()
	}
	r, err := s.measure(ctx, p, mixerPid, 0, s.opts.Conns)
	if err != nil {
		return Run{}, err
	}
	s.logf("ceiling   %s  (proxy cores %.2f)", r, r.ProxyCores)
	return r, nil
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
