package policybench

import (
	"strings"
	"testing"
)

func TestMediansAndComparison(t *testing.T) {
	round := func(sm, rl, smCPU, rlCPU float64) []Measurement {
		return []Measurement{
			{Scenario: "check-1", Group: GroupCheck, Detail: "1 rules", Rate: sm, P99Ms: 1, PerCPUSecond: smCPU, Outcomes: "OK 100.0%"},
			{Scenario: "quota-sidemix-fixed", Group: GroupQuota, Server: "sidemix", Rate: sm, P99Ms: 2, PerCPUSecond: smCPU},
			{Scenario: "quota-ratelimit", Group: GroupQuota, Server: "ratelimit", Rate: rl, P99Ms: 4, PerCPUSecond: rlCPU},
			{Scenario: "prefetch-on", Group: GroupPrefetch, Detail: "--quota-prefetch-max 100", Skipped: "no flag"},
		}
	}
	rep := NewReport(Meta{Rounds: 3}, [][]Measurement{
		round(100, 50, 1000, 400),
		round(300, 60, 3000, 500), // an outlier round: the median ignores it
		round(200, 40, 2000, 450),
	})
	if len(rep.Medians) != 4 {
		t.Fatalf("medians: %+v", rep.Medians)
	}
	if m := rep.Medians[0]; m.Rate != 200 || m.PerCPUSecond != 2000 {
		t.Errorf("check-1 median: %+v", m)
	}
	if m := rep.Medians[3]; m.Skipped == "" {
		t.Errorf("a scenario skipped in every round stays skipped: %+v", m)
	}
	cs := rep.Compare()
	if len(cs) != 1 {
		t.Fatalf("comparisons: %+v", cs)
	}
	c := cs[0]
	// Round ratios per CPU-second: 2.5, 6, 4.44; of rates: 2, 5, 5.
	if c.Rate != 5 || c.PerCPUSecond != 2000.0/450 || c.P99 != 0.5 || !c.Met || len(c.PerRound) != 3 {
		t.Errorf("comparison: %+v", c)
	}
	md := rep.Markdown()
	for _, want := range []string{"| 1 | 200 |", "| granting, closed loop | 5.00× | 4.44×", "| met |", "skipped: no flag"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -12345: "-12,345"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestCPUCount(t *testing.T) {
	for list, want := range map[string]int{"0": 1, "0,1": 2, "0-3": 4, "0,2-3": 3} {
		if got := cpuCount(list); got != want {
			t.Errorf("cpuCount(%q) = %d, want %d", list, got, want)
		}
	}
}
