package otlp

import (
	"context"
	"fmt"

	"github.com/sidemix/sidemix/internal/rawproto"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

// otlp instances (adapters/template.OTLP) are an app's export as the
// mixer received it, one resource each: the handler sends each as an
// export request of its own, its bytes as they came (a resource's field 1
// entry is an ExportTraceServiceRequest, or ExportLogsServiceRequest, by
// itself), never decoded. They queue in a batcher per signal whose items
// are resources, so sends and retries work as for the other instances;
// the sent and failed counters still count spans and log records. A
// resource sent without an error is released (template.OTLP.Release): the
// endpoint answered, so it read every byte, and the mixer may reuse the
// request's buffer; one that failed is left to the garbage collector
// (after a timeout gRPC may still hold the bytes).

// rawStash carries a resource's item count and what the endpoint
// rejected from a raw batcher's send to its Done; both run on the
// batcher's goroutine, one batch at a time.
type rawStash struct {
	items, rejected int
	in              *template.OTLP
}

// rawQueue is how many resources wait per signal: maxQueueSize items'
// worth of exports of maxBatchSize, at least one.
func (h *handler) rawQueue() int { return max(1, h.cfg.MaxQueueSize/h.cfg.MaxBatchSize) }

func (h *handler) newRawBatcher(signal string) *handlerkit.Batcher[*template.OTLP] {
	stash := &rawStash{}
	o := handlerkit.BatcherOptions{
		MaxBatchSize:  1,
		FlushInterval: h.cfg.FlushInterval,
		MaxQueueSize:  h.rawQueue(),
		Timeout:       h.cfg.Timeout,
		Retry:         h.cfg.Retry.Retry(),
	}
	o.Done = func(_, _, retries int, err error) {
		failed := stash.rejected
		if err != nil && failed == 0 {
			failed = stash.items
		}
		h.done(signal, stash.items, failed, retries, err)
		if err == nil && stash.in.Release != nil {
			stash.in.Release()
		}
		stash.in = nil
	}
	return handlerkit.NewBatcher(o, func(ctx context.Context, batch []*template.OTLP) (int, error) {
		in := batch[0]
		*stash = rawStash{items: in.Items, in: in}
		rejected, err := h.exp.raw(ctx, signal, in.Data)
		stash.rejected = rejected
		if rejected > 0 {
			return 1, err
		}
		return 0, err
	})
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
