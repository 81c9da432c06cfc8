package attribute_test

import (
	"testing"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/attribute/attrtest"
)

// BenchmarkDecodeReport decodes Report batches as benchmarks/reportbench's
// report-fixed sends them (1000 bags of attrtest.Requests, delta-encoded,
// outbound and inbound in turn): the request's bytes into a pooled
// message, then the bags one at a time with what each changed, each
// checked against the manifest (DecodeBatchChecked), as the mixer's
// Report does; per bag.
func BenchmarkDecodeReport(b *testing.B) {
	const batch = 1000
	var bodies [][]byte
	for w := range 2 {
		enc := attribute.NewEncoder(attribute.DefaultDictionary())
		body, err := enc.EncodeBatch(attrtest.Requests(batch, w, w%2 == 0, 1)).MarshalVT()
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	d, m := attribute.DefaultDictionary(), attribute.DefaultManifest()
	b.ReportAllocs()
	i, n := 0, 0
	for b.Loop() {
		req := mixerv1.ReportRequestFromVTPool()
		if err := req.UnmarshalVT(bodies[i%len(bodies)]); err != nil {
			b.Fatal(err)
		}
		i++
		seq, err := d.DecodeBatchChecked(req, m)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range seq {
			if c.Err != nil {
				b.Fatal(c.Err)
			}
			n += len(c.Names)
		}
		req.ReturnToVTPool()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/bag")
	b.ReportMetric(float64(n)/float64(b.N*batch), "changes/bag")
}

// BenchmarkDecodeReportBags is BenchmarkDecodeReport without the
// unmarshalling: the bags of requests decoded once, each bag checked
// against the manifest; per bag.
func BenchmarkDecodeReportBags(b *testing.B) {
	const batch = 1000
	var reqs []*mixerv1.ReportRequest
	for w := range 2 {
		enc := attribute.NewEncoder(attribute.DefaultDictionary())
		reqs = append(reqs, enc.EncodeBatch(attrtest.Requests(batch, w, w%2 == 0, 1)))
	}
	d, m := attribute.DefaultDictionary(), attribute.DefaultManifest()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		seq, err := d.DecodeBatchChecked(reqs[i%len(reqs)], m)
		if err != nil {
			b.Fatal(err)
		}
		i++
		for _, c := range seq {
			if c.Err != nil {
				b.Fatal(c.Err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/bag")
}
