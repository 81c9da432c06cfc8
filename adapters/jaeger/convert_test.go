package jaeger

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	model "github.com/jaegertracing/jaeger-idl/model/v1"
	api_v2 "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

// TestIDsMatchJaegerParsing: ids accepts and parses exactly what
// jaeger-idl's TraceIDFromString and strconv.ParseUint(s, 16, 64) accept
// for ids of the right length, lower and upper case alike.
func TestIDsMatchJaegerParsing(t *testing.T) {
	traces := []string{traceA, "4BF92F3577B34DA6A3CE929D0E0E4736", "00000000000000000000000000000001", "ffffffffffffffffffffffffffffffff",
		"4bf92f3577b34da6a3ce929d0e0e473g", "4bf92f3577b34da6 3ce929d0e0e4736", "+bf92f3577b34da6a3ce929d0e0e4736", "0x4bf92f3577b34da6a3ce929d0e0e47",
		"4bf92f3577b34da_a3ce929d0e0e4736", "4bf92f3577b34dA6a3ce929d0e0e473\xff", "00000000000000000000000000000000"}
	spanIDs := []string{"00f067aa0ba902b7", "00F067AA0BA902B7", "ffffffffffffffff", "0000000000000001", "00f067aa0ba902bz", "-0f067aa0ba902b7",
		"0x0067aa0ba902b7", "00f067aa_ba902b7", "00f067aa0ba902b:", "00f067aa0ba902b@", "00f067aa0ba902bG", "0000000000000000"}
	for _, tr := range traces {
		for _, id := range spanIDs {
			for _, parent := range []string{"", id, "00f067aa0ba902b7"} {
				s := &template.TraceSpan{TraceID: tr, SpanID: id, ParentSpanID: parent}
				trace, span, par, err := ids(s)

				wantTrace, terr := model.TraceIDFromString(tr)
				wantSpan, serr := strconv.ParseUint(id, 16, 64)
				var wantPar uint64
				var perr error
				if parent != "" {
					wantPar, perr = strconv.ParseUint(parent, 16, 64)
				}
				wantOK := terr == nil && serr == nil && perr == nil && (wantTrace.High != 0 || wantTrace.Low != 0) && wantSpan != 0
				if (err == nil) != wantOK {
					t.Errorf("ids(%q, %q, %q) error = %v, want ok %v", tr, id, parent, err, wantOK)
					continue
				}
				if err == nil && (trace != wantTrace || uint64(span) != wantSpan || uint64(par) != wantPar) {
					t.Errorf("ids(%q, %q, %q) = %v %v %v, want %v %x %x", tr, id, parent, trace, span, par, wantTrace, wantSpan, wantPar)
				}
			}
		}
	}
}

