package mixer

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/attribute/attrtest"
	"github.com/sidemix/sidemix/internal/vtcodec"
)

// BenchmarkReportRequestDecode decodes a Report of 1000 bags as
// benchmarks/reportbench sends them, into a fresh message (what gRPC's
// generated handler did), into a pooled one, and into a pooled one with
// its words copied into shared arrays (reportHandler's reportBody); per
// bag.
func BenchmarkReportRequestDecode(b *testing.B) {
	req := attribute.NewEncoder(attribute.DefaultDictionary()).EncodeBatch(attrtest.Requests(1000, 0, false, 1))
	body, err := req.MarshalVT()
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"fresh", "pooled", "body"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := new(mixerv1.ReportRequest)
				if mode != "fresh" {
					m = mixerv1.ReportRequestFromVTPool()
				}
				var err error
				if mode == "body" {
					err = (&reportBody{ReportRequest: m}).UnmarshalVT(body)
				} else {
					err = m.UnmarshalVT(body)
				}
				if err != nil {
					b.Fatal(err)
				}
				if len(m.Attributes) != 1000 {
					b.Fatalf("%d bags", len(m.Attributes))
				}
				if mode != "fresh" {
					m.ReturnToVTPool()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/bag")
		})
	}
}

// TestReportBodyCopiesWords: a request decoded by reportBody keeps its
// words and bytes when the body it was decoded from is reused, as gRPC
// reuses its buffers, and decodes to the bags sent.
func TestReportBodyCopiesWords(t *testing.T) {
	d := attribute.DefaultDictionary()
	bags := attrtest.Requests(50, 3, true, 1)
	long := strings.Repeat("x", reportArena) // a word longer than an array
	bags[7] = bags[7].Builder().SetString(attribute.RequestPath, long).SetBytes("custom.raw", []byte{1, 2, 3}).Build()
	req := attribute.NewEncoder(d).EncodeBatch(bags)
	own := attribute.NewEncoder(d)
	req.Attributes[9] = own.EncodeDelta(bags[8], bags[9])
	req.Attributes[9].Words = own.Words()
	body, err := req.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	m := mixerv1.ReportRequestFromVTPool()
	defer m.ReturnToVTPool()
	if err := (&reportBody{ReportRequest: m}).UnmarshalVT(body); err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 0xee
	}
	got, err := d.DecodeBatch(m)
	if err != nil {
		t.Fatal(err)
	}
	for i := range bags {
		if got[i].Dump() != bags[i].Dump() {
			t.Fatalf("bag %d:\n%s\nwant\n%s", i, got[i].Dump(), bags[i].Dump())
		}
	}
	if err := (&reportBody{ReportRequest: m}).UnmarshalVT(body[:len(body)-1]); err == nil {
		t.Error("a truncated body decoded")
	}
}

// BenchmarkReportNoRules is a Report of report-fixed's batches (1000 bags
// of attrtest.Requests, delta-encoded, outbound and inbound in turn)
// through the Report handler, from the request's bytes, on a config
// without rules: what the mixer does for a bag besides evaluating it
// (unmarshalling, copying and checking words, checking and decoding the
// bags, giving the request back to the pool); per bag.
func BenchmarkReportNoRules(b *testing.B) {
	srv, err := New(Config{ConfigPaths: []string{b.TempDir()}, Adapters: testRegistry(b),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	g := &service{s: srv}
	const batch = 1000
	var bodies [][]byte
	for w := range 2 {
		body, err := attribute.NewEncoder(attribute.DefaultDictionary()).EncodeBatch(attrtest.Requests(batch, w, w%2 == 0, 1)).MarshalVT()
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		body := bodies[i%len(bodies)]
		i++
		if _, err := g.reportHandler(nil, ctx, func(m any) error { return m.(vtcodec.Message).UnmarshalVT(body) }, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/bag")
}
