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
func (b *modelBuf) reset(spans []*template.TraceSpan) {
	ntags := 0
	for _, s := range spans {
		ntags += len(s.SpanTags) + 6 // at most, the tags toModel adds itself
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

// toModel converts a span whose ids ids() accepted into Jaeger's model,
// with tags as Jaeger's own OTLP translator writes them (span.kind,
// otel.status_code, error, http.status_code), so the UI shows the same.
// The span lives in b: b must have been made for at least as many spans.
func (b *modelBuf) toModel(s *template.TraceSpan, trace model.TraceID, span, parent model.SpanID) *model.Span {
	b.spans = append(b.spans, model.Span{
		TraceID:       trace,
		SpanID:        span,
		OperationName: s.SpanName,
		Flags:         model.SampledFlag,
		StartTime:     s.StartTime.UTC(),
		Duration:      max(s.EndTime.Sub(s.StartTime), 0),
	})
	m := &b.spans[len(b.spans)-1]
	if parent != 0 {
		b.refs = append(b.refs, model.NewChildOfRef(trace, parent))
		n := len(b.refs)
		m.References = b.refs[n-1 : n : n]
	}
	start := len(b.tags)
	tags := b.tags
	if s.SpanKind != "" && s.SpanKind != template.SpanKindInternal {
		tags = append(tags, model.String("span.kind", s.SpanKind))
	}
	switch s.Status {
	case template.SpanStatusError:
		tags = append(tags, model.String("otel.status_code", "ERROR"), model.Bool("error", true))
	case template.SpanStatusOK:
		tags = append(tags, model.String("otel.status_code", "OK"))
	}
	if s.StatusMessage != "" {
		tags = append(tags, model.String("otel.status_description", s.StatusMessage))
	}
	if s.TraceState != "" {
		tags = append(tags, model.String("w3c.tracestate", s.TraceState))
	}
	if s.HTTPStatusCode != 0 {
		if _, dup := s.Tag("http.status_code"); !dup {
			tags = append(tags, model.Int64("http.status_code", s.HTTPStatusCode))
		}
	}
	for _, t := range s.SpanTags { // in key order already
		tags = append(tags, keyValue(t.Key, t.Value))
	}
	if len(tags) > start {
		// Appending to b.tags past its capacity leaves earlier spans' tags
		// where they were, so each span's slice stays its own.
		m.Tags = tags[start:len(tags):len(tags)]
	}
	b.tags = tags
	return m
}

// keyValue types a tag by its Go value; what has no Jaeger type becomes a
// string.
func keyValue(k string, v any) model.KeyValue {
	switch v := v.(type) {
	case string:
		return model.String(k, v)
	case bool:
		return model.Bool(k, v)
	case int64:
		return model.Int64(k, v)
	case int:
		return model.Int64(k, int64(v))
	case int32:
		return model.Int64(k, int64(v))
	case uint64:
		if v <= math.MaxInt64 {
			return model.Int64(k, int64(v))
		}
		return model.String(k, strconv.FormatUint(v, 10))
	case float64:
		return model.Float64(k, v)
	case float32:
		return model.Float64(k, float64(v))
	case time.Time:
		return model.String(k, v.UTC().Format(time.RFC3339Nano))
	case time.Duration:
		return model.String(k, v.String())
	case []byte:
		return model.Binary(k, v)
	case nil:
		return model.String(k, "")
	default:
		return model.String(k, fmt.Sprint(v))
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
