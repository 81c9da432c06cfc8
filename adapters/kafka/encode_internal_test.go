package kafka

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
)

// referenceLogJSON is what encoding/json writes for a log entry's map; the
// hand-written encoder must match it byte for byte.
func referenceLogJSON(t *testing.T, e *template.LogEntry, now time.Time) string {
	t.Helper()
	m := make(map[string]any, len(e.Variables)+3)
	for k, v := range e.Variables {
		m[k] = jsonValue(v)
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
	strs := []string{"", "plain", `q"uote`, `back\slash`, "tab\tnew\nline\r", "\x00\x01\x1f\x7f", "<b>&amp;</b>",
		"héllo wörld", "日本", "\u2028\u2029", "bad\xffutf8", "emoji 😀", "/search?q=a&lang=en"}
	floats := []float64{0, math.Copysign(0, -1), 1, -1.5, 0.25, 123456.789, 1e-6, 1e-7, 9.99e-7, 1e20, 1e21, -1e21, 1.5e300, 5e-324,
		math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64}
	entries := []*template.LogEntry{
		{Name: "minimal"},
		{Name: "a\"b", Severity: "WARNING", Timestamp: time.Date(2025, 3, 1, 11, 59, 58, 123456789, time.FixedZone("CET", 3600))},
		{Name: "collide", Variables: map[string]any{"time": "x", "severity": "y", "instance": "z", "a": int64(1), "zz": nil}},
	}
	vars := map[string]any{
		"int": int64(-42), "intmax": int64(math.MaxInt64), "goint": 7, "bool": true, "no": false, "nil": nil,
		"dur": 12300 * time.Microsecond, "when": now, "ip4": []byte{10, 0, 0, 7},
		"ip6": []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "raw": []byte{1, 2, 3},
		"headers": map[string]string{"x-b": "2", "x-a": "1\"", "": "empty"}, "emptymap": map[string]string{},
	}
	for i, s := range strs {
		vars[string(rune('A'+i))+s] = s
	}
	for i, f := range floats {
		vars["f"+string(rune('a'+i))] = f
	}
	entries = append(entries, &template.LogEntry{Name: "all", Variables: vars})
	for _, e := range entries {
		got := string(appendLogJSON(nil, e, now))
		if want := referenceLogJSON(t, e, now); got != want {
			t.Errorf("entry %s:\n got %s\nwant %s", e.Name, got, want)
		}
	}
}

func BenchmarkAppendLogJSON(b *testing.B) {
	e := &template.LogEntry{Name: "accesslog", Severity: "info", Timestamp: time.Now(), Variables: map[string]any{
		"reporter": "destination", "sourceWorkload": "product", "destinationWorkload": "invoice",
		"destinationServiceHost": "invoice.shop.svc.cluster.local", "method": "POST", "url": "/invoices",
		"responseCode": int64(201), "requestSize": int64(49), "latency": 1200 * time.Microsecond,
		"requestId": "cf1e6ba2-7093-439c-9c03-b63fc40c3f18", "userAgent": "Go-http-client/1.1",
	}}
	var buf []byte
	for b.Loop() {
		buf = appendLogJSON(buf[:0], e, time.Time{})
	}
}
