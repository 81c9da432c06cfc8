package jaeger

import (
	"context"
	"errors"

	"google.golang.org/grpc"

	"github.com/sidemix/sidemix/adapters/template"
)

// otlpExporter sends OTLP traces over gRPC.
type otlpExporter struct {
	conn *grpc.ClientConn
}

func newOTLPExporter(conn *grpc.ClientConn) *otlpExporter { return &otlpExporter{conn: conn} }

func (e *otlpExporter) export(_ context.Context, spans []*template.TraceSpan) (int, error) {
	return len(spans), errors.New("protocol otlp: not available yet")
}
