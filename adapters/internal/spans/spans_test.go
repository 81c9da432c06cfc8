package spans

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sidemix/sidemix/adapters/template"
)

var t0 = time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)

func span(kind, src, dst, id, parent string) *template.TraceSpan {
	return &template.TraceSpan{
		Name: "span", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: id, ParentSpanID: parent,
		SpanName: "GET /invoices", StartTime: t0, EndTime: t0.Add(25 * time.Millisecond),
		SpanKind: kind, Status: template.SpanStatusUnset, SourceName: src, DestinationName: dst,
	}
}

// roundTrip marshals td with the OTLP protobuf marshaler and reads it back.
func roundTrip(t *testing.T, td ptrace.Traces) ptrace.Traces {
	t.Helper()
	buf, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	out, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(buf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTraces(t *testing.T) {
	server := span(template.SpanKindServer, "product", "invoice", "00f067aa0ba902b7", "b7ad6b7169203331")
	server.TraceState = "congo=t61rcWkgMzE"
	server.Status, server.StatusMessage, server.HTTPStatusCode = template.SpanStatusError, "upstream failed", 503
	server.SpanTags = []template.SpanTag{
		{Key: "at", Value: t0},
		{Key: "cached", Value: true},
		{Key: "client.address", Value: []byte{10, 0, 0, 7}},
		{Key: "http.request.method", Value: "GET"},
		{Key: "latency", Value: 25 * time.Millisecond},
		{Key: "ratio", Value: 0.5},
		{Key: "retries", Value: int64(2)},
	}
	client := span(template.SpanKindClient, "product", "invoice", "b7ad6b7169203331", "")
	client.HTTPStatusCode = 200
	client.SpanTags = []template.SpanTag{{Key: HTTPStatusCodeKey, Value: int64(299)}} // the tag wins
	notif := span(template.SpanKindClient, "invoice", "notification", "1111111111111111", "00f067aa0ba902b7")
	notif.Status = template.SpanStatusOK
	notif.StatusMessage = "dropped: not an error"

	td, skipped := Traces([]*template.TraceSpan{server, nil, client, notif})
	if skipped != 0 {
		t.Fatalf("skipped %d", skipped)
	}
	td = roundTrip(t, td)
	if td.SpanCount() != 3 || td.ResourceSpans().Len() != 2 {
		t.Fatalf("spans %d in %d resources", td.SpanCount(), td.ResourceSpans().Len())
	}
	services := map[string]ptrace.SpanSlice{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		name, _ := rs.Resource().Attributes().Get(ServiceNameKey)
		if rs.ScopeSpans().Len() != 1 || rs.ScopeSpans().At(0).Scope().Name() != ScopeName {
			t.Fatalf("%s: scopes %d", name.Str(), rs.ScopeSpans().Len())
		}
		services[name.Str()] = rs.ScopeSpans().At(0).Spans()
	}
	// The server span belongs to the callee, the client spans to callers.
	inv, prod := services["invoice"], services["product"]
	if inv.Len() != 2 || prod.Len() != 1 {
		t.Fatalf("invoice %d spans, product %d", inv.Len(), prod.Len())
	}

	s := inv.At(0)
	if s.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.SpanID().String() != "00f067aa0ba902b7" ||
		s.ParentSpanID().String() != "b7ad6b7169203331" || s.TraceState().AsRaw() != "congo=t61rcWkgMzE" {
		t.Errorf("ids %s %s %s %q", s.TraceID(), s.SpanID(), s.ParentSpanID(), s.TraceState().AsRaw())
	}
	if s.Name() != "GET /invoices" || s.Kind() != ptrace.SpanKindServer ||
		s.StartTimestamp().AsTime() != t0 || s.EndTimestamp().AsTime() != t0.Add(25*time.Millisecond) {
		t.Errorf("span %s %s %v %v", s.Name(), s.Kind(), s.StartTimestamp(), s.EndTimestamp())
	}
	if s.Status().Code() != ptrace.StatusCodeError || s.Status().Message() != "upstream failed" {
		t.Errorf("status %s %q", s.Status().Code(), s.Status().Message())
	}
	want := map[string]any{
		"http.request.method": "GET",
		"retries":             int64(2),
		"ratio":               0.5,
		"cached":              true,
		"at":                  "2026-11-23T18:00:00Z",
		"latency":             "25ms",
		"client.address":      "10.0.0.7",
		HTTPStatusCodeKey:     int64(503),
	}
	if got := s.Attributes().AsRaw(); !equalMaps(got, want) {
		t.Errorf("attributes %v\nwant %v", got, want)
	}
	// Attribute types are OpenTelemetry's, not all strings.
	if v, _ := s.Attributes().Get("retries"); v.Type() != pcommon.ValueTypeInt {
		t.Errorf("retries is %s", v.Type())
	}

	n := inv.At(1)
	if n.Kind() != ptrace.SpanKindClient || n.Status().Code() != ptrace.StatusCodeOk || n.Status().Message() != "" {
		t.Errorf("notification client span %s %s %q", n.Kind(), n.Status().Code(), n.Status().Message())
	}
	c := prod.At(0)
	if !c.ParentSpanID().IsEmpty() || c.Kind() != ptrace.SpanKindClient {
		t.Errorf("root client span parent %s kind %s", c.ParentSpanID(), c.Kind())
	}
	if v, _ := c.Attributes().Get(HTTPStatusCodeKey); v.Int() != 299 {
		t.Errorf("status code attribute %v", v.AsRaw())
	}
}

func equalMaps(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestTracesBadIDs(t *testing.T) {
	good := span(template.SpanKindServer, "a", "b", "00f067aa0ba902b7", "")
	bad := []*template.TraceSpan{
		span(template.SpanKindServer, "a", "b", "00f067aa0ba902b", ""),          // short
		span(template.SpanKindServer, "a", "b", "00f067aa0ba902bz", ""),         // not hex
		span(template.SpanKindServer, "a", "b", "0000000000000000", ""),         // zero
		span(template.SpanKindServer, "a", "b", "00f067aa0ba902b7", "nope"),     // parent
		span(template.SpanKindServer, "a", "b", "00f067aa0ba902b7", "00000000"), // parent short
	}
	zeroTrace := span(template.SpanKindServer, "a", "b", "00f067aa0ba902b7", "")
	zeroTrace.TraceID = "00000000000000000000000000000000"
	bad = append(bad, zeroTrace)
	td, skipped := Traces(append(bad, good))
	if skipped != len(bad) || td.SpanCount() != 1 {
		t.Fatalf("skipped %d, kept %d", skipped, td.SpanCount())
	}
	if _, err := ParseTraceID("4BF92F3577B34DA6A3CE929D0E0E4736"); err != nil {
		t.Errorf("upper case: %v", err)
	}
	if _, err := ParseSpanID("xyz"); err == nil || err.Error() != `span id "xyz": want 16 hex digits, got 3 characters` {
		t.Errorf("err = %v", err)
	}
	if td, n := Traces(nil); n != 0 || td.SpanCount() != 0 || td.ResourceSpans().Len() != 0 {
		t.Errorf("empty: %d %d", n, td.SpanCount())
	}
}

func TestKindsAndStatus(t *testing.T) {
	kinds := map[string]ptrace.SpanKind{
		"server": ptrace.SpanKindServer, "CLIENT": ptrace.SpanKindClient, "producer": ptrace.SpanKindProducer,
		"consumer": ptrace.SpanKindConsumer, "internal": ptrace.SpanKindInternal, "": ptrace.SpanKindUnspecified,
	}
	for in, want := range kinds {
		if got := Kind(in); got != want {
			t.Errorf("Kind(%q) = %s", in, got)
		}
	}
	status := map[string]ptrace.StatusCode{"unset": ptrace.StatusCodeUnset, "ok": ptrace.StatusCodeOk,
		"Error": ptrace.StatusCodeError, "": ptrace.StatusCodeUnset}
	for in, want := range status {
		if got := StatusCode(in); got != want {
			t.Errorf("StatusCode(%q) = %s", in, got)
		}
	}
}

func TestLogs(t *testing.T) {
	entries := []*template.LogEntry{
		{Name: "accesslog", Severity: "error", Timestamp: t0, Variables: template.FieldsOf(map[string]any{
			"method": "GET", "url": "/invoices?id=1", "responseCode": int64(503),
			"latency": 25 * time.Millisecond, "mtls": false, "headers": map[string]string{"a": "b"},
		})},
		nil,
		{Name: "audit", Severity: "Warning", Variables: template.FieldsOf(map[string]any{"user": "ann"})},
	}
	buf, err := (&plog.ProtoMarshaler{}).MarshalLogs(Logs(entries))
	if err != nil {
		t.Fatal(err)
	}
	ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(buf)
	if err != nil {
		t.Fatal(err)
	}
	if ld.LogRecordCount() != 2 || ld.ResourceLogs().Len() != 1 {
		t.Fatalf("%d records in %d resources", ld.LogRecordCount(), ld.ResourceLogs().Len())
	}
	rl := ld.ResourceLogs().At(0)
	if v, _ := rl.Resource().Attributes().Get(ServiceNameKey); v.Str() != "sidemix" ||
		rl.ScopeLogs().At(0).Scope().Name() != ScopeName {
		t.Fatalf("resource %v", rl.Resource().Attributes().AsRaw())
	}
	recs := rl.ScopeLogs().At(0).LogRecords()
	r := recs.At(0)
	if r.Timestamp().AsTime() != t0 || r.SeverityText() != "error" || r.SeverityNumber() != plog.SeverityNumberError ||
		r.Body().Str() != "accesslog GET /invoices?id=1 503" {
		t.Errorf("record %v %q %s %q", r.Timestamp(), r.SeverityText(), r.SeverityNumber(), r.Body().Str())
	}
	attrs := r.Attributes().AsRaw()
	if attrs["responseCode"] != int64(503) || attrs["latency"] != "25ms" || attrs["mtls"] != false ||
		attrs[InstanceKey] != "accesslog" || attrs["headers"].(map[string]any)["a"] != "b" {
		t.Errorf("attributes %v", attrs)
	}
	r = recs.At(1)
	if r.Timestamp() != 0 || r.SeverityNumber() != plog.SeverityNumberWarn || r.Body().Str() != "audit" {
		t.Errorf("record %v %s %q", r.Timestamp(), r.SeverityNumber(), r.Body().Str())
	}
	if Severity("loud") != plog.SeverityNumberUnspecified || Severity("INFO") != plog.SeverityNumberInfo {
		t.Error("severity mapping")
	}
}
