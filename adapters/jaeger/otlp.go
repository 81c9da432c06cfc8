package jaeger

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/internal/spans"
	"github.com/sidemix/sidemix/adapters/template"
)

// otlpExporter sends OTLP traces over gRPC (the collector's
// TraceService.Export): one request per send, a resource per service,
// carrying service.name and the configured process tags.
type otlpExporter struct {
	client ptraceotlp.GRPCClient
	tags   map[string]string
	spans  []*template.TraceSpan // the batch's spans, kept for the next
}

func newOTLPExporter(conn *grpc.ClientConn, tags map[string]string) *otlpExporter {
	return &otlpExporter{client: ptraceotlp.NewGRPCClient(conn), tags: tags}
}

func (e *otlpExporter) export(ctx context.Context, batch []parsedSpan) (int, error) {
	list := e.spans[:0]
	for i := range batch {
		list = append(list, batch[i].s)
	}
	td, skipped := spans.Traces(list)
	clear(list)
	e.spans = list[:0]
	if len(e.tags) > 0 {
		rss := td.ResourceSpans()
		for i := range rss.Len() {
			attrs := rss.At(i).Resource().Attributes()
			for k, v := range e.tags {
				if _, ok := attrs.Get(k); !ok {
					attrs.PutStr(k, v)
				}
			}
		}
	}
	n := td.SpanCount()
	if n == 0 {
		return skipped, nil
	}
	resp, err := e.client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	if err != nil {
		err = fmt.Errorf("OTLP export: %w", err)
		if !retryable(err) {
			err = handlerkit.Permanent(err)
		}
		return len(batch), err
	}
	if ps := resp.PartialSuccess(); ps.RejectedSpans() > 0 {
		// The rest was taken: resending would duplicate it.
		return skipped + int(ps.RejectedSpans()), handlerkit.Permanent(fmt.Errorf("OTLP export: %d spans rejected: %s", ps.RejectedSpans(), ps.ErrorMessage()))
	}
	return skipped, nil
}
