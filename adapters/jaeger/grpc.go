package jaeger

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	model "github.com/jaegertracing/jaeger-idl/model/v1"
	api_v2 "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
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
	byService map[string]*serviceSpans // the batch's spans by service
	processes map[string]sizedProcess
	// maxRequest bounds a request's encoded size (maxRequestBytes; less
	// in tests).
	maxRequest int
}

// maxRequestBytes bounds the encoded size of a PostSpans request: gRPC
// servers, Jaeger's collector among them, refuse a message of more than
// 4 MiB unless configured otherwise. A service's spans whose size may be
// more, by the bound toModel computes (up to a few times their size for
// spans of short strings), go in several requests.
const maxRequestBytes = 4 << 20

// serviceSpans are a batch's spans of one service, in chunks of one
// request each.
type serviceSpans struct {
	spans  []*model.Span
	chunks []chunk
}

// chunk is a request's spans, from the previous chunk's end to end, and a
// bound of the request's encoded size.
type chunk struct{ end, bound int }

// sizedProcess is a service's Process and its encoded size.
type sizedProcess struct {
	p    *model.Process
	size int
}

// maxProcesses bounds the processes an exporter keeps: a mesh has a few
// hundred workloads at most, so reaching it means names that keep
// changing, and the map starts afresh.
const maxProcesses = 4096

func newGRPCExporter(conn *grpc.ClientConn, tags map[string]string) *grpcExporter {
	return &grpcExporter{
		client: api_v2.NewCollectorServiceClient(conn), tags: tags,
		byService: make(map[string]*serviceSpans), processes: make(map[string]sizedProcess),
		maxRequest: maxRequestBytes,
	}
}

// process is svc's Process, made once.
func (e *grpcExporter) process(svc string) sizedProcess {
	if p, ok := e.processes[svc]; ok {
		return p
	}
	if len(e.processes) >= maxProcesses {
		clear(e.processes)
	}
	p := process(svc, e.tags)
	sp := sizedProcess{p: p, size: p.Size()}
	e.processes[svc] = sp
	return sp
}

func (e *grpcExporter) export(ctx context.Context, spans []parsedSpan) (int, error) {
	buf := &e.buf
	buf.reset(spans)
	order := e.order[:0]
	byService := e.byService
	for i := range spans {
		svc := spans[i].s.ServiceName()
		list := byService[svc] // emptied by the last batch, or nil
		if list == nil {
			list = &serviceSpans{}
			byService[svc] = list
		}
		if len(list.spans) == 0 {
			order = append(order, svc)
		}
		m, bound := buf.toModel(&spans[i])
		list.spans = append(list.spans, m)
		if n := len(list.chunks); n > 0 && list.chunks[n-1].bound+bound <= e.maxRequest {
			list.chunks[n-1].end++
			list.chunks[n-1].bound += bound
		} else {
			list.chunks = append(list.chunks, chunk{end: len(list.spans), bound: requestFixedBound + e.process(svc).size + bound})
		}
	}
	defer func() {
		// Keep the lists' arrays for the next batch, emptied.
		for _, svc := range order {
			list := byService[svc]
			clear(list.spans)
			list.spans, list.chunks = list.spans[:0], list.chunks[:0]
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
		list := byService[svc]
		p := e.process(svc).p
		from := 0
		for _, c := range list.chunks {
			if ctx.Err() != nil {
				break
			}
			batch := model.Batch{Spans: list.spans[from:c.end], Process: p}
			from = c.end
			tried += len(batch.Spans)
			_, err := e.client.PostSpans(ctx, &api_v2.PostSpansRequest{Batch: batch}, grpc.ForceCodecV2(gogoCodecV2{bound: c.bound}))
			if err != nil {
				failed += len(batch.Spans)
				errs = append(errs, fmt.Errorf("PostSpans (%s): %w", svc, err))
			}
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
//
// With a bound (the exporter's bound of the request's encoded size, from
// its spans' strings: toModel), it does not compute the message's exact
// Size first, a walk of every span and tag as long as marshalling itself
// (with a time conversion per span that allocates): gogo's
// MarshalToSizedBuffer writes backwards from the end of the buffer it is
// given and returns the length it wrote, so the message is marshalled at
// the end of a buffer of bound bytes and moved to its start. Were the
// bound ever too small, the marshaller would index before the buffer's
// start and panic; that panic is recovered and the message marshalled
// again at its exact size.
type gogoCodecV2 struct{ bound int }

type gogoSizedMessage interface {
	gogoMessage
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

func (c gogoCodecV2) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(gogoSizedMessage)
	if !ok {
		return nil, fmt.Errorf("jaeger codec: %T is not a gogo/protobuf message", v)
	}
	if c.bound > 0 && !mem.IsBelowBufferPoolingThreshold(c.bound) {
		buf, err := marshalBounded(m, c.bound)
		if err != nil {
			return nil, err
		}
		if buf != nil {
			return mem.BufferSlice{mem.NewBuffer(buf, marshalPool)}, nil
		}
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

// marshalBounded marshals m into a pooled buffer of bound bytes, which must
// be at least m's size. It returns nil and no error when bound was too
// small (the caller then marshals m at its exact size).
func marshalBounded(m gogoSizedMessage, bound int) (buf *[]byte, err error) {
	buf = marshalPool.Get(bound)
	n := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(runtime.Error); !ok {
					panic(r)
				}
				n = -1 // wrote before the buffer's start: bound < size
			}
		}()
		n, err = m.MarshalToSizedBuffer(*buf)
	}()
	if n < 0 || err != nil {
		marshalPool.Put(buf)
		if err != nil {
			return nil, err
		}
		return nil, nil
	}
	// The message is the last n bytes: move it to the start, the only
	// bytes of the buffer that gRPC reads.
	copy(*buf, (*buf)[bound-n:])
	*buf = (*buf)[:n]
	return buf, nil
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
//
// It keeps buffers by size class, since an export sends one request per
// service, of sizes as different as the services' shares of the batch,
// in free lists the garbage collector does not empty (bufpool.Listed):
// an exporter sends a few requests of some 100 KiB to a few MiB per
// second, and a sync.Pool, emptied by every other collection and
// missing the buffers gRPC's writer goroutine put back on another
// processor, allocated a new one (a MiB class, faulted in afresh) for
// most of them. gRPC puts a buffer back once it has written it.
var marshalPool mem.BufferPool = &bufpool.Listed{MaxBytes: 4 * maxRequestBytes}
