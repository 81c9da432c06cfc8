package policy_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// reportBag is a request as an inbound sidecar reports it, sampled, with
// the attributes benchmarks/reportbench sends.
func reportBag(k int) *attribute.Bag {
	start := time.Unix(1_700_000_000, 0).Add(time.Duration(k) * time.Millisecond)
	path := fmt.Sprintf("/api/orders/%d", 1000+k%500)
	return attribute.NewBuilder(48).
		SetString(attribute.ContextReporterKind, "inbound").
		SetString(attribute.ContextReporterUID, "kubernetes://web-7d9f8-abcde.default").
		SetTime(attribute.ContextTime, start).
		SetBool(attribute.ConnectionMTLS, true).
		SetString(attribute.ContextProtocol, "http").
		SetString(attribute.DestinationWorkloadName, "web").
		SetString(attribute.DestinationWorkloadNamespace, "default").
		SetString(attribute.DestinationWorkloadUID, "kubernetes://web-7d9f8-abcde.default").
		SetString(attribute.DestinationUID, "kubernetes://web-7d9f8-abcde.default").
		SetString(attribute.DestinationServiceName, "web").
		SetString(attribute.DestinationServiceNamespace, "default").
		SetString(attribute.DestinationServiceHost, "web.default.svc.cluster.local").
		SetString(attribute.DestinationName, "web").
		SetString(attribute.DestinationNamespace, "default").
		SetString(attribute.DestinationPrincipal, "cluster.local/ns/default/sa/web").
		SetString(attribute.SourceWorkloadName, "shop").
		SetString(attribute.SourceName, "shop").
		SetString(attribute.SourceWorkloadNamespace, "default").
		SetString(attribute.SourceNamespace, "default").
		SetString(attribute.SourcePrincipal, "cluster.local/ns/default/sa/shop").
		SetIP(attribute.SourceIP, netip.MustParseAddr("10.0.3.17")).
		SetString(attribute.RequestID, fmt.Sprintf("7b1d3c52-0e4f-4a8b-9c6d-%012d", k)).
		SetString(attribute.RequestPath, path+"?expand=items").
		SetString(attribute.RequestURLPath, path).
		SetString(attribute.RequestHost, "web:8080").
		SetString(attribute.RequestMethod, "GET").
		SetString(attribute.RequestScheme, "http").
		SetString(attribute.RequestUserAgent, "shop/2.3 (go-http-client)").
		SetInt64(attribute.RequestSize, 0).
		SetTime(attribute.RequestTime, start).
		SetInt64(attribute.ResponseCode, 200).
		SetInt64(attribute.ResponseSize, 1200+int64(k%300)).
		SetInt64(attribute.ResponseTotalSize, 1400+int64(k%300)).
		SetDuration(attribute.ResponseDuration, time.Duration(2+k%20)*time.Millisecond).
		SetTime(attribute.ResponseTime, start.Add(time.Duration(2+k%20)*time.Millisecond)).
		SetString(attribute.ContextProxyErrorCode, "-").
		SetString(attribute.RequestTraceID, fmt.Sprintf("%032x", uint64(k)+1)).
		SetString(attribute.RequestSpanID, fmt.Sprintf("%016x", uint64(k)*2+1)).
		SetBool(attribute.RequestTraceSampled, true).
		Build()
}

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
	for _, mode := range []string{"each", "sequence"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				seq, err := attribute.DefaultDictionary().DecodeBatchChanges(req, true)
				if err != nil {
					b.Fatal(err)
				}
				q := s.NewSequence(policy.VarietyReport)
				for bag, changed := range seq {
					if mode == "each" {
						s.Evaluate(bag, policy.VarietyReport, nil)
					} else {
						q.Evaluate(bag, changed)
					}
				}
				q.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bags)), "ns/bag")
		})
	}
}
