// Package jsonline writes log entries as JSON objects, one per line, for
// the adapters that ship them as JSON (accesslog, kafka's json encoding).
//
// The output is byte for byte what encoding/json, with HTML escaping off,
// writes for the map[string]any of an entry's variables plus "time",
// "severity" and "instance" (keys sorted; values as Value maps them), but
// it is written without reflection, maps, lookups by name or interface
// boxing (the keys of a variables' Layout are sorted and quoted once): on a busy
// mesh this is one of the mixer's hottest paths: strings are copied 8
// plain ASCII bytes at a time, and Line copies the lines it keeps into
// arrays shared by many entries. Append to a buffer you keep between
// batches:
//
//	var enc jsonline.Encoder
//	buf = buf[:0]
//	for _, e := range entries {
//		buf = enc.AppendLogEntry(buf, e, now)
//		buf = append(buf, '\n')
//	}
package jsonline

import (
	"bytes"
	"encoding/hex"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sidemix/sidemix/adapters/template"
)

// DefaultSeverity is the severity of an entry that has none.
const DefaultSeverity = "INFO"

// Encoder holds scratch space reused from one entry to the next. The zero
// value is ready to use; an Encoder is not safe for concurrent use.
type Encoder struct {
	mkeys []string // a map[string]string value's keys
	// plan is how entries whose variables have layout are written, key by
	// key in sorted order: entries of one instance share their layout, so
	// their keys are sorted, and quoted, once.
	layout  *template.Layout
	planned bool
	plan    []step
	// scratch is where Line encodes before copying.
	scratch []byte
	// slab is where Line copies the lines it keeps, and lines the slices
	// of them it keeps on the entries: a few allocations for a batch of
	// entries instead of two per entry. An array lives as long as one of
	// its lines is used (held by an entry, or a kafka record).
	slab  []byte
	lines [][]byte
}

// step is one key of a plan: its JSON with the separator before it,
// `{"key":` for the first and `,"key":` for the others, and what its value
// is: a variable's position, or one of the fixed keys.
type step struct {
	key   []byte
	field int
}

// The fixed keys' steps' fields.
const (
	fieldInstance = -1 - iota
	fieldSeverity
	fieldTime
)

// AppendLogEntry appends e's JSON object (no newline) to b. now stands in
// for a zero Timestamp.
func (enc *Encoder) AppendLogEntry(b []byte, e *template.LogEntry, now time.Time) []byte {
	if l := e.Variables.Layout(); !enc.planned || l != enc.layout {
		enc.makePlan(l)
	}
	for _, st := range enc.plan {
		b = append(b, st.key...)
		switch st.field {
		case fieldInstance:
			b = AppendString(b, e.Name)
		case fieldSeverity:
			sev := e.Severity
			if sev == "" {
				sev = DefaultSeverity
			}
			b = AppendString(b, sev)
		case fieldTime:
			ts := e.Timestamp
			if ts.IsZero() {
				ts = now
			}
			b = appendTime(b, ts)
		default:
			b = enc.appendValue(b, e.Variables.At(st.field))
		}
	}
	return append(b, '}')
}

// makePlan makes the plan of the entries whose variables have layout l:
// the fixed keys and the variables sorted together, a variable named as a
// fixed key left out (the fixed key wins).
func (enc *Encoder) makePlan(l *template.Layout) {
	type key struct {
		name  string
		field int
	}
	keys := []key{{"instance", fieldInstance}, {"severity", fieldSeverity}, {"time", fieldTime}}
	for i := range l.Len() {
		switch k := l.Name(i); k {
		case "instance", "severity", "time":
		default:
			keys = append(keys, key{k, i})
		}
	}
	slices.SortFunc(keys, func(x, y key) int { return strings.Compare(x.name, y.name) })
	enc.plan = enc.plan[:0]
	for i, k := range keys {
		sep := byte(',')
		if i == 0 {
			sep = '{'
		}
		enc.plan = append(enc.plan, step{key: append(AppendString([]byte{sep}, k.name), ':'), field: k.field})
	}
	enc.layout, enc.planned = l, true
}

// Line returns e's JSON object (no newline) as AppendLogEntry writes it,
// encoded once per entry: handlers that write the same instance share the
// first one's encoding (template.LogEntry.CachedLine). The result is
// shared: it must not be modified. An entry without a Timestamp, whose
// line depends on now, is encoded afresh each time.
func (enc *Encoder) Line(e *template.LogEntry, now time.Time) []byte {
	if e.Timestamp.IsZero() {
		return enc.AppendLogEntry(nil, e, now)
	}
	if line := e.CachedLine(); line != nil {
		return line
	}
	enc.scratch = enc.AppendLogEntry(enc.scratch[:0], e, now)
	line := enc.keep(enc.scratch)
	if cap(enc.scratch) > maxScratch {
		enc.scratch = nil // an outsized entry's buffer is not kept
	}
	e.SetCachedLine(line)
	return *line
}

