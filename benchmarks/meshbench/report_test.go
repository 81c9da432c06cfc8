package meshbench

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func runOf(path string, p90, cpu, mixer float64) Run {
	return Run{Path: path, Requests: 1000, P50Ms: p90 / 2, P90Ms: p90, P99Ms: p90 * 2, P999Ms: p90 * 3, ProxyCPUPer1k: cpu, MixerCPUPer1k: mixer}
}

func TestReportMediansSummaryAndGoals(t *testing.T) {
	rounds := [][]Run{
		{runOf(Direct, 0.5, 0, 0), runOf(Sidemix1, 0.7, 0.04, 0.005), runOf(Sidemix2, 0.9, 0.08, 0.02), runOf(Nginx, 0.6, 0.02, 0)},
		{runOf(Direct, 0.4, 0, 0), runOf(Sidemix1, 0.9, 0.06, 0.005), runOf(Sidemix2, 1.9, 0.08, 0.02), runOf(Nginx, 0.6, 0.02, 0)},
		{runOf(Direct, 0.6, 0, 0), runOf(Sidemix1, 0.8, 0.05, 0.005), runOf(Sidemix2, 0.6, 0.08, 0.02), runOf(Nginx, 0.9, 0.02, 0)},
	}
	rep := NewReport(Meta{Rounds: 3}, rounds, map[string]float64{Sidemix1: 20, Sidemix2: 41, Nginx: 5}, nil, nil, nil)
	if m := rep.Median[Sidemix2]; m.P90Ms != 0.9 || m.Requests != 3000 {
		t.Errorf("sidemix_2 median %+v", m)
	}
	js, err := json.Marshal(rep.Summary())
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]map[string]float64
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		t.Fatal(err)
	}
	keys := sortedKeys(top)
	if want := []string{Direct, "mixer_cpu_s_per_1k", Nginx, Sidemix1, Sidemix2}; !slices.Equal(keys, want) {
		t.Errorf("summary keys %v, want %v", keys, want)
	}
	delete(top, "mixer_cpu_s_per_1k")
	b, _ := json.Marshal(top)
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if got := sortedKeys(raw[Sidemix1]); !slices.Equal(got, []string{"cpu_s_per_1k", "p50_ms", "p90_ms", "p99_ms", "rss_mb"}) {
		t.Errorf("path fields %v", got)
	}
	if raw[Sidemix1]["p90_ms"] != 0.8 || raw[Sidemix1]["rss_mb"] != 20 || raw[Sidemix1]["cpu_s_per_1k"] != 0.05 {
		t.Errorf("sidemix_1 %v", raw[Sidemix1])
	}
	var back Summary
	if err := json.Unmarshal(js, &back); err != nil || back.MixerCPUPer1k != 0.02 || back.Paths[Nginx].P90Ms != 0.6 {
		t.Errorf("round trip %+v, %v", back, err)
	}

	goals := rep.Goals()
	want := []struct {
		met   bool
		value string
	}{
		{false, "0.400 ms"}, // 0.9 - 0.5
		{true, "0.050 vCPU"},
		{false, "0.020 vCPU"},
		{true, "20.0 MB"},
		{false, "3.00×"}, // (0.8-0.5)/(0.6-0.5)
	}
	for i, g := range goals {
		if !g.Known || g.Met != want[i].met || !strings.HasPrefix(g.Value, want[i].value) {
			t.Errorf("goal %d %q: %+v", i, g.Measure, g)
		}
	}
	if !strings.Contains(goals[0].By, "missed by 0.15 ms") {
		t.Errorf("by %q", goals[0].By)
	}
	md := rep.Markdown("results/latest/")
	if !strings.Contains(md, "| sidemix_2 | 0.450 | 0.900 |") || !strings.Contains(md, "](results/latest/latency.png)") {
		t.Errorf("markdown:\n%s", md)
	}
}

// TestRoutingCost: the routed path's cost is its added latency and CPU in
// percent of the plain outbound sidecar's, under "routing" in the summary,
// with a verdict against the 10% target.
func TestRoutingCost(t *testing.T) {
	rounds := [][]Run{{runOf(Direct, 0.5, 0, 0), runOf(SidemixOut, 1.5, 0.10, 0.01), runOf(SidemixRouted, 1.55, 0.12, 0.01)}}
	rep := NewReport(Meta{Rounds: 1}, rounds, map[string]float64{SidemixOut: 20, SidemixRouted: 22}, nil, nil, nil)
	c, ok := rep.RoutingCost()
	// added p90: 1.05 vs 1.0 ms (+5%); p50: 0.525 vs 0.5 (+5%); CPU 0.12 vs 0.10 (+20%).
	if !ok || c.AddedP90Pct < 4.99 || c.AddedP90Pct > 5.01 || c.CPUPct < 19.99 || c.CPUPct > 20.01 {
		t.Fatalf("cost %+v, %v", c, ok)
	}
	goals := rep.RoutingGoals()
	if !goals[0].Met || goals[2].Met || !strings.Contains(goals[2].By, "missed by 10 points") {
		t.Errorf("goals %+v", goals)
	}
	js, err := json.Marshal(rep.Summary())
	if err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Paths) != 1 || back.Routing == nil || back.Routing.Routed.RSSMB != 22 || back.Routing.CPUPct != 20 {
		t.Errorf("summary %s read back as %+v (routing %+v)", js, back, back.Routing)
	}
	md := rep.Markdown("")
	for _, want := range []string{"| sidemix_out_routed | 0.775 | 1.550 |", "**Routing** (issue 6)", "| routing: proxy CPU per 1,000 requests |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	delete(rep.Median, SidemixOut)
	if _, ok := rep.RoutingCost(); ok || rep.Summary().Routing != nil || strings.Contains(rep.Markdown(""), "**Routing**") {
		t.Error("routing cost without the plain path")
	}
}

func TestTreeCPUCountsChildren(t *testing.T) {
	// A shell whose child burns CPU: the parent itself uses almost none.
	cmd := exec.Command("/bin/sh", "-c", "sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 30' & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range children(cmd.Process.Pid) {
			p, _ := os.FindProcess(c)
			_ = p.Kill()
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tree, err := treeCPU(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		own, err := statFields(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if tree >= 200*time.Millisecond && tree > time.Duration(own[11]+own[12])*clockTick {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree CPU %v never counted the child (children %v)", tree, children(cmd.Process.Pid))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rss, err := treePeakRSS(cmd.Process.Pid); err != nil || rss <= 0 {
		t.Errorf("peak RSS %d, %v", rss, err)
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4000: "-4,000"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}
