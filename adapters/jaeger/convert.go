package jaeger

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	model "github.com/jaegertracing/jaeger-idl/model/v1"

	"github.com/sidemix/sidemix/adapters/template"
)

// parsedSpan is a span with its ids parsed: Report parses them to refuse
// spans whose ids are malformed, and the exporter converts what Report
// parsed.
type parsedSpan struct {
	s          *template.TraceSpan
	trace      model.TraceID
	id, parent model.SpanID
}

// ids parses a span's hex ids: a trace id of 32 hex digits, span ids of
// 16 (W3C trace context's sizes). The parent may be empty.
func ids(s *template.TraceSpan) (trace model.TraceID, span, parent model.SpanID, err error) {
	if len(s.TraceID) != 32 {
		return trace, 0, 0, fmt.Errorf("trace id %q is not 32 hex digits", s.TraceID)
	}
	high, okHigh := parseHex64(s.TraceID[:16])
	low, okLow := parseHex64(s.TraceID[16:])
	if !okHigh || !okLow {
		return trace, 0, 0, fmt.Errorf("trace id %q is not hex", s.TraceID)
	}
	trace = model.TraceID{High: high, Low: low}
	if trace.High == 0 && trace.Low == 0 {
		return trace, 0, 0, fmt.Errorf("trace id is all zeros")
	}
	if span, err = spanID(s.SpanID); err != nil {
		return trace, 0, 0, fmt.Errorf("span id: %w", err)
	}
	if span == 0 {
		return trace, 0, 0, fmt.Errorf("span id is all zeros")
	}
	if s.ParentSpanID != "" {
		if parent, err = spanID(s.ParentSpanID); err != nil {
			return trace, 0, 0, fmt.Errorf("parent span id: %w", err)
		}
	}
	return trace, span, parent, nil
}

func spanID(s string) (model.SpanID, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%q is not 16 hex digits", s)
	}
	v, ok := parseHex64(s)
	if !ok {
		return 0, fmt.Errorf("%q is not hex", s)
	}
	return model.SpanID(v), nil
}

// unhex maps a hex digit (either case) to its value and every other byte
// to 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	for i, c := range "ABCDEF" {
		t[c] = byte(10 + i)
	}
	return t
}()

// parseHex64 parses 16 hex digits, as strconv.ParseUint(s, 16, 64) does
// for them, without its error values.
func parseHex64(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	var v uint64
	var bad byte
	for i := range 16 {
		d := unhex[s[i]]
		bad |= d
		v = v<<4 | uint64(d&0xf)
	}
	return v, bad&0xf0 == 0
}

// modelBuf holds the model of a batch of spans: the spans, their tags and
// references in three arrays for the whole batch instead of several
// allocations per span. An exporter keeps one for all its batches (they
// are sent one at a time): reset readies it for the next.
type modelBuf struct {
	spans []model.Span
	tags  []model.KeyValue
	refs  []model.SpanRef
}

// reset empties b for a batch of spans, with room for all of them: toModel
// returns pointers into b.spans, which must not move. What the last batch
// left is overwritten, not cleared: b holds on to one batch's strings at
// most.
func (b *modelBuf) reset(spans []parsedSpan) {
	ntags := 0
	for i := range spans {
		ntags += len(spans[i].s.SpanTags) + maxOwnTags
	}
	if cap(b.spans) < len(spans) {
		b.spans = make([]model.Span, 0, len(spans))
	}
	if cap(b.tags) < ntags {
		b.tags = make([]model.KeyValue, 0, ntags)
	}
	if cap(b.refs) < len(spans) {
		b.refs = make([]model.SpanRef, 0, len(spans))
	}
	b.spans, b.tags, b.refs = b.spans[:0], b.tags[:0], b.refs[:0]
}

// maxOwnTags is the most tags toModel adds to a span's spanTags.
const maxOwnTags = 6

// Bounds of the encoded size of the parts of a span toModel makes, strings
// and bytes aside: every field present, each varint at its longest (10
// bytes), plus its tag and length prefix. The grpc exporter marshals a
// request into a buffer of the bound of its spans' sizes (spanBound)
// instead of computing the request's exact size first (see
// gogoCodecV2.Marshal); TestSpanBoundCoversSize checks them against
// gogo's Size.
const (
	// TraceID (2+16), SpanID (2+8), OperationName's prefix (11), Flags
	// (11), StartTime and Duration (11 + 2×11 each), the span's own
	// prefix in the Batch (11).
	spanFixedBound = 18 + 10 + 11 + 11 + 2*33 + 11
	// A SpanRef: its TraceID (18), SpanID (10), RefType (11), prefix (11).
	refBound = 18 + 10 + 11 + 11
	// A KeyValue: Key, VStr and VBinary prefixes (11 each), VType (11),
	// VBool (2), VInt64 (11), VFloat64 (9), its own prefix (11).
	kvFixedBound = 3*11 + 11 + 2 + 11 + 9 + 11
	// The PostSpansRequest's Batch prefix (11) and the Batch's Process
	// prefix (11), the Process's own size aside.
	requestFixedBound = 11 + 11
)