// TestExporterReusesBuffersAcrossBatches: one exporter sending batches of
// changing services and sizes one after another sends each batch's spans,
// and only those, under the right process.
func TestExporterReusesBuffersAcrossBatches(t *testing.T) {
	c := startCollector(t)
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e := newGRPCExporter(conn, map[string]string{"mesh": "demo"})
	batches := [][]string{{"a", "b", "a"}, {"b", "c"}, {"a"}, {"c", "c", "c", "b", "a", "d"}, {"b"}}
	id := 0
	for i, services := range batches {
		var spans []*template.TraceSpan
		want := map[string][]model.SpanID{}
		for _, svc := range services {
			id++
			spans = append(spans, span(traceA, fmt.Sprintf("%016x", id), "", template.SpanKindServer, "caller", svc))
			want[svc] = append(want[svc], model.SpanID(id))
		}
		before := len(c.received())
		if failed, err := e.export(context.Background(), parse(t, spans...)); failed != 0 || err != nil {
			t.Fatalf("batch %d: export = %d, %v", i, failed, err)
		}
		got := map[string][]model.SpanID{}
		for _, b := range c.received()[before:] {
			if len(b.Process.Tags) != 1 || b.Process.Tags[0].VStr != "demo" {
				t.Errorf("batch %d: process %s tags %v", i, b.Process.ServiceName, b.Process.Tags)
			}
			if _, dup := got[b.Process.ServiceName]; dup {
				t.Errorf("batch %d: two PostSpans for %s", i, b.Process.ServiceName)
			}
			for _, s := range b.Spans {
				got[b.Process.ServiceName] = append(got[b.Process.ServiceName], s.SpanID)
				if n := len(s.Tags); n != 5 {
					t.Errorf("batch %d: span %v has %d tags, want 5", i, s.SpanID, n)
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("batch %d: collector got %v, want %v", i, got, want)
		}
	}
}

// TestCodecV2MarshalsAsGogo: the pooled codec writes the bytes gogo's own
// Marshal writes, for a request below gRPC's pooling threshold and ones
// above it, marshalled at their exact size (no bound), within the bound
// the exporter computes, and within a bound too small (marshalled again at
// the exact size), and reads them back. The pooled buffers are not
// cleared: the larger ones are marshalled into what the previous ones, or
// garbage, left in them.
// requestOf converts parsed into one PostSpansRequest of process p, as
// the grpc exporter does for a chunk of one service's spans, appending the
// spans to ms; bound is the request's size bound.
func requestOf(buf *modelBuf, parsed []parsedSpan, p *model.Process, ms []*model.Span) (*api_v2.PostSpansRequest, int, []*model.Span) {
	buf.reset(parsed)
	bound := requestFixedBound + p.Size()
	for i := range parsed {
		m, n := buf.toModel(&parsed[i])
		ms = append(ms, m)
		bound += n
	}
	return &api_v2.PostSpansRequest{Batch: model.Batch{Spans: ms, Process: p}}, bound, ms
}

func TestCodecV2MarshalsAsGogo(t *testing.T) {
	junk := marshalPool.Get(1 << 20)
	for i := range *junk {
		(*junk)[i] = 0xa5
	}
	marshalPool.Put(junk)
	for _, n := range []int{1, 2000, 1500, 2000, 700} {
		var spans []*template.TraceSpan
		for i := range n {
			spans = append(spans, span(traceA, fmt.Sprintf("%016x", i+1), "00f067aa0ba902b7", template.SpanKindServer, "a", "b"))
		}
		parsed := parse(t, spans...)
		var buf modelBuf
		req, bound, _ := requestOf(&buf, parsed, process("b", map[string]string{"mesh": "demo"}), nil)
		want, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if bound < len(want) {
			t.Fatalf("%d spans: bound %d < size %d", n, bound, len(want))
		}
		for _, b := range []int{0, bound, len(want), len(want) - 1, len(want) / 2} {
			got, err := gogoCodecV2{bound: b}.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Materialize(), want) {
				t.Errorf("%d spans, bound %d: codec wrote %d bytes unlike gogo's %d", n, b, got.Len(), len(want))
			}
			var back api_v2.PostSpansRequest
			if err := (gogoCodecV2{}).Unmarshal(got, &back); err != nil || len(back.Batch.Spans) != n {
				t.Errorf("%d spans, bound %d: read back %d spans, %v", n, b, len(back.Batch.Spans), err)
			}
			got.Free()
		}
	}
}

// TestSpanBoundCoversSize: toModel's bound of a span's encoded size is at
// least the size gogo computes, for spans with every tag toModel adds, tags
// of every type (strings long enough for longer length prefixes, the
// longest varints), times far before and after the epoch and a negative
// duration, with and without a parent.
func TestSpanBoundCoversSize(t *testing.T) {
	long := strings.Repeat("x", 70000)
	base := span(traceA, "00f067aa0ba902b7", "ffffffffffffffff", template.SpanKindClient, "a", "b")
	variants := []func(s *template.TraceSpan){
		func(s *template.TraceSpan) {},
		func(s *template.TraceSpan) { s.ParentSpanID = "" },
		func(s *template.TraceSpan) {
			s.Status, s.StatusMessage, s.TraceState, s.HTTPStatusCode = template.SpanStatusError, long, long, -1
			s.SpanName = long
		},
		func(s *template.TraceSpan) {
			s.StartTime, s.EndTime = time.Unix(-62135596800, 999999999), time.Unix(-62135596800, 0)
		},
		func(s *template.TraceSpan) {
			s.StartTime = time.Unix(253402300799, 999999999)
			s.EndTime = s.StartTime.Add(time.Duration(math.MaxInt64))
		},
		func(s *template.TraceSpan) {
			s.Status = template.SpanStatusOK
			s.SpanTags = []template.SpanTag{
				{Key: "a", Value: int64(math.MinInt64)}, {Key: "b", Value: uint64(math.MaxUint64)}, {Key: "c", Value: -1.5},
				{Key: "d", Value: float32(2)}, {Key: "e", Value: true}, {Key: "f", Value: []byte(long)}, {Key: long, Value: long},
				{Key: "g", Value: time.Unix(0, 1)}, {Key: "h", Value: -time.Hour}, {Key: "i", Value: nil}, {Key: "j", Value: []int{1}},
				{Key: "k", Value: int32(math.MinInt32)}, {Key: "l", Value: math.MinInt},
			}
		},
	}
	for i, f := range variants {
		s := *base
		f(&s)
		parsed := parse(t, &s)
		var buf modelBuf
		buf.reset(parsed)
		m, bound := buf.toModel(&parsed[0])
		// A span's size in a Batch: the span and its tag and length prefix.
		batch := model.Batch{Spans: []*model.Span{m}}
		if size := batch.Size(); bound < size {
			t.Errorf("variant %d: bound %d < size %d", i, bound, size)
		}
	}
}

// parse parses the spans' ids as Report does.
func parse(t testing.TB, spans ...*template.TraceSpan) []parsedSpan {
	t.Helper()
	out := make([]parsedSpan, len(spans))
	for i, s := range spans {
		trace, id, parent, err := ids(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = parsedSpan{s: s, trace: trace, id: id, parent: parent}
	}
	return out
}

// TestExporterSplitsLargeRequests: a service's spans whose encoded size
// may pass the request limit go in several PostSpans, each within the
// limit a collector enforces (gRPC's max receive size), in order; a span
// too large alone fails alone and the rest are sent.
func TestExporterSplitsLargeRequests(t *testing.T) {
	const limit = 8 << 10
	c := startCollector(t, grpc.MaxRecvMsgSize(limit))
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e := newGRPCExporter(conn, map[string]string{"mesh": "demo"})
	e.maxRequest = limit
	var spans []*template.TraceSpan
	want := map[string][]model.SpanID{}
	const huge = 77
	for i := 1; i <= 200; i++ {
		svc := []string{"a", "b"}[i%2]
		s := span(traceA, fmt.Sprintf("%016x", i), "00f067aa0ba902b7", template.SpanKindServer, "caller", svc)
		if i == huge {
			s.SpanName = strings.Repeat("x", 2*limit)
		} else {
			want[svc] = append(want[svc], model.SpanID(i))
		}
		spans = append(spans, s)
	}
	failed, err := e.export(context.Background(), parse(t, spans...))
	if failed != 1 || err == nil || !handlerkit.IsPermanent(err) {
		t.Fatalf("export = %d, %v; want the huge span failed alone, permanently", failed, err)
	}
	got := map[string][]model.SpanID{}
	requests := map[string]int{}
	for _, b := range c.received() {
		requests[b.Process.ServiceName]++
		if size := (&api_v2.PostSpansRequest{Batch: b}).Size(); size > limit {
			t.Errorf("a request of %d bytes, limit %d", size, limit)
		}
		for _, s := range b.Spans {
			got[b.Process.ServiceName] = append(got[b.Process.ServiceName], s.SpanID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("collector got %v, want %v", got, want)
	}
	if requests["a"] < 2 || requests["b"] < 2 {
		t.Errorf("requests per service %v, want several", requests)
	}
}
