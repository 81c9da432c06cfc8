package jaeger

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/internal/rawotlp"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/rawproto"
)

// otlp instances (adapters/template.OTLP) are resources of an app's own
// OTLP export. With protocol otlp they are batched by rawotlp (up to
// maxBatchSize spans a send, at least every flushInterval, maxQueueSize
// spans held) and sent to the collector's TraceService.Export as they
// came, concatenated; processTags are not added (the resources keep the
// app's own attributes, service.name included). With protocol grpc an
// otlp instance is a config load error (CheckInstance): api_v2 carries
// Jaeger's model, which these undecoded bytes are not.

// rawExportMethod is OTLP's trace export, sent with rawproto's codec.
const rawExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

var rawCodec = grpc.ForceCodecV2(rawproto.NewCodec())

// CheckInstance implements adapters.InstanceChecker: a handler takes otlp
// instances only with protocol otlp, and only their spans.
func (c *Config) CheckInstance(tmpl, signal string) error {
	if tmpl != template.OTLPName {
		return nil
	}
	if c.Protocol != ProtocolOTLP {
		return fmt.Errorf("otlp instances (an app's OTLP resources, forwarded undecoded) need protocol: %s; protocol %s sends Jaeger's api_v2 model", ProtocolOTLP, c.Protocol)
	}
	if signal == template.SignalLogs {
		return fmt.Errorf("the instance takes logs; Jaeger takes spans only (signal: %s)", template.SignalTraces)
	}
	return nil
}

// newRawBatcher returns the batcher of otlp instances, nil unless the
// protocol is otlp.
func (h *handler) newRawBatcher() *rawotlp.Batcher {
	if h.cfg.Protocol != ProtocolOTLP {
		return nil
	}
	return rawotlp.New(rawotlp.Options{
		MaxBatchItems: h.cfg.MaxBatchSize,
		FlushInterval: h.cfg.FlushInterval,
		MaxQueueItems: h.cfg.MaxQueueSize,
		Timeout:       h.cfg.Timeout,
		Retry:         h.cfg.Retry.Retry(),
		Done:          h.done,
		Queued:        h.setRawQueued,
		Closing:       h.closing.Load,
	}, h.sendRaw)
}

// sendRaw sends one body of resources as an ExportTraceServiceRequest.
func (h *handler) sendRaw(ctx context.Context, body []byte) (int, error) {
	var out rawproto.Message
	err := h.conn.Invoke(ctx, rawExportMethod, rawproto.Message(body), &out, rawCodec)
	h.lastFailed.Store(err != nil)
	if err != nil {
		err = fmt.Errorf("OTLP export: %w", err)
		if !retryable(err) {
			err = handlerkit.Permanent(err)
		}
		return 0, err
	}
	if len(out) == 0 {
		return 0, nil
	}
	resp := ptraceotlp.NewExportResponse()
	if resp.UnmarshalProto(out) != nil {
		return 0, nil // accepted; only the partial success is unreadable
	}
	if ps := resp.PartialSuccess(); ps.RejectedSpans() > 0 {
		// The rest was taken: resending would duplicate it.
		return int(ps.RejectedSpans()), handlerkit.Permanent(fmt.Errorf("OTLP export: %d spans rejected: %s", ps.RejectedSpans(), ps.ErrorMessage()))
	}
	return 0, nil
}

// reportRaw buffers otlp instances of the traces signal; the others (and
// all of them without protocol otlp, which config loading prevents) are
// released and dropped.
func (h *handler) reportRaw(insts []*template.OTLP) {
	if len(insts) == 0 {
		return
	}
	traces := insts[:0:0]
	wrong := 0
	for _, in := range insts {
		if h.raw == nil || in.Signal != template.SignalTraces {
			if in.Signal == template.SignalTraces {
				wrong += in.Items
			}
			if in.Release != nil {
				in.Release()
			}
			continue
		}
		traces = append(traces, in)
	}
	h.drop(reasonTemplate, wrong)
	if len(traces) > 0 {
		h.drop(reasonQueueFull, h.raw.Add(traces))
	}
}

// setSpanQueued and setRawQueued keep sidemix_jaeger_queue_spans the sum
// of the spans both batchers hold.
func (h *handler) setSpanQueued(n int) { h.spanQueued.Store(int64(n)); h.setQueued() }
func (h *handler) setRawQueued(n int)  { h.rawQueued.Store(int64(n)); h.setQueued() }
func (h *handler) setQueued() {
	h.queued.Set(float64(h.spanQueued.Load() + h.rawQueued.Load()))
}

// closeRaw sends what the otlp batcher holds, until ctx ends; it returns
// the spans dropped.
func (h *handler) closeRaw(ctx context.Context) int {
	if h.raw == nil {
		return 0
	}
	return h.raw.Close(ctx)
}
