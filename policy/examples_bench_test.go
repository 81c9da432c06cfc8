package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sidemix/sidemix/attribute/attrtest"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/accesslog"
	"github.com/sidemix/sidemix/adapters/jaeger"
	"github.com/sidemix/sidemix/adapters/kafka"
	"github.com/sidemix/sidemix/adapters/prometheus"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/policy"
)

// examplesDefault loads ../examples/default with its kafka rule switched
// on, as the report benchmarks (benchmarks/reportbench) run it.
func examplesDefault(tb testing.TB) *policy.Snapshot {
	tb.Helper()
	dir := filepath.Join("..", "examples", "default")
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		if e.Name() == "kafka.yaml" {
			_, rest, ok := strings.Cut(string(b), "---- uncomment below")
			if !ok {
				tb.Fatal("kafka.yaml: no uncomment marker")
			}
			_, rest, _ = strings.Cut(rest, "\n")
			b = []byte(strings.ReplaceAll("\n"+rest, "\n#", "\n"))
		}
		files[e.Name()] = b
	}
	reg, err := adapters.NewRegistry(prometheus.Factory(), accesslog.Factory(), jaeger.Factory(), kafka.Factory())
	if err != nil {
		tb.Fatal(err)
	}
	s, err := policy.LoadSources(files, policy.Options{Adapters: reg})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// reportBag is request k as an inbound sidecar reports it, sampled, with
// the attributes benchmarks/reportbench sends.
func reportBag(k int) *attribute.Bag { return attrtest.Requests(1, k, false, 1)[0] }

// BenchmarkEvaluateExamplesDefault evaluates examples/default's report
// rules (four Istio metrics, the access log, kafka, tracing) for a request
// as the report path does, per bag.
func BenchmarkEvaluateExamplesDefault(b *testing.B) {
	s := examplesDefault(b)
	bags := make([]*attribute.Bag, 1000)
	for i := range bags {
		bags[i] = reportBag(i)
	}
	if res := s.Evaluate(bags[0], policy.VarietyReport, nil); len(res.Errors) > 0 || len(res.Actions) != 4 {
		b.Fatalf("actions %d, errors %v", len(res.Actions), res.Errors)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Evaluate(bags[i%len(bags)], policy.VarietyReport, nil)
		i++
	}
}

// BenchmarkEvaluateExamplesDefaultBatch evaluates a decoded batch of 1000
// such requests as the mixer's Report does, each bag alone (each) or as
// a Sequence told what each bag changed (sequence); per bag.
func BenchmarkEvaluateExamplesDefaultBatch(b *testing.B) {
	s := examplesDefault(b)
	bags := make([]*attribute.Bag, 1000)
	for i := range bags {
		bags[i] = reportBag(i)
	}
	req := attribute.NewEncoder(attribute.DefaultDictionary()).EncodeBatch(bags)
	for _, mode := range []string{"decode", "each", "sequence"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				seq, err := attribute.DefaultDictionary().DecodeBatchChanges(req, true)
				if err != nil {
					b.Fatal(err)
				}
				q := s.NewSequence(policy.VarietyReport)
				for bag, changed := range seq {
					switch mode {
					case "decode":
					case "each":
						s.Evaluate(bag, policy.VarietyReport, nil)
					default:
						q.Evaluate(bag, changed)
					}
				}
				q.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bags)), "ns/bag")
			// The process's CPU (the GC's workers too), which a busy
			// machine disturbs less than the elapsed time.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N*len(bags)), "cpu-ns/bag")
		})
	}
}

// processCPU is the CPU time the process used so far, user and system.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
