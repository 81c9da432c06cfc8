package otlp

import (
	"context"
	"fmt"

	"github.com/sidemix/sidemix/internal/rawproto"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/internal/rawotlp"
)

// otlp instances (adapters/template.OTLP) are an app's export as the
// mixer received it, one resource each: the handler batches them per
// signal with rawotlp (up to maxBatchSize spans or log records a send, at
// least every flushInterval, maxQueueSize items held), and sends each
// batch, the resources concatenated, as an export request of its own,
// never decoded. A resource is released (template.OTLP.Release) as soon as
// its bytes are copied into a batch, whatever becomes of the send; sends
// and retries work as for the other instances, and the sent and failed
// counters count spans and log records.

func (h *handler) newRawBatcher(signal string) *rawotlp.Batcher {
	return rawotlp.New(rawotlp.Options{
		MaxBatchItems: h.cfg.MaxBatchSize,
		FlushInterval: h.cfg.FlushInterval,
		MaxQueueItems: h.cfg.MaxQueueSize,
		Timeout:       h.cfg.Timeout,
		Retry:         h.cfg.Retry.Retry(),
		Done:          func(n, failed, retries int, err error) { h.done(signal, n, failed, retries, err) },
	}, func(ctx context.Context, body []byte) (int, error) { return h.exp.raw(ctx, signal, body) })
}

var rawCall = grpc.ForceCodecV2(rawproto.NewCodec())

// raw sends one export request body of signal as it is.
func (e *grpcExporter) raw(ctx context.Context, signal string, body []byte) (int, error) {
	method := "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	if signal == signalLogs {
		method = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
	}
	var out rawproto.Message
	if err := e.conn.Invoke(e.outgoing(ctx), method, rawproto.Message(body), &out, append(e.callOp, rawCall)...); err != nil {
		return 0, grpcError(err)
	}
	return rejectedOf(signal, out)
}

// raw posts one export request body of signal as it is.
func (e *httpExporter) raw(ctx context.Context, signal string, body []byte) (int, error) {
	url := e.tracesURL
	if signal == signalLogs {
		url = e.logURL
	}
	out, err := e.post(ctx, url, body)
	if err != nil {
		return 0, err
	}
	return rejectedOf(signal, out)
}

// rejectedOf reads the partial success of an export response: the items
// the endpoint rejected, a permanent error when there are any.
func rejectedOf(signal string, out []byte) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	var n int64
	var msg string
	if signal == signalLogs {
		resp := plogotlp.NewExportResponse()
		if resp.UnmarshalProto(out) != nil {
			return 0, nil // accepted; only the partial success is unreadable
		}
		n, msg = resp.PartialSuccess().RejectedLogRecords(), resp.PartialSuccess().ErrorMessage()
	} else {
		resp := ptraceotlp.NewExportResponse()
		if resp.UnmarshalProto(out) != nil {
			return 0, nil
		}
		n, msg = resp.PartialSuccess().RejectedSpans(), resp.PartialSuccess().ErrorMessage()
	}
	if n > 0 {
		return int(n), handlerkit.Permanent(fmt.Errorf("endpoint rejected %d %s: %s", n, map[string]string{signalTraces: "spans", signalLogs: "log records"}[signal], msg))
	}
	return 0, nil
}
