package reportbench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// TestSmoke runs the report-path and OTLP-span scenarios for about a second
// each, unpinned, against a kfake broker (no Jaeger, no collector build), so
// the harness cannot rot: it asserts that records went through and reached
// Kafka, never how fast.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sidemix and a kfake broker")
	}
	bin := testenv.BuildSidemix(t)
	kafka := testenv.StartKafka(t, "sidemix.accesslog", "sidemix.spans")
	s, err := New(Options{
		BrokerAddr: kafka.Addr(),
		Sidemix:    bin,
		Examples:   filepath.Join(testenv.ModuleRoot(t), "examples", "default"),
		WorkDir:    t.TempDir(),
		Warmup:     300 * time.Millisecond,
		Duration:   time.Second,
		MeshRate:   200,
		Batch:      100,
		SpanBatch:  100,
		SpanRate:   5000,
		Log:        testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var ms []Measurement
	for _, name := range Scenarios {
		m, err := s.Run(context.Background(), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ms = append(ms, m)
		if strings.HasPrefix(name, "spans-otelcol") {
			if m.Skipped == "" {
				t.Errorf("%s ran without a collector binary", name)
			}
			continue
		}
		// CPU is read in clock ticks (10 ms): the fixed-rate runs' 200
		// mesh rps for a second may cost the mixer less than one.
		if m.Items == 0 || m.CPU < 0 || (m.CPU > 0) != (m.PerCPUSecond > 0) || m.Errors != 0 {
			t.Errorf("%s: nothing measured: %+v", name, m)
		}
		switch {
		case strings.HasPrefix(name, "report-default"):
			// examples/default as shipped has no kafka rule.
			if m.Delivered >= 0 {
				t.Errorf("%s: the kafka rule is on: %+v", name, m)
			}
		case m.Delivered <= 0:
			t.Errorf("%s: no record reached Kafka in the window: %+v", name, m)
		case m.Shortfall != 0:
			// Delivery is waited for after the window: everything
			// accepted in it is delivered before the CPU is read.
			t.Errorf("%s: shortfall %d after the drain: %+v", name, m.Shortfall, m)
		}
	}
	md := NewReport(Meta{Rounds: 1}, [][]Measurement{ms}).Markdown()
	if !strings.Contains(md, "report-fixed") || !strings.Contains(md, "spans-sidemix") {
		t.Errorf("report lacks the scenarios:\n%s", md)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
