package reportbench

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/sidemix/sidemix/benchmarks/internal/procstat"
)

func TestScrapeSumsMatchingCounters(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`# HELP sidemix_kafka_records_total x
sidemix_kafka_records_total{handler="a",result="sent"} 10
sidemix_kafka_records_total{handler="b",result="sent"} 5
sidemix_kafka_records_total{handler="a",result="too_large"} 2
sidemix_kafka_records_total{handler="a",result="shutdown"} 1
sidemix_mixer_report_instances_dropped_total{handler="jaeger"} 7
`))
	}))
	defer srv.Close()
	got := scrape(srv.URL, map[string]*regexp.Regexp{
		"sent":    regexp.MustCompile(`^sidemix_kafka_records_total\{.*result="sent".*\} (\S+)`),
		"dropped": regexp.MustCompile(`^sidemix_kafka_records_total\{.*result="(?:[^s]|s[^e])[^"]*".*\} (\S+)`),
		"queue":   regexp.MustCompile(`^sidemix_mixer_report_instances_dropped_total\S* (\S+)`),
	})
	want := map[string]float64{"sent": 15, "dropped": 3, "queue": 7}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func TestReportMediansAndTargets(t *testing.T) {
	round := func(vcpu, sidemix, otel float64) []Measurement {
		return []Measurement{
			{Scenario: "report-fixed", VCPU: vcpu, PerCPUSecond: 1000},
			{Scenario: "spans-sidemix", PerCPUSecond: sidemix},
			{Scenario: "spans-otelcol", PerCPUSecond: otel},
		}
	}
	r := NewReport(Meta{MeshRate: 1000, Rounds: 3}, [][]Measurement{
		round(0.2, 100, 100), round(0.005, 600, 100), round(0.008, 700, 100),
	})
	md := r.Markdown()
	for _, want := range []string{"0.0080 vCPU per 1,000 rps | met", "600 vs 100: 6.00× | met"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	r = NewReport(Meta{MeshRate: 1000}, [][]Measurement{{{Scenario: "spans-sidemix", PerCPUSecond: 5}, {Scenario: "spans-otelcol", Skipped: "no collector"}}})
	if md := r.Markdown(); !strings.Contains(md, "collector not run | not compared") || !strings.Contains(md, "skipped: no collector") {
		t.Errorf("a skipped collector is not said:\n%s", md)
	}
}

// TestReportSaysCPUFallback: a round whose CPU was read by a fallback
// meter is named in the report, rounds read by the clock are not.
func TestReportSaysCPUFallback(t *testing.T) {
	clock := string(procstat.Clock)
	r := NewReport(Meta{MeshRate: 1000}, [][]Measurement{
		{{Scenario: "report-fixed", CPUMeter: clock}, {Scenario: "spans-sidemix", CPUMeter: clock}},
		{{Scenario: "report-fixed", CPUMeter: "ticks: thread 7 ended"}, {Scenario: "spans-sidemix", CPUMeter: clock}},
	})
	md := r.Markdown()
	if !strings.Contains(md, "report-fixed's in a round by ticks: thread 7 ended") {
		t.Errorf("the fallback is not said:\n%s", md)
	}
	if strings.Contains(md, "spans-sidemix's in a round") {
		t.Errorf("a clock-read scenario is said to fall back:\n%s", md)
	}
}
