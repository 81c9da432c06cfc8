package jsonline_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/jsonline"
	"github.com/sidemix/sidemix/adapters/template"
)

// reference is what the accesslog adapter wrote before this package: the
// entry as a map[string]any, values through Value, encoded by
// encoding/json with HTML escaping off (which sorts the keys), without the
// newline. The encoder must match it byte for byte.
func reference(t testing.TB, e *template.LogEntry, now time.Time) string {
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
	return encodingJSON(t, m)
}

func encodingJSON(t testing.TB, v any) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

var strs = []string{"", "plain", `q"uote`, `back\slash`, "tab\tnew\nline\r", "\b\f\v", "\x00\x01\x1f\x7f", "<b>&amp;</b>",
	"héllo wörld", "日本", "\u2028\u2029", "a\u2028b\u2029c", "bad\xffutf8", "\xff", "trunc\xe6\x97", "\xed\xa0\x80 surrogate",
	"emoji 😀", "/search?q=a&lang=en", "µs"}

func TestLogEntryMatchesEncodingJSON(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	floats := []float64{0, math.Copysign(0, -1), 1, -1.5, 0.25, 123456.789, 1e-6, 1e-7, 9.99e-7, 1e20, 1e21, -1e21, 1.5e300, 5e-324,
		math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, 1e-10, 123e-100}
	entries := []*template.LogEntry{
		{Name: "minimal"},
		{Name: "a\"b", Severity: "WARNING", Timestamp: time.Date(2025, 3, 1, 11, 59, 58, 123456789, time.FixedZone("CET", 3600))},
		{Name: "collide", Variables: template.FieldsOf(map[string]any{"time": "x", "severity": "y", "instance": "z", "a": int64(1), "zz": nil})},
		{Name: "empty vars", Variables: template.FieldsOf(map[string]any{})},
	}
	vars := map[string]any{
		// the types templates carry
		"int": int64(-42), "intmax": int64(math.MaxInt64), "intmin": int64(math.MinInt64), "goint": 7, "bool": true, "no": false, "nil": nil,
		"dur": 12300 * time.Microsecond, "durus": 1500 * time.Nanosecond, "durns": time.Duration(7), "dur0": time.Duration(0),
		"durneg": -3 * time.Second, "durlong": 49*time.Hour + 3*time.Millisecond,
		"when": now, "whenzone": time.Date(2025, 3, 1, 1, 2, 3, 4000, time.FixedZone("X", -7*3600)), "whenzero": time.Time{},
		"ip4": []byte{10, 0, 0, 7}, "ip6": []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		"ip4in6": []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 1}, "raw": []byte{1, 2, 0xab},
		"rawempty": []byte{}, "rawnil": []byte(nil),
		"headers": map[string]string{"x-b": "2", "x-a": "1\"", "": "empty", "ä": "\u2028", "bad\xff": "<&>"}, "emptymap": map[string]string{},
		"nilmap": map[string]string(nil),
		// what a template does not carry but a value could hold: its text
		"anymap": map[string]any{"b": 1, "a": []any{"x", nil, 2.5}}, "anyslice": []any{"a", int64(1), nil, true},
		"anymapnil": map[string]any(nil), "f32": float32(0.1), "i32": int32(-5), "u64": uint64(math.MaxUint64),
		"strs": []string{"a", "b"},
	}
	for i, s := range strs {
		vars[string(rune('A'+i))+s] = s
	}
	for i, f := range floats {
		vars["f"+string(rune('a'+i))] = f
	}
	entries = append(entries, &template.LogEntry{Name: "all", Severity: "\u2028", Variables: template.FieldsOf(vars)})

	var enc jsonline.Encoder
	var buf []byte
	for _, e := range entries {
		buf = enc.AppendLogEntry(buf[:0], e, now) // the buffer and scratch space reused
		if got, want := string(buf), reference(t, e, now); got != want {
			t.Errorf("entry %s:\n got %s\nwant %s", e.Name, got, want)
		}
	}
	for k, v := range vars {
		if got, want := string(jsonline.AppendValue(nil, v)), encodingJSON(t, jsonline.Value(v)); got != want {
			t.Errorf("AppendValue(%s) = %s, want %s", k, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range strs {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(jsonline.AppendString(nil, s)), encodingJSON(t, s); got != want {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestAppendLogEntryAllocs(t *testing.T) {
	e := benchEntry()
	var enc jsonline.Encoder
	buf := enc.AppendLogEntry(nil, e, time.Time{})
	// Only the latency's String is left.
	if n := testing.AllocsPerRun(100, func() { buf = enc.AppendLogEntry(buf[:0], e, time.Time{}) }); n > 1 {
		t.Errorf("AppendLogEntry allocates %v times per entry, want at most 1", n)
	}
}

func benchEntry() *template.LogEntry {
	return &template.LogEntry{Name: "accesslog", Severity: "info", Timestamp: time.Now(), Variables: template.FieldsOf(map[string]any{
		"reporter": "destination", "sourceWorkload": "product", "destinationWorkload": "invoice",
		"destinationServiceHost": "invoice.shop.svc.cluster.local", "method": "POST", "url": "/invoices",
		"responseCode": int64(201), "requestSize": int64(49), "latency": 1200 * time.Microsecond,
		"requestId": "cf1e6ba2-7093-439c-9c03-b63fc40c3f18", "userAgent": "Go-http-client/1.1",
		"sourceIp": []byte{10, 0, 0, 7},
	})}
}

func BenchmarkAppendLogEntry(b *testing.B) {
	e := benchEntry()
	var enc jsonline.Encoder
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.AppendLogEntry(buf[:0], e, time.Time{})
	}
}

// TestKeyOrderReused: one encoder writing entries whose variables are the
// same set, another set of the same size, a superset, a subset and sets
// with keys the fixed ones shadow, in turn, writes each as encoding/json
// does (the key order kept from the previous entry is used only when it
// fits).
func TestKeyOrderReused(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	sets := []map[string]any{
		{"b": "1", "a": int64(2), "c": true},
		{"b": "x", "a": int64(3), "c": false},
		{"b": "1", "a": int64(2), "d": true},
		{"b": "1", "a": int64(2), "d": true, "zz": "z"},
		{"a": "only"},
		{"time": "t", "a": "1", "severity": "s"},
		{"time": "t", "a": "1", "b": "s"},
		{"time": "t", "a": "1", "instance": "i"},
		{"x": "1", "a": "1", "instance": "i"},
		{},
		{"a": "1"},
	}
	var enc jsonline.Encoder
	var buf []byte
	for round := range 3 {
		for i, vars := range sets {
			e := &template.LogEntry{Name: "n", Severity: []string{"", "warn"}[i%2], Variables: template.FieldsOf(vars)}
			buf = enc.AppendLogEntry(buf[:0], e, now)
			if got, want := string(buf), reference(t, e, now); got != want {
				t.Errorf("round %d, entry %d:\n got %s\nwant %s", round, i, got, want)
			}
			buf = enc.AppendLogEntry(buf[:0], e, now) // the same keys again
			if got, want := string(buf), reference(t, e, now); got != want {
				t.Errorf("round %d, entry %d again:\n got %s\nwant %s", round, i, got, want)
			}
		}
	}
}

// TestAppendLine: AppendLine writes what AppendLogEntry writes, after
// Forget too (the buffer reused), an entry without a Timestamp at now,
// and allocates nothing once its buffer is large enough.
func TestAppendLine(t *testing.T) {
	entries := benchEntries(50)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	entries[7].Timestamp = time.Time{}
	entries[8].Timestamp = time.Time{}
	var enc jsonline.Encoder
	var buf []byte
	for round := range 3 {
		enc.Forget()
		buf = buf[:0]
		var want []byte
		for i, e := range entries {
			at := now.Add(time.Duration(round*len(entries)+i) * time.Millisecond)
			buf = enc.AppendLine(buf, e, at)
			buf = append(buf, '\n')
			want = append(want, reference(t, e, at)...)
			want = append(want, '\n')
		}
		if string(buf) != string(want) {
			t.Fatalf("round %d:\n got %s\nwant %s", round, buf, want)
		}
	}
	if n := testing.AllocsPerRun(20, func() {
		enc.Forget()
		buf = buf[:0]
		for _, e := range entries {
			buf = enc.AppendLine(buf, e, now)
		}
	}); n != 0 {
		t.Errorf("AppendLine into a buffer large enough allocates %v times per batch, want 0", n)
	}
}

// benchEntries are n entries of examples/default's accesslog instance as
// the policy package builds them: each its own map (keys the same strings,
// values per request), so encoding a batch reads maps that are not in the
// cache, as in the mixer.
func benchEntries(n int) []*template.LogEntry {
	keys := []string{"reporter", "sourceWorkload", "sourceNamespace", "sourcePrincipal", "destinationWorkload",
		"destinationNamespace", "destinationServiceHost", "destinationVersion", "routeName", "requestId", "protocol",
		"method", "url", "httpAuthority", "userAgent", "xForwardedFor", "responseCode", "responseFlags", "grpcStatus",
		"requestSize", "responseSize", "latency", "connectionSecurityPolicy"}
	layout, err := template.NewLayout(keys...)
	if err != nil {
		panic(err)
	}
	ts := time.Date(2026, 11, 23, 19, 0, 0, 0, time.UTC)
	entries := make([]*template.LogEntry, n)
	for i := range entries {
		vals := []any{"destination", "productpage-v1", "default", "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
			fmt.Sprintf("reviews-v%d", i%3+1), "default", "reviews.default.svc.cluster.local", "v1", "", fmt.Sprintf("cf1e6ba2-7093-439c-9c03-%012x", i),
			"http", "GET", fmt.Sprintf("/reviews/%d?lang=en&sort=date", i), "reviews:9080",
			"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "10.0.0.7",
			int64(200), "-", "", int64(0), int64(295 + i%100), time.Duration(800+i) * time.Microsecond, "mutual_tls"}
		vars := make(map[string]any, len(keys))
		for j, k := range keys {
			vars[k] = vals[j]
		}
		entries[i] = &template.LogEntry{Name: "accesslog", Severity: "info", Timestamp: ts.Add(time.Duration(i) * time.Millisecond), Variables: template.FieldsIn(layout, vars)}
	}
	return entries
}

// BenchmarkAppendLogEntryBatch encodes a mixerclient-size batch (1000
// entries) of examples/default's access log.
func BenchmarkAppendLogEntryBatch(b *testing.B) {
	entries := benchEntries(4000)
	var enc jsonline.Encoder
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, e := range entries {
			buf = enc.AppendLogEntry(buf, e, time.Time{})
			buf = append(buf, '\n')
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/entry")
}

// TestAppendStringEveryPosition: a byte that needs escaping (or a
// multi-byte character) anywhere in a string of plain ASCII, at each
// offset of the 8-byte words AppendString skips, is quoted as
// encoding/json quotes it.
func TestAppendStringEveryPosition(t *testing.T) {
	specials := []string{"\x00", "\x1f", " ", "!", `"`, "#", "[", `\`, "]", "~", "\x7f", "\x80", "\xff", "é", "\u2028", "😀", "\n", "\t"}
	for n := range 20 {
		for pos := 0; pos <= n; pos++ {
			for _, sp := range specials {
				s := strings.Repeat("a", pos) + sp + strings.Repeat("z", n-pos)
				if got, want := string(jsonline.AppendString(nil, s)), encodingJSON(t, s); got != want {
					t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
				}
			}
		}
	}
}

// BenchmarkAppendLineBatch is AppendLine over a batch into a buffer
// reused from one batch to the next, as the accesslog handler writes.
func BenchmarkAppendLineBatch(b *testing.B) {
	entries := benchEntries(1000)
	benchmarkAppendLine(b, entries)
}

// benchmarkAppendLine writes entries with AppendLine into a buffer reused
// from one batch to the next, as the accesslog handler does.
func benchmarkAppendLine(b *testing.B, entries []*template.LogEntry) {
	var enc jsonline.Encoder
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		enc.Forget()
		buf = buf[:0]
		for _, e := range entries {
			buf = enc.AppendLine(buf, e, time.Time{})
			buf = append(buf, '\n')
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/entry")
}

// TestKeyOrderOtherStrings: entries whose keys are equal but different
// strings (not the ones the kept order was made from), and entries with
// more variables than the slots that find them, are written as
// encoding/json writes them.
func TestKeyOrderOtherStrings(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	many := map[string]any{}
	for i := range 300 {
		many[fmt.Sprintf("var%03d", i)] = int64(i)
	}
	benchVars := benchEntries(1)[0].Variables.Map()
	for _, vars := range []map[string]any{benchVars, many} {
		var enc jsonline.Encoder
		var buf []byte
		for round := range 3 {
			copied := make(map[string]any, len(vars))
			for k, v := range vars {
				copied[strings.Clone(k)] = v
			}
			for _, m := range []map[string]any{vars, copied} {
				e := &template.LogEntry{Name: "n", Variables: template.FieldsOf(m)}
				buf = enc.AppendLogEntry(buf[:0], e, now)
				if got, want := string(buf), reference(t, e, now); got != want {
					t.Fatalf("round %d, %d variables:\n got %s\nwant %s", round, len(m), got, want)
				}
			}
		}
	}
}

// TestSharedLayouts: entries of two instances, each with its layout, in
// turns (an encoder's plan made for one layout is never used for the
// other), with a variable that a fixed key shadows, are written as
// encoding/json writes them.
func TestSharedLayouts(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	a, err := template.NewLayout("method", "path", "code")
	if err != nil {
		t.Fatal(err)
	}
	b, err := template.NewLayout("user", "time", "zone")
	if err != nil {
		t.Fatal(err)
	}
	var enc jsonline.Encoder
	var buf []byte
	for i := range 6 {
		var e *template.LogEntry
		if i%2 == 0 {
			e = &template.LogEntry{Name: "access", Variables: template.FieldsIn(a, map[string]any{"method": "GET", "path": fmt.Sprint("/", i), "code": int64(200 + i)})}
		} else {
			e = &template.LogEntry{Name: "audit", Severity: "warn", Timestamp: now.Add(time.Duration(i)), Variables: template.FieldsIn(b, map[string]any{"user": fmt.Sprint("u", i), "time": "shadowed", "zone": nil})}
		}
		buf = enc.AppendLogEntry(buf[:0], e, now)
		if got, want := string(buf), reference(t, e, now); got != want {
			t.Errorf("entry %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestAppendLineCopiesUnchanged: AppendLine copies from the line it wrote before what
// did not change; over entries of two layouts whose values change at
// random (or not, or to an equal value held by another string, or to
// another type, -0 after 0, NaN after NaN, maps, times with and without
// nanoseconds, in other zones, across seconds and years), with the fixed
// keys changing too, every line is what encoding/json writes.
func TestAppendLineCopiesUnchanged(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	la, err := template.NewLayout("code", "latency", "method", "path", "score", "size", "user", "when", "zz")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := template.NewLayout("a", "time", "z")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	choices := [][]any{
		{int64(200), int64(503), "200", nil, 200},
		{time.Millisecond, 1500 * time.Microsecond, time.Duration(0), int64(1)},
		{"GET", strings.Clone("GET"), "POST", "ge\"t"},
		{"/a", "/a?b", "/\u2028", "bad\xff"},
		{0.0, math.Copysign(0, -1), math.NaN(), 1.5, math.Inf(1)},
		{int64(0), int64(1), true, false},
		{"ann", "bob", map[string]string{"k": "v"}, []byte{10, 0, 0, 1}},
		{now, now.Add(time.Nanosecond), time.Date(2025, 3, 1, 13, 0, 0, 0, time.FixedZone("X", 3600)), time.Time{}},
		{"z", nil},
	}
	times := []time.Time{now, now.Add(time.Millisecond), now.Add(123456789), now.Add(time.Second + 100),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 5, time.UTC), time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 3, 1, 12, 0, 0, 7, time.FixedZone("Y", -7200))}
	var enc jsonline.Encoder
	var buf []byte
	vals := make([]any, la.Len())
	for j := range vals {
		vals[j] = choices[j][0]
	}
	fa := template.MakeFields(la, slices.Clone(vals))
	base := fa // the Fields the patched ones are patched from
	ts := now
	for i := range 5000 {
		var e *template.LogEntry
		if i%50 == 49 {
			e = &template.LogEntry{Name: "other", Timestamp: ts, Variables: template.FieldsIn(lb, map[string]any{"a": i, "time": "x", "z": "y"})}
		} else {
			switch rng.IntN(4) {
			case 0: // the same Fields as before
			case 1: // base's values but at a few positions (template.Patch)
				var patched uint64
				var over []any
				for j := range la.Len() {
					if rng.IntN(4) == 0 {
						patched |= 1 << j
						over = append(over, choices[j][rng.IntN(len(choices[j]))])
					}
				}
				fa = template.Patch(base, patched, over)
			default:
				for j := range vals {
					if rng.IntN(3) == 0 {
						vals[j] = choices[j][rng.IntN(len(choices[j]))]
					}
				}
				fa = template.MakeFields(la, slices.Clone(vals))
				base = fa
			}
			if rng.IntN(3) == 0 {
				ts = times[rng.IntN(len(times))]
			}
			e = &template.LogEntry{Name: []string{"access", "access", "log\""}[rng.IntN(3)],
				Severity: []string{"", "INFO", "warn"}[rng.IntN(3)], Timestamp: ts, Variables: fa}
		}
		if i%500 == 0 { // the buffer reused
			enc.Forget()
			buf = buf[:0]
		}
		start := len(buf)
		buf = enc.AppendLine(buf, e, now)
		if got, want := string(buf[start:]), reference(t, e, now); got != want {
			t.Fatalf("entry %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// BenchmarkAppendLineSharedBoxes is BenchmarkAppendLineBatch with the values that did
// not change since the entry before in the box of that entry's value, as
// the policy package hands them on from one request to the next.
func BenchmarkAppendLineSharedBoxes(b *testing.B) {
	proto := benchEntries(1000)
	var prev []any
	shared := make([]template.Fields, len(proto))
	for i, p := range proto {
		vals := make([]any, p.Variables.Len())
		for j := range vals {
			vals[j] = p.Variables.At(j)
			if prev != nil && vals[j] == prev[j] {
				vals[j] = prev[j]
			}
		}
		shared[i] = template.MakeFields(p.Variables.Layout(), vals)
		prev = vals
	}
	entries := make([]*template.LogEntry, len(proto))
	for i, p := range proto {
		entries[i] = &template.LogEntry{Name: p.Name, Variables: shared[i], Severity: p.Severity, Timestamp: p.Timestamp}
	}
	benchmarkAppendLine(b, entries)
}
