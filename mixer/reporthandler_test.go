package mixer

import (
	"testing"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/attribute/attrtest"
)

// BenchmarkReportRequestDecode decodes a Report of 1000 bags as
// benchmarks/reportbench sends them, into a fresh message (what gRPC's
// generated handler did) and into a pooled one (reportHandler); per bag.
func BenchmarkReportRequestDecode(b *testing.B) {
	req := attribute.NewEncoder(attribute.DefaultDictionary()).EncodeBatch(attrtest.Requests(1000, 0, false, 1))
	body, err := req.MarshalVT()
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"fresh", "pooled"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := new(mixerv1.ReportRequest)
				if mode == "pooled" {
					m = mixerv1.ReportRequestFromVTPool()
				}
				if err := m.UnmarshalVT(body); err != nil {
					b.Fatal(err)
				}
				if len(m.Attributes) != 1000 {
					b.Fatalf("%d bags", len(m.Attributes))
				}
				if mode == "pooled" {
					m.ReturnToVTPool()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/bag")
		})
	}
}
