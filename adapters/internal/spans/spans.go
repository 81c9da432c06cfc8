package spans

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sidemix/sidemix/adapters/template"
)

// ScopeName is the instrumentation scope of every span and log record.
const ScopeName = "sidemix"

// ServiceNameKey is the resource attribute that names a span's service.
const ServiceNameKey = "service.name"

// HTTPStatusCodeKey is the OpenTelemetry HTTP semantic convention for the
// response status; a span whose HTTPStatusCode is set carries it unless its
// tags already do.
const HTTPStatusCodeKey = "http.response.status_code"

// Traces converts spans to ptrace.Traces: one ResourceSpans per service
// name, in the order services first appear, holding one ScopeSpans. It
// returns how many spans were left out because of an invalid trace, span
// or parent span id. Nil entries are ignored.
func Traces(spans []*template.TraceSpan) (ptrace.Traces, int) {
	td := ptrace.NewTraces()
	byService := map[string]ptrace.SpanSlice{}
	skipped := 0
	for _, s := range spans {
		if s == nil {
			continue
		}
		ids, err := parseIDs(s)
		if err != nil {
			skipped++
			continue
		}
		svc := s.ServiceName()
		ss, ok := byService[svc]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr(ServiceNameKey, svc)
			sc := rs.ScopeSpans().AppendEmpty()
			sc.Scope().SetName(ScopeName)
			ss = sc.Spans()
			byService[svc] = ss
		}
		fill(ss.AppendEmpty(), s, ids)
	}
	return td, skipped
}

type spanIDs struct {
	trace  pcommon.TraceID
	span   pcommon.SpanID
	parent pcommon.SpanID // empty for a root
}

func parseIDs(s *template.TraceSpan) (spanIDs, error) {
	var ids spanIDs
	var err error
	if ids.trace, err = ParseTraceID(s.TraceID); err != nil {
		return ids, err
	}
	if ids.span, err = ParseSpanID(s.SpanID); err != nil {
		return ids, err
	}
	if s.ParentSpanID != "" {
		if ids.parent, err = ParseSpanID(s.ParentSpanID); err != nil {
			return ids, fmt.Errorf("parent: %w", err)
		}
	}
	return ids, nil
}

// ParseTraceID reads a trace id of 32 hex digits, not all zero.
func ParseTraceID(s string) (pcommon.TraceID, error) {
	var id pcommon.TraceID
	if err := decodeID(id[:], s); err != nil {
		return id, fmt.Errorf("trace id %q: %w", s, err)
	}
	return id, nil
}

// ParseSpanID reads a span id of 16 hex digits, not all zero.
func ParseSpanID(s string) (pcommon.SpanID, error) {
	var id pcommon.SpanID
	if err := decodeID(id[:], s); err != nil {
		return id, fmt.Errorf("span id %q: %w", s, err)
	}
	return id, nil
}

var errZeroID = errors.New("all zero")

func decodeID(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("want %d hex digits, got %d characters", 2*len(dst), len(s))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return errors.New("not hex")
	}
	for _, b := range dst {
		if b != 0 {
			return nil
		}
	}
	return errZeroID
}

func fill(sp ptrace.Span, s *template.TraceSpan, ids spanIDs) {
	sp.SetTraceID(ids.trace)
	sp.SetSpanID(ids.span)
	if !ids.parent.IsEmpty() {
		sp.SetParentSpanID(ids.parent)
	}
	if s.TraceState != "" {
		sp.TraceState().FromRaw(s.TraceState)
	}
	sp.SetName(s.SpanName)
	sp.SetKind(Kind(s.SpanKind))
	sp.SetStartTimestamp(timestamp(s.StartTime))
	sp.SetEndTimestamp(timestamp(s.EndTime))
	sp.Status().SetCode(StatusCode(s.Status))
	if sp.Status().Code() == ptrace.StatusCodeError {
		// OpenTelemetry keeps a description for errors only.
		sp.Status().SetMessage(s.StatusMessage)
	}
	attrs := sp.Attributes()
	attrs.EnsureCapacity(len(s.SpanTags) + 1)
	for _, t := range s.SpanTags { // in key order already
		putValue(attrs, t.Key, t.Value)
	}
	if _, ok := s.Tag(HTTPStatusCodeKey); !ok && s.HTTPStatusCode != 0 {
		attrs.PutInt(HTTPStatusCodeKey, s.HTTPStatusCode)
	}
}

// Kind maps a TraceSpan's kind to OpenTelemetry's; an unknown one is
// unspecified.
func Kind(k string) ptrace.SpanKind {
	switch strings.ToLower(k) {
	case template.SpanKindServer:
		return ptrace.SpanKindServer
	case template.SpanKindClient:
		return ptrace.SpanKindClient
	case template.SpanKindProducer:
		return ptrace.SpanKindProducer
	case template.SpanKindConsumer:
		return ptrace.SpanKindConsumer
	case template.SpanKindInternal:
		return ptrace.SpanKindInternal
	}
	return ptrace.SpanKindUnspecified
}

