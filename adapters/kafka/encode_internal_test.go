package kafka

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/jsonline"
	"github.com/sidemix/sidemix/adapters/template"
)

// referenceLogJSON is what encoding/json writes for a log entry's map (as
// the accesslog adapter once did); a record must match it byte for byte.
// adapters/internal/jsonline's own test covers every value type; this one
// checks the record is that encoding, without a newline.
func referenceLogJSON(t *testing.T, e *template.LogEntry, now time.Time) string {
	t.Helper()
	m := make(map[string]any, e.Variables.Len()+3)
	for k, v := range e.Variables.All() {
		m[k] = jsonline.Value(v)
	}
	ts := e.Timestamp
	if ts.IsZero() {
		ts = now
	}
	sev := e.Severity
	if sev == "" {
		sev = "INFO"
	}
	m["time"] = ts.UTC().Format(time.RFC3339Nano)
	m["severity"] = sev
	m["instance"] = e.Name
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

func TestLogJSONMatchesEncodingJSON(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	entries := []*template.LogEntry{
		{Name: "minimal"},
		{Name: "a\"b", Severity: "WARNING", Timestamp: time.Date(2025, 3, 1, 11, 59, 58, 123456789, time.FixedZone("CET", 3600))},
		{Name: "collide", Variables: template.FieldsOf(map[string]any{"time": "x", "severity": "y", "instance": "z", "a": int64(1), "zz": nil})},
		{Name: "all", Variables: template.FieldsOf(map[string]any{
			"s": "héllo <b>\"\u2028\xff", "int": int64(-42), "goint": 7, "bool": true, "nil": nil,
			"f": 1e-7, "nan": math.NaN(), "inf": math.Inf(-1), "dur": 1500 * time.Nanosecond, "when": now,
			"ip4": []byte{10, 0, 0, 7}, "raw": []byte{1, 2, 3}, "headers": map[string]string{"x-b": "2", "x-a": "1\""},
			"anymap": map[string]any{"k": 1}, "anyslice": []any{"a", nil},
		})},
	}
	for _, e := range entries {
		got, err := encodeJSON(e, now)
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceLogJSON(t, e, now); string(got) != want {
			t.Errorf("entry %s:\n got %s\nwant %s", e.Name, got, want)
		}
	}
	// Records do not share memory: the first is intact after the second.
	a, _ := encodeJSON(entries[0], now)
	want := string(a)
	encodeJSON(entries[3], now)
	if string(a) != want {
		t.Errorf("record changed by a later encoding: %s", a)
	}
}

func BenchmarkEncodeLogJSON(b *testing.B) {
	e := &template.LogEntry{Name: "accesslog", Severity: "info", Timestamp: time.Now(), Variables: template.FieldsOf(map[string]any{
		"reporter": "destination", "sourceWorkload": "product", "destinationWorkload": "invoice",
		"destinationServiceHost": "invoice.shop.svc.cluster.local", "method": "POST", "url": "/invoices",
		"responseCode": int64(201), "requestSize": int64(49), "latency": 1200 * time.Microsecond,
		"requestId": "cf1e6ba2-7093-439c-9c03-b63fc40c3f18", "userAgent": "Go-http-client/1.1",
	})}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeJSON(e, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}
