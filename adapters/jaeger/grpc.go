package jaeger

import (
	"context"
	"errors"
	"fmt"

	model "github.com/jaegertracing/jaeger-idl/model/v1"
	api_v2 "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

// grpcExporter sends api_v2 CollectorService.PostSpans: one Batch per
// service (source workload), its Process carrying the service name and the
// configured process tags.
type grpcExporter struct {
	client api_v2.CollectorServiceClient
	tags   map[string]string
}

func newGRPCExporter(conn *grpc.ClientConn, tags map[string]string) *grpcExporter {
	return &grpcExporter{client: api_v2.NewCollectorServiceClient(conn), tags: tags}
}

func (e *grpcExporter) export(ctx context.Context, spans []*template.TraceSpan) (int, error) {
	var order []string
	byService := make(map[string][]*model.Span)
	buf := newModelBuf(spans)
	for _, s := range spans {
		trace, id, parent, err := ids(s)
		if err != nil {
			continue // Report let only valid ids in
		}
		svc := s.ServiceName()
		if _, seen := byService[svc]; !seen {
			order = append(order, svc)
		}
		byService[svc] = append(byService[svc], buf.toModel(s, trace, id, parent))
	}
	failed, tried := 0, 0
	var errs []error
	for _, svc := range order {
		if ctx.Err() != nil {
			break
		}
		batch := model.Batch{Spans: byService[svc], Process: process(svc, e.tags)}
		tried += len(batch.Spans)
		_, err := e.client.PostSpans(ctx, &api_v2.PostSpansRequest{Batch: batch}, grpc.ForceCodec(gogoCodec{}))
		if err != nil {
			failed += len(batch.Spans)
			errs = append(errs, fmt.Errorf("PostSpans (%s): %w", svc, err))
		}
	}
	// Services not tried because the context ended fail too.
	if untried := len(spans) - tried; untried > 0 {
		failed += untried
		errs = append(errs, ctx.Err())
	}
	err := errors.Join(errs...)
	switch {
	case err == nil:
		return 0, nil
	case failed < len(spans):
		// Some services' spans went through: resending the batch would
		// duplicate them in Jaeger.
		return failed, handlerkit.Permanent(err)
	}
	for _, e := range errs {
		if retryable(e) {
			return failed, err
		}
	}
	return failed, handlerkit.Permanent(err)
}

// retryable reports whether a failed PostSpans may succeed later: the
// collector was unreachable, overloaded or slow, not refusing the spans.
func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss, codes.ResourceExhausted:
		return true
	}
	return false
}

// gogoCodec marshals the jaeger-idl messages, which gogo/protobuf
// generated with custom types (TraceID, SpanID) that the default codec's
// reflection cannot handle, with their own Marshal and Unmarshal. Its name
// is "proto", so the wire format and content type are standard.
type gogoCodec struct{}

type gogoMessage interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

func (gogoCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(gogoMessage)
	if !ok {
		return nil, fmt.Errorf("jaeger codec: %T is not a gogo/protobuf message", v)
	}
	return m.Marshal()
}

func (gogoCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(gogoMessage)
	if !ok {
		return fmt.Errorf("jaeger codec: %T is not a gogo/protobuf message", v)
	}
	return m.Unmarshal(data)
}

func (gogoCodec) Name() string { return "proto" }
