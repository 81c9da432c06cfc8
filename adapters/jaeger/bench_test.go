package jaeger

import (
	"context"
	"fmt"
	"testing"
	"time"

	model "github.com/jaegertracing/jaeger-idl/model/v1"
	api_v2 "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"

	"github.com/sidemix/sidemix/adapters/template"
)

// BenchmarkReportToCollector measures spans per second through Report,
// batching, conversion and PostSpans to an in-process collector (3
// services per batch), counting a span once the collector has it.
func BenchmarkReportToCollector(b *testing.B) {
	for _, protocol := range []string{ProtocolGRPC, ProtocolOTLP} {
		b.Run(protocol, func(b *testing.B) {
			c := startBenchCollector(b, protocol)
			h, _ := newTestHandler(b, fmt.Sprintf("endpoint: %s\nprotocol: %s\nflushInterval: 10ms\nmaxBatchSize: 1000\nmaxQueueSize: 100000", c.addr(), protocol))
			services := []string{"product", "invoice", "notification"}
			const per = 100
			batch := make([]template.Instance, per)
			for i := range batch {
				s := span(traceA, fmt.Sprintf("%016x", i+1), fmt.Sprintf("%016x", i+1000), template.SpanKindServer, "caller", services[i%3])
				batch[i] = s
			}
			reportPaced(b, h, batch, per, c)
		})
	}
}

type benchCollector interface {
	addr() string
	spans() int
}

func startBenchCollector(b *testing.B, protocol string) benchCollector {
	if protocol == ProtocolOTLP {
		f := startOTLP(b)
		f.discard = true
		return f
	}
	c := startCollector(b)
	c.discard = true
	return grpcBench{c}
}

type grpcBench struct{ *fakeCollector }

func (g grpcBench) addr() string { return g.fakeCollector.addr }

// reportPaced Reports batch (per spans) b.N times, staying within the
// handler's maxQueueSize as the collector c takes spans, and reports the
// spans per second until c has them all.
func reportPaced(b *testing.B, h *testHandler, batch []template.Instance, per int, c benchCollector) {
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for range b.N {
		for sent-c.spans() > 50000 {
			time.Sleep(100 * time.Microsecond)
		}
		_ = h.Report(context.Background(), batch)
		sent += per
	}
	for c.spans() < sent && h.metric("sidemix_jaeger_spans_dropped_total", "reason", "queue_full") == 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "spans/s")
	if d := h.metric("sidemix_jaeger_spans_dropped_total", "reason", "queue_full"); d > 0 {
		b.Fatalf("%v spans dropped: queue full", d)
	}
}

// BenchmarkConvertMarshal measures the grpc exporter's work per span
// without the network: converting a PostSpans request's spans of one
// service (the tracing.yaml span of a client: a parent, span.kind,
// http.status_code and four spanTags) to Jaeger's model and marshalling
// the request as the codec does.
func BenchmarkConvertMarshal(b *testing.B) {
	spans := make([]*template.TraceSpan, 250)
	for i := range spans {
		s := span(fmt.Sprintf("%032x", i+1), fmt.Sprintf("%016x", 2*i+1), fmt.Sprintf("%016x", 2*i+2), template.SpanKindClient, "shop", "web")
		s.SpanTags = append(s.SpanTags, template.SpanTag{Key: "server.address", Value: "web:8080"})
		spans[i] = s
	}
	parsed := parse(b, spans...)
	var buf modelBuf
	p := process("shop", nil)
	ms := make([]*model.Span, 0, len(spans))
	b.ReportAllocs()
	for b.Loop() {
		var req *api_v2.PostSpansRequest
		var bound int
		req, bound, ms = requestOf(&buf, parsed, p, ms[:0])
		out, err := gogoCodecV2{bound: bound}.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(spans)), "ns/span")
}
