package mixer

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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
	g := noRulesService(b)
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

// reportBodySeeds are Report bodies for FuzzReportBody and
// TestReportRefusesMalformedBatch: a good batch, one with a bag of its
// own words, and malformed ones of every kind the checks find.
func reportBodySeeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	d := attribute.DefaultDictionary()
	enc := func(mod func(*mixerv1.ReportRequest)) []byte {
		req := attribute.NewEncoder(d).EncodeBatch(attrtest.Requests(4, 0, true, 1))
		if mod != nil {
			mod(req)
		}
		b, err := req.MarshalVT()
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	return map[string][]byte{
		"good": enc(nil),
		"own words": enc(func(r *mixerv1.ReportRequest) {
			// The batch's words and one more: its indices stay valid.
			r.Attributes[2].Words = append(slices.Clone(r.DefaultWords), "w")
			r.Attributes[2].StringNames = append(r.Attributes[2].StringNames, 0)
			r.Attributes[2].StringValues = append(r.Attributes[2].StringValues, -int32(len(r.Attributes[2].Words)))
		}),
		"word out of range": enc(func(r *mixerv1.ReportRequest) {
			r.Attributes[1].StringNames = append(r.Attributes[1].StringNames, int32(d.Len())+3)
			r.Attributes[1].StringValues = append(r.Attributes[1].StringValues, 0)
		}),
		"names without values": enc(func(r *mixerv1.ReportRequest) {
			r.Attributes[3].Int64Names = append(r.Attributes[3].Int64Names, 0)
		}),
		"map without values": enc(func(r *mixerv1.ReportRequest) {
			r.Attributes[2].StringMapNames = append(r.Attributes[2].StringMapNames, 0)
			r.Attributes[2].StringMapValues = append(r.Attributes[2].StringMapValues, &mixerv1.StringMap{Keys: []int32{0}})
		}),
		"newer dictionary": enc(func(r *mixerv1.ReportRequest) { r.GlobalWordCount = uint32(d.Len()) + 1 }),
		"not UTF-8 and malformed": enc(func(r *mixerv1.ReportRequest) {
			r.DefaultWords = append(r.DefaultWords, "\xff")
			r.Attributes[0].Deleted = append(r.Attributes[0].Deleted, -1000)
		}),
	}
}

// checkReportBody checks that reportBody decodes raw as the generated
// decoder does, its words copied (raw's bytes are overwritten once it
// returns, as gRPC reuses its buffers), and says of its words what
// reportRequestUTF8 says of the request decoded that way; it returns the
// error Report answers with (the words' or, as d's DecodeBatchChecked
// says, the bags'), "" for none.
func checkReportBody(t *testing.T, d *attribute.Dictionary, m *mixerv1.ReportRequest, raw []byte) string {
	t.Helper()
	want := new(mixerv1.ReportRequest)
	werr := want.UnmarshalVT(raw)
	body := &reportBody{ReportRequest: m}
	// The codec's buffer is reused once UnmarshalVT returns.
	buf := append([]byte(nil), raw...)
	err := body.UnmarshalVT(buf)
	clear(buf)
	if (err == nil) != (werr == nil) {
		t.Fatalf("reportBody: %v, UnmarshalVT: %v", err, werr)
	}
	if err != nil {
		return err.Error()
	}
	if !proto.Equal(m, want) {
		t.Fatalf("reportBody decoded\n%v\nwant\n%v", m, want)
	}
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	if got, want := errText(body.utf8Err), errText(reportRequestUTF8(want)); got != want {
		t.Fatalf("utf8Err %q, reportRequestUTF8 %q", got, want)
	}
	// What reportHandler passes on is checked as DecodeBatchChecked.
	if _, err := d.DecodeBatchChecked(m, attribute.DefaultManifest()); err != nil {
		return errText(cmp.Or(body.utf8Err, err))
	}
	return errText(body.utf8Err)
}

// TestReportRefusesMalformedBatch: the seeds of FuzzReportBody decode as
// they should, and the Report handler answers a malformed batch with
// InvalidArgument and evaluates none of its bags.
func TestReportRefusesMalformedBatch(t *testing.T) {
	d := attribute.DefaultDictionary()
	m := mixerv1.ReportRequestFromVTPool()
	defer m.ReturnToVTPool()
	seeds := reportBodySeeds(t)
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		got := checkReportBody(t, d, m, seeds[name])
		if valid := name == "good" || name == "own words"; valid != (got == "") {
			t.Errorf("%s: error %q", name, got)
		}
		m.ResetVT()
	}

	g := noRulesService(t)
	for _, name := range []string{"word out of range", "newer dictionary"} {
		body := seeds[name]
		_, err := g.reportHandler(nil, context.Background(), func(m any) error { return m.(vtcodec.Message).UnmarshalVT(body) }, nil)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "attributes: ") {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if n := metric(t, g.s.Registry(), "sidemix_mixer_report_bags_total"); n != 0 {
		t.Errorf("%v bags of refused batches counted as received", n)
	}
}

// FuzzReportBody checks reportBody against the generated decoder and the
// checks of the request it decodes (checkReportBody), into one pooled
// request reused across inputs as reportHandler's are.
func FuzzReportBody(f *testing.F) {
	for _, b := range reportBodySeeds(f) {
		f.Add(b)
	}
	f.Add([]byte{})
	d := attribute.DefaultDictionary()
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := mixerv1.ReportRequestFromVTPool()
		defer m.ReturnToVTPool()
		checkReportBody(t, d, m, raw)
	})
}

// noRulesService is the gRPC service of a mixer whose config has no rules,
// shut down when tb ends.
func noRulesService(tb testing.TB) *service {
	tb.Helper()
	srv, err := New(Config{ConfigPaths: []string{tb.TempDir()}, Adapters: testRegistry(tb),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &service{s: srv}
}