// kvBound bounds the encoded size of kv in a span.
func kvBound(kv *model.KeyValue) int {
	return kvFixedBound + len(kv.Key) + len(kv.VStr) + len(kv.VBinary)
}

// toModel converts a span whose ids Report parsed into Jaeger's model,
// with tags as Jaeger's own OTLP translator writes them (span.kind,
// otel.status_code, error, http.status_code), so the UI shows the same.
// The span lives in b: b must have been reset for at least as many spans.
// bound bounds the span's encoded size in a Batch.
func (b *modelBuf) toModel(p *parsedSpan) (m *model.Span, bound int) {
	s := p.s
	b.spans = append(b.spans, model.Span{
		TraceID:       p.trace,
		SpanID:        p.id,
		OperationName: s.SpanName,
		Flags:         model.SampledFlag,
		StartTime:     s.StartTime.UTC(),
		Duration:      max(s.EndTime.Sub(s.StartTime), 0),
	})
	m = &b.spans[len(b.spans)-1]
	bound = spanFixedBound + len(s.SpanName)
	if p.parent != 0 {
		b.refs = append(b.refs, model.NewChildOfRef(p.trace, p.parent))
		n := len(b.refs)
		m.References = b.refs[n-1 : n : n]
		bound += refBound
	}
	// The tags are written in place: reset made room for them all.
	start := len(b.tags)
	tags := b.tags[:start+len(s.SpanTags)+maxOwnTags]
	n := start
	add := func(k, v string) {
		tags[n] = model.KeyValue{Key: k, VType: model.StringType, VStr: v}
		n++
	}
	if s.SpanKind != "" && s.SpanKind != template.SpanKindInternal {
		add("span.kind", s.SpanKind)
	}
	switch s.Status {
	case template.SpanStatusError:
		add("otel.status_code", "ERROR")
		tags[n] = model.KeyValue{Key: "error", VType: model.BoolType, VBool: true}
		n++
	case template.SpanStatusOK:
		add("otel.status_code", "OK")
	}
	if s.StatusMessage != "" {
		add("otel.status_description", s.StatusMessage)
	}
	if s.TraceState != "" {
		add("w3c.tracestate", s.TraceState)
	}
	if s.HTTPStatusCode != 0 {
		if _, dup := s.Tag("http.status_code"); !dup {
			tags[n] = model.KeyValue{Key: "http.status_code", VType: model.Int64Type, VInt64: s.HTTPStatusCode}
			n++
		}
	}
	for i := range s.SpanTags { // in key order already
		setKeyValue(&tags[n], s.SpanTags[i].Key, s.SpanTags[i].Value)
		n++
	}
	for i := start; i < n; i++ {
		bound += kvBound(&tags[i])
	}
	if n > start {
		// Each span's slice ends at its own tags: nothing appends to it.
		m.Tags = tags[start:n:n]
	}
	b.tags = tags[:n]
	return m, bound
}

// setKeyValue sets kv to a tag typed by its Go value; what has no Jaeger
// type becomes a string.
func setKeyValue(kv *model.KeyValue, k string, v any) {
	switch v := v.(type) {
	case string:
		*kv = model.KeyValue{Key: k, VType: model.StringType, VStr: v}
	case bool:
		*kv = model.KeyValue{Key: k, VType: model.BoolType, VBool: v}
	case int64:
		*kv = model.KeyValue{Key: k, VType: model.Int64Type, VInt64: v}
	case int:
		*kv = model.KeyValue{Key: k, VType: model.Int64Type, VInt64: int64(v)}
	case int32:
		*kv = model.KeyValue{Key: k, VType: model.Int64Type, VInt64: int64(v)}
	case uint64:
		if v <= math.MaxInt64 {
			*kv = model.KeyValue{Key: k, VType: model.Int64Type, VInt64: int64(v)}
		} else {
			*kv = model.KeyValue{Key: k, VType: model.StringType, VStr: strconv.FormatUint(v, 10)}
		}
	case float64:
		*kv = model.KeyValue{Key: k, VType: model.Float64Type, VFloat64: v}
	case float32:
		*kv = model.KeyValue{Key: k, VType: model.Float64Type, VFloat64: float64(v)}
	case time.Time:
		*kv = model.KeyValue{Key: k, VType: model.StringType, VStr: v.UTC().Format(time.RFC3339Nano)}
	case time.Duration:
		*kv = model.KeyValue{Key: k, VType: model.StringType, VStr: v.String()}
	case []byte:
		*kv = model.KeyValue{Key: k, VType: model.BinaryType, VBinary: v}
	case nil:
		*kv = model.KeyValue{Key: k, VType: model.StringType}
	default:
		*kv = model.KeyValue{Key: k, VType: model.StringType, VStr: fmt.Sprint(v)}
	}
}

// process is the Batch process of a service: its name and the configured
// process tags, sorted.
func process(service string, tags map[string]string) *model.Process {
	kvs := make([]model.KeyValue, 0, len(tags))
	for k, v := range tags {
		kvs = append(kvs, model.String(k, v))
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	return model.NewProcess(service, kvs)
}