// keep copies a line into the slab (a long one into its own array) and
// returns a pointer to its slice.
func (enc *Encoder) keep(b []byte) *[]byte {
	var line []byte
	if len(b) > slabSize/8 {
		line = bytes.Clone(b)
	} else {
		if cap(enc.slab)-len(enc.slab) < len(b) {
			enc.slab = make([]byte, 0, slabSize)
		}
		start := len(enc.slab)
		enc.slab = append(enc.slab, b...)
		line = enc.slab[start:len(enc.slab):len(enc.slab)]
	}
	if len(enc.lines) == cap(enc.lines) {
		enc.lines = make([][]byte, 0, linesSize)
	}
	enc.lines = append(enc.lines, line)
	return &enc.lines[len(enc.lines)-1]
}

const (
	// maxScratch is the largest buffer an Encoder keeps for Line.
	maxScratch = 64 << 10
	// slabSize is the size of the arrays Line copies lines into; lines
	// longer than an eighth of it get their own.
	slabSize = 32 << 10
	// linesSize is how many lines' slices Line allocates at once.
	linesSize = 256
)

// Value is what a template value is in JSON: nil, strings, bools, integers,
// finite floats and map[string]string keep their JSON type; anything else
// (time.Time, time.Duration, []byte addresses, NaN and ±Inf, other types)
// becomes its template.FormatValue text. It is for values encoded with
// encoding/json (kafka's span tags); AppendValue writes the same without it.
func Value(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int64, int, map[string]string:
		return x
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return template.FormatValue(x)
		}
		return x
	default:
		return template.FormatValue(x)
	}
}

// AppendValue appends the JSON of Value(v) to b.
func AppendValue(b []byte, v any) []byte {
	var enc Encoder
	return enc.appendValue(b, v)
}

func (enc *Encoder) appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return AppendString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return AppendString(b, template.FormatValue(x))
		}
		return appendFloat(b, x)
	case map[string]string:
		return enc.appendStringMap(b, x)
	// The FormatValue text of the common non-JSON types, without its
	// intermediate string; all of it is plain ASCII that needs no escaping.
	case time.Time:
		return appendTime(b, x)
	case time.Duration:
		return AppendString(b, x.String()) // "µs" is not ASCII
	case []byte:
		b = append(b, '"')
		if ip, ok := netip.AddrFromSlice(x); ok {
			b = ip.Unmap().AppendTo(b)
		} else {
			b = hex.AppendEncode(b, x)
		}
		return append(b, '"')
	default:
		return AppendString(b, template.FormatValue(x))
	}
}

func (enc *Encoder) appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...) // as encoding/json writes a nil map
	}
	keys := enc.mkeys[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, k)
		b = append(b, ':')
		b = AppendString(b, m[k])
	}
	clear(keys)
	enc.mkeys = keys[:0]
	return append(b, '}')
}

// appendTime appends t as a quoted RFC 3339 UTC string, as FormatValue
// writes it.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat formats a finite f as encoding/json does: like %g but with
// ES6's exponent cut-offs and no zero-padded exponent.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendString appends s quoted as encoding/json quotes it with HTML
// escaping off: '"', '\\' and control characters escaped (\b, \f, \n, \r,
// \t or \u00XX), invalid UTF-8 as \ufffd, U+2028 and U+2029 as \u2028 and
// \u2029, everything else (DEL and valid UTF-8 included) as is.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	// Most strings need no escaping: skip 8 plain bytes at a time.
	i := 0
	for i+8 <= len(s) && plain8(load64(s[i:])) {
		i += 8
	}
	for i < len(s) && s[i] >= 0x20 && s[i] < utf8.RuneSelf && s[i] != '"' && s[i] != '\\' {
		i++
	}
	if i == len(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	return appendEscaped(b, s, i)
}

// load64 is s's first 8 bytes, little-endian (one load on most machines).
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// plain8 reports whether the 8 bytes of w are all ASCII that JSON writes
// as is: none below 0x20 or above 0x7f, no '"' and no '\\'.
func plain8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// A byte below 0x20 (with only bytes from 0x20 to 0x7f below it, so no
	// borrow reaches it) sets its high bit in w-0x20…; one above 0x7f has
	// it set in w. A zero byte of q or x (a '"' or '\\' of w) sets its
	// high bit in q-1… &^ q (the classic has-zero-byte test).
	q := w ^ ones*'"'
	x := w ^ ones*'\\'
	return ((w-ones*0x20)|w|((q-ones)&^q)|((x-ones)&^x))&highs == 0
}

// appendEscaped appends the rest of AppendString's quoting of s, whose
// first i bytes are plain, and the closing quote.
func appendEscaped(b []byte, s string, i int) []byte {
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