// StatusCode maps a TraceSpan's status to OpenTelemetry's; an unknown one
// is unset.
func StatusCode(s string) ptrace.StatusCode {
	switch strings.ToLower(s) {
	case template.SpanStatusOK:
		return ptrace.StatusCodeOk
	case template.SpanStatusError:
		return ptrace.StatusCodeError
	}
	return ptrace.StatusCodeUnset
}

func timestamp(t time.Time) pcommon.Timestamp {
	if t.IsZero() {
		return 0
	}
	return pcommon.NewTimestampFromTime(t)
}

// putAll adds values in key order, so that the output is deterministic.
func putAll(attrs pcommon.Map, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		putValue(attrs, k, m[k])
	}
}

// putValue adds one template value: strings, integers, doubles and bools
// as such, string maps and lists as OpenTelemetry maps and slices, times
// and anything else as text (template.FormatValue).
func putValue(attrs pcommon.Map, k string, v any) {
	switch x := v.(type) {
	case nil:
	case string:
		attrs.PutStr(k, x)
	case int64:
		attrs.PutInt(k, x)
	case int:
		attrs.PutInt(k, int64(x))
	case float64:
		attrs.PutDouble(k, x)
	case bool:
		attrs.PutBool(k, x)
	case map[string]string:
		m := attrs.PutEmptyMap(k)
		m.EnsureCapacity(len(x))
		for mk, mv := range x {
			m.PutStr(mk, mv)
		}
	case map[string]any:
		putAll(attrs.PutEmptyMap(k), x)
	case []any:
		sl := attrs.PutEmptySlice(k)
		for _, e := range x {
			sl.AppendEmpty().SetStr(template.FormatValue(e))
		}
	default:
		attrs.PutStr(k, template.FormatValue(v))
	}
}

// Logs converts log entries to plog.Logs: one ResourceLogs (service.name
// "sidemix") with one scope; each record has the entry's timestamp,
// severity text and number, its variables as attributes, the instance name
// as attribute sidemix.instance, and a short body (see [Body]). Nil entries
// are ignored.
func Logs(entries []*template.LogEntry) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr(ServiceNameKey, ScopeName)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(ScopeName)
	recs := sl.LogRecords()
	recs.EnsureCapacity(len(entries))
	for _, e := range entries {
		if e == nil {
			continue
		}
		r := recs.AppendEmpty()
		r.SetTimestamp(timestamp(e.Timestamp))
		r.SetSeverityText(e.Severity)
		r.SetSeverityNumber(Severity(e.Severity))
		r.Body().SetStr(Body(e))
		attrs := r.Attributes()
		attrs.EnsureCapacity(e.Variables.Len() + 1)
		for i := range e.Variables.Len() {
			putValue(attrs, e.Variables.Name(i), e.Variables.At(i))
		}
		attrs.PutStr(InstanceKey, e.Name)
	}
	return ld
}

// InstanceKey is the log record attribute naming the logentry instance.
const InstanceKey = "sidemix.instance"

// Severity maps a logentry severity (any case) to OpenTelemetry's number:
// trace, debug, info, notice, warn/warning, error, critical, fatal, alert,
// emergency; anything else is unspecified.
func Severity(s string) plog.SeverityNumber {
	switch strings.ToLower(s) {
	case "trace":
		return plog.SeverityNumberTrace
	case "debug":
		return plog.SeverityNumberDebug
	case "info", "default":
		return plog.SeverityNumberInfo
	case "notice":
		return plog.SeverityNumberInfo2
	case "warn", "warning":
		return plog.SeverityNumberWarn
	case "error":
		return plog.SeverityNumberError
	case "critical", "fatal":
		return plog.SeverityNumberFatal
	case "alert":
		return plog.SeverityNumberFatal2
	case "emergency":
		return plog.SeverityNumberFatal4
	}
	return plog.SeverityNumberUnspecified
}

// Body is a one-line summary of an entry: its instance name, then the
// method, url (or path) and response code when its variables have them,
// as in "accesslog GET /invoices 200".
func Body(e *template.LogEntry) string {
	var sb strings.Builder
	sb.WriteString(e.Name)
	for _, keys := range [][]string{{"method"}, {"url", "path"}, {"responseCode"}} {
		for _, k := range keys {
			if v, ok := e.Variables.Get(k); ok && v != nil {
				if s := template.FormatValue(v); s != "" {
					sb.WriteByte(' ')
					sb.WriteString(s)
					break
				}
			}
		}
	}
	return sb.String()
}
