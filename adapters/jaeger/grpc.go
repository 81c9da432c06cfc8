package jaeger

import (
	"context"
	"errors"
	"fmt"

	model "github.com/jaegertracing/jaeger-idl/model/v1"
	api_v2 "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/internal/bufpool"
)

// grpcExporter sends api_v2 CollectorService.PostSpans: one Batch per
// service (source workload), its Process carrying the service name and the
// configured process tags. Its export runs on the Batcher's goroutine only,
// one batch at a time, so it keeps its buffers from one batch to the next.
type grpcExporter struct {
	client api_v2.CollectorServiceClient
	tags   map[string]string

	buf       modelBuf
	order     []string                 // the batch's services, in order of appearance
	byService map[string][]*model.Span // the batch's spans by service
	processes map[string]*model.Process
}

// maxProcesses bounds the processes an exporter keeps: a mesh has a few
// hundred workloads at most, so reaching it means names that keep
// changing, and the map starts afresh.
const maxProcesses = 4096

func newGRPCExporter(conn *grpc.ClientConn, tags map[string]string) *grpcExporter {
	return &grpcExporter{
		client: api_v2.NewCollectorServiceClient(conn), tags: tags,
		byService: make(map[string][]*model.Span), processes: make(map[string]*model.Process),
	}
}

// process is svc's Process, made once.
func (e *grpcExporter) process(svc string) *model.Process {
	if p, ok := e.processes[svc]; ok {
		return p
	}
	if len(e.processes) >= maxProcesses {
		clear(e.processes)
	}
	p := process(svc, e.tags)
	e.processes[svc] = p
	return p
}

func (e *grpcExporter) export(ctx context.Context, spans []*template.TraceSpan) (int, error) {
	buf := &e.buf
	buf.reset(spans)
	order := e.order[:0]
	byService := e.byService
	for _, s := range spans {
		trace, id, parent, err := ids(s)
		if err != nil {
			continue // Report let only valid ids in
		}
		svc := s.ServiceName()
		list := byService[svc] // emptied by the last batch, or nil
		if len(list) == 0 {
			order = append(order, svc)
		}
		byService[svc] = append(list, buf.toModel(s, trace, id, parent))
	}
	defer func() {
		// Keep the lists' arrays for the next batch, emptied.
		for _, svc := range order {
			list := byService[svc]
			clear(list)
			byService[svc] = list[:0]
		}
		if len(byService) > maxProcesses {
			clear(byService)
		}
		clear(order)
		e.order = order[:0]
	}()
	failed, tried := 0, 0
	var errs []error
	for _, svc := range order {
		if ctx.Err() != nil {
			break
		}
		batch := model.Batch{Spans: byService[svc], Process: e.process(svc)}
		tried += len(batch.Spans)
		_, err := e.client.PostSpans(ctx, &api_v2.PostSpansRequest{Batch: batch}, grpc.ForceCodecV2(gogoCodecV2{}))
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

// gogoCodecV2 is gogoCodec for the client's sends: a message of more than
// a few KiB (a batch of spans is some 100 KiB) is marshalled into a pooled
// buffer (marshalPool), which gRPC gives back once written, instead of a
// new allocation per request.
type gogoCodecV2 struct{}

type gogoSizedMessage interface {
	gogoMessage
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

func (gogoCodecV2) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(gogoSizedMessage)
	if !ok {
		return nil, fmt.Errorf("jaeger codec: %T is not a gogo/protobuf message", v)
	}
	size := m.Size()
	if mem.IsBelowBufferPoolingThreshold(size) {
		b := make([]byte, size)
		if _, err := m.MarshalToSizedBuffer(b); err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	pool := marshalPool
	buf := pool.Get(size)
	// MarshalToSizedBuffer writes backwards from the end of exactly size
	// bytes.
	if n, err := m.MarshalToSizedBuffer((*buf)[:size]); err != nil || n != size {
		pool.Put(buf)
		if err == nil {
			err = fmt.Errorf("jaeger codec: %T marshalled %d bytes, its size is %d", v, n, size)
		}
		return nil, err
	}
	*buf = (*buf)[:size]
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (gogoCodecV2) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(gogoMessage)
	if !ok {
		return fmt.Errorf("jaeger codec: %T is not a gogo/protobuf message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return m.Unmarshal(buf.ReadOnlyData())
}

func (gogoCodecV2) Name() string { return "proto" }

// marshalPool holds the buffers gogoCodecV2 marshals into. Unlike gRPC's
// default pool it does not clear a buffer it hands out (gRPC's clears the
// buffer's whole capacity, a 256 KiB tier for a batch of 500 spans, on
// every Get): the codec overwrites every byte it sends (it checks that
// MarshalToSizedBuffer wrote exactly Size bytes), and nothing else uses
// these buffers.
var marshalPool mem.BufferPool = &bufpool.Uncleared{}
