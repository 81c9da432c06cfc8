package mixer

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// BenchmarkSpanBag: one HTTP server span (the semantic-convention
// attributes an instrumented app sends) turned into its bag.
func BenchmarkSpanBag(b *testing.B) {
	sp := ptrace.NewSpan()
	sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	sp.SetParentSpanID(pcommon.SpanID{8, 7, 6, 5, 4, 3, 2, 1})
	sp.SetName("GET /api/orders/{id}")
	sp.SetKind(ptrace.SpanKindServer)
	start := time.Unix(1_700_000_000, 0)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(3 * time.Millisecond)))
	a := sp.Attributes()
	a.PutStr("http.request.method", "GET")
	a.PutStr("url.path", "/api/orders/1234")
	a.PutStr("server.address", "web:8080")
	a.PutInt("http.response.status_code", 200)
	res := resource{service: "web", namespace: "default"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spanBag(res, sp); err != nil {
			b.Fatal(err)
		}
	}
}
