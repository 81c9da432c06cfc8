package attribute_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/attribute/attrtest"
)

// BenchmarkUnmarshalReportRequest decodes the wire form of a batch of 1000
// requests as benchmarks/reportbench sends them, with proto.Unmarshal and
// with UnmarshalReportRequest; per bag.
func BenchmarkUnmarshalReportRequest(b *testing.B) {
	req := attribute.NewEncoder(attribute.DefaultDictionary()).EncodeBatch(attrtest.Requests(1000, 0, false, 1))
	wire, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		unmarshal func([]byte, *mixerv1.ReportRequest) error
	}{
		{"proto", func(w []byte, r *mixerv1.ReportRequest) error { return proto.Unmarshal(w, r) }},
		{"attribute", attribute.UnmarshalReportRequest},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var r mixerv1.ReportRequest
				if err := c.unmarshal(wire, &r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(req.Attributes)), "ns/bag")
		})
	}
}
