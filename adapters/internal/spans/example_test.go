package spans_test

import (
	"fmt"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/spans"
	"github.com/sidemix/sidemix/adapters/template"
)

func ExampleTraces() {
	t0 := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	td, skipped := spans.Traces([]*template.TraceSpan{{
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
		SpanName: "GET /invoices", StartTime: t0, EndTime: t0.Add(time.Millisecond),
		SpanKind: template.SpanKindServer, SourceName: "product", DestinationName: "invoice",
		HTTPStatusCode: 200,
	}, {
		TraceID: "not hex", SpanID: "00f067aa0ba902b7",
	}})
	rs := td.ResourceSpans().At(0)
	svc, _ := rs.Resource().Attributes().Get(spans.ServiceNameKey)
	sp := rs.ScopeSpans().At(0).Spans().At(0)
	fmt.Println(svc.Str(), sp.Kind(), sp.Name(), sp.Attributes().AsRaw(), "skipped:", skipped)
	// Output: invoice Server GET /invoices map[http.response.status_code:200] skipped: 1
}
