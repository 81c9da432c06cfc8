package accesslog_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/accesslog"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/jsonline"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/template"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, accesslog.Factory(), []configtest.Case{
		{File: "default.yaml"},
		{File: "file.yaml"},
		{File: "format.bad.yaml", Want: "path: required (stdout, stderr or a file path)\n" +
			`format: unknown format "text" (only json is supported)`},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 1: field file not found in type accesslog.Config"},
	})
}

func newReporter(t *testing.T, set adapters.Settings, path string) adapters.Reporter {
	t.Helper()
	cfg := accesslog.NewConfig()
	cfg.Path = path
	h, err := accesslog.Factory().Create(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h.(adapters.Reporter)
}

// readLines parses every line of path as a JSON object, numbers as
// json.Number.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for sc := bufio.NewScanner(bytes.NewReader(data)); sc.Scan(); {
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestReportWritesJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	// The file is appended to, never truncated.
	if err := os.WriteFile(path, []byte(`{"old":true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	h := newReporter(t, adapters.Settings{Name: "access", Registerer: reg, Now: func() time.Time { return now }}, path)

	ts := time.Date(2025, 3, 1, 11, 59, 58, 123456789, time.FixedZone("CET", 3600))
	err := h.Report(context.Background(), []template.Instance{
		&template.LogEntry{
			Name:      "accesslog",
			Severity:  "WARNING",
			Timestamp: ts,
			Variables: template.FieldsOf(map[string]any{
				"path":          "/search?q=<b>&lang=en",
				"responseCode":  int64(503),
				"latency":       12300 * time.Microsecond,
				"ratio":         0.25,
				"nan":           math.NaN(),
				"mtls":          true,
				"sourceIp":      []byte{10, 0, 0, 7},
				"started":       ts,
				"headers":       map[string]string{"x-b": "2", "x-a": "1"},
				"missing":       nil,
				"instance":      "shadowed",
				"requestSize":   int64(0),
				"destinationIp": []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
			}),
		},
		&template.Metric{Name: "not a log entry"},
		&template.LogEntry{Name: "minimal"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readLines(t, path)
	want := []map[string]any{
		{"old": true},
		{
			"time":          "2025-03-01T10:59:58.123456789Z",
			"severity":      "WARNING",
			"instance":      "accesslog",
			"path":          "/search?q=<b>&lang=en",
			"responseCode":  json.Number("503"),
			"latency":       "12.3ms",
			"ratio":         json.Number("0.25"),
			"nan":           "NaN",
			"mtls":          true,
			"sourceIp":      "10.0.0.7",
			"started":       "2025-03-01T10:59:58.123456789Z",
			"headers":       map[string]any{"x-a": "1", "x-b": "2"},
			"missing":       nil,
			"requestSize":   json.Number("0"),
			"destinationIp": "2001:db8::1",
		},
		{"time": "2025-03-01T12:00:00Z", "severity": "INFO", "instance": "minimal"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines:\n got: %v\nwant: %v", got, want)
	}

	// Keys are sorted and HTML is not escaped.
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if !strings.HasPrefix(lines[1], `{"destinationIp":"2001:db8::1","headers":{"x-a":"1","x-b":"2"},"instance":"accesslog","latency":"12.3ms",`) ||
		!strings.Contains(lines[1], `"path":"/search?q=<b>&lang=en"`) {
		t.Errorf("line = %s", lines[1])
	}

	if n := metrictest.Value(t, reg, "sidemix_accesslog_entries_total", map[string]string{"handler": "access"}); n != 2 {
		t.Errorf("entries = %v, want 2", n)
	}
	if n := metrictest.Value(t, reg, "sidemix_accesslog_dropped_total", map[string]string{"handler": "access", "reason": "wrong_template"}); n != 1 {
		t.Errorf("dropped = %v, want 1", n)
	}
}

func TestCloseClosesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	cfg := accesslog.NewConfig()
	cfg.Path = path
	h, err := accesslog.Factory().Create(context.Background(), adapters.Settings{Name: "access"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := h.(adapters.Reporter)
	if err := r.Report(context.Background(), []template.Instance{&template.LogEntry{Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := r.Report(context.Background(), []template.Instance{&template.LogEntry{Name: "b"}}); err == nil {
		t.Error("Report after Close succeeded")
	}
	if got := readLines(t, path); len(got) != 1 || got[0]["instance"] != "a" {
		t.Errorf("lines = %v", got)
	}
}

func TestCreateFailsOnAnUnwritablePath(t *testing.T) {
	cfg := accesslog.NewConfig()
	cfg.Path = filepath.Join(t.TempDir(), "no", "such", "dir", "access.log")
	_, err := accesslog.Factory().Create(context.Background(), adapters.Settings{}, cfg)
	if err == nil || !strings.HasPrefix(err.Error(), "accesslog: path: open ") {
		t.Errorf("Create = %v, want an open error", err)
	}
}

func ExampleFactory() {
	f := accesslog.Factory()
	cfg, _ := configtest.Decode(f, []byte("path: stdout\n"))
	h, err := f.Create(context.Background(), adapters.Settings{Name: "access"}, cfg)
	if err != nil {
		panic(err)
	}
	defer h.Close(context.Background())
	h.(adapters.Reporter).Report(context.Background(), []template.Instance{&template.LogEntry{
		Name:      "accesslog",
		Timestamp: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Variables: template.FieldsOf(map[string]any{
			"method":       "GET",
			"path":         "/ratings/1",
			"responseCode": int64(200),
			"latency":      3 * time.Millisecond,
			"sourceIp":     []byte{10, 0, 0, 7},
		}),
	}})
	// Output:
	// {"instance":"accesslog","latency":"3ms","method":"GET","path":"/ratings/1","responseCode":200,"severity":"INFO","sourceIp":"10.0.0.7","time":"2025-03-01T12:00:00Z"}
}

// TestReportMatchesEncodingJSON checks the file byte for byte against what
// encoding/json writes for each entry's map, as the adapter once did (the
// value types are covered in adapters/internal/jsonline).
func TestReportMatchesEncodingJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	h := newReporter(t, adapters.Settings{Name: "access", Now: func() time.Time { return now }}, path)
	insts := benchBatch()[:20]
	insts = append(insts, &template.LogEntry{Name: "odd", Variables: template.FieldsOf(map[string]any{
		"s": "héllo <b>\"\u2028\xff", "f": 1e-7, "inf": math.Inf(1), "dur": 1500 * time.Nanosecond,
		"headers": map[string]string{"b": "2", "a": "1"}, "nil": nil, "goint": 3, "anyslice": []any{"a", nil},
	})})
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	for _, inst := range insts {
		e := inst.(*template.LogEntry)
		m := map[string]any{}
		for k, v := range e.Variables.All() {
			m[k] = jsonline.Value(v)
		}
		ts, sev := e.Timestamp, e.Severity
		if ts.IsZero() {
			ts = now
		}
		if sev == "" {
			sev = "INFO"
		}
		m["time"], m["severity"], m["instance"] = ts.UTC().Format(time.RFC3339Nano), sev, e.Name
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
	}
	// Two reports: the second reuses the first one's buffer.
	for _, batch := range [][]template.Instance{insts[:10], insts[10:]} {
		if err := h.Report(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("file:\n%s\nwant:\n%s", got, want.Bytes())
	}
}
