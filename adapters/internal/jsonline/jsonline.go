// Package jsonline writes log entries as JSON objects, one per line, for
// the adapters that ship them as JSON (accesslog, kafka's json encoding).
//
// The output is byte for byte what encoding/json, with HTML escaping off,
// writes for the map[string]any of an entry's variables plus "time",
// "severity" and "instance" (keys sorted; values as Value maps them), but
// it is written without reflection, maps, lookups by name or interface
// boxing (the keys of a variables' Layout are sorted and quoted once): on a busy
// mesh this is one of the mixer's hottest paths: strings are copied 8
// plain ASCII bytes at a time; AppendLine copies from the line before
// what an entry of the same layout has in common with it (a request's
// workloads, principals, method, agent...: runs of adjacent keys and
// values at once), and timestamps' date and time of day are formatted
// once per second.
//
// Lines are written into buffers their caller owns and reuses (the access
// log's write buffer, kafka's recycled slabs), not into memory allocated
// per line: on a busy mixer, lines allocated afresh (some 700 bytes per
// request and proxy) were a third of the bytes it allocated, which made
// its heap grow, page by page, and its collector run, that much more.
// Append to a buffer you keep between batches:
//
//	var enc jsonline.Encoder
//	enc.Forget() // buf's last line is about to be overwritten
//	buf = buf[:0]
//	for _, e := range entries {
//		buf = enc.AppendLine(buf, e, now)
//		buf = append(buf, '\n')
//	}
package jsonline

import (
	"encoding/hex"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

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
	// last is the line AppendLine wrote last, for the next entry of its layout:
	// the values that did not change (a request's workloads, principals,
	// method, protocol, agent...) are copied from it, runs of adjacent
	// keys at once, instead of being encoded again.
	last lastLine
	ends []int // where each step of the line being written ends
	// clock is the formatted second of the last timestamp written.
	clock clock
}

// lastLine is an entry AppendLine wrote and where in its line (which
// nothing modifies until the next AppendLine or Forget) each step's key
// and value end.
type lastLine struct {
	ok        bool
	layout    *template.Layout
	vars      template.Fields
	name, sev string
	ts        time.Time
	line      []byte
	ends      []int
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
	return enc.appendEntry(b, e, now, false)
}

// appendEntry is AppendLogEntry. For AppendLine (forLine), values equal
// to those of the entry AppendLine wrote last are copied from its line,
// and the steps' ends are kept in enc.ends.
func (enc *Encoder) appendEntry(b []byte, e *template.LogEntry, now time.Time, forLine bool) []byte {
	if l := e.Variables.Layout(); !enc.planned || l != enc.layout {
		enc.makePlan(l)
	}
	sev := e.Severity
	if sev == "" {
		sev = DefaultSeverity
	}
	ts := e.Timestamp
	if ts.IsZero() {
		ts = now
	}
	last := &enc.last
	fromLast := forLine && last.ok && last.layout == enc.layout
	allVars := fromLast && e.Variables.Same(last.vars) // shared: every variable is the same
	if forLine {
		enc.ends = slices.Grow(enc.ends[:0], len(enc.plan))[:len(enc.plan)]
	}
	if fromLast && len(enc.plan) <= 64 {
		return enc.appendChanged(b, e, sev, ts, allVars)
	}
	base := len(b)
	// run is the part of the last line being copied: the steps from
	// runFrom to the current one, all unchanged.
	runFrom, runTo := 0, 0
	for i, st := range enc.plan {
		if fromLast {
			var same bool
			switch st.field {
			case fieldInstance:
				same = e.Name == last.name
			case fieldSeverity:
				same = sev == last.sev
			case fieldTime:
				same = ts.Equal(last.ts)
			default:
				if !allVars {
					x, y := e.Variables.At(st.field), last.vars.At(st.field)
					same = sameBox(x, y) || template.SameValue(x, y)
				} else {
					same = true
				}
			}
			if same {
				if runFrom == runTo && i > 0 {
					runFrom = last.ends[i-1]
				}
				runTo = last.ends[i]
				enc.ends[i] = len(b) - base + runTo - runFrom
				continue
			}
			if runTo > runFrom {
				b = append(b, last.line[runFrom:runTo]...)
			}
			runFrom, runTo = 0, 0
		}
		b = enc.appendStep(b, &enc.plan[i], e, sev, ts)
		if forLine {
			enc.ends[i] = len(b) - base
		}
	}
	if runTo > runFrom {
		b = append(b, last.line[runFrom:runTo]...)
	}
	return append(b, '}')
}

// appendChanged is appendEntry for AppendLine after an entry of the same
// layout (of at most 64 steps): it first finds the steps whose values
// changed, in a loop that only compares, then copies the runs of steps
// between them from the last line at once, the runs' ends shifted, and
// writes the changed steps.
func (enc *Encoder) appendChanged(b []byte, e *template.LogEntry, sev string, ts time.Time, allVars bool) []byte {
	last := &enc.last
	plan := enc.plan
	ends := enc.ends[:len(plan)]
	lastEnds := last.ends[:len(plan)]
	// Variables patched from one base differ at most where either is
	// patched (template.Fields.Patched): the others need no comparing.
	shared := e.Variables.Base().Same(last.vars.Base())
	maybe := e.Variables.Patched() | last.vars.Patched() // positions under 64: the plan has at most 64 steps
	var changed uint64
	for i := range plan {
		switch f := plan[i].field; {
		case f >= 0:
			if !allVars && (!shared || maybe&(1<<uint(f)) != 0) {
				x, y := e.Variables.At(f), last.vars.At(f)
				if !sameBox(x, y) && !template.SameValue(x, y) {
					changed |= 1 << i
				}
			}
		case f == fieldInstance:
			if e.Name != last.name {
				changed |= 1 << i
			}
		case f == fieldSeverity:
			if sev != last.sev {
				changed |= 1 << i
			}
		default: // fieldTime
			if !ts.Equal(last.ts) {
				changed |= 1 << i
			}
		}
	}
	base := len(b)
	next := 0 // the first step not written yet
	for {
		i := len(plan)
		if changed != 0 {
			i = bits.TrailingZeros64(changed)
			changed &= changed - 1
		}
		if i > next {
			// Steps next to i-1 are unchanged: the last line's bytes.
			from := 0
			if next > 0 {
				from = lastEnds[next-1]
			}
			shift := len(b) - base - from
			b = append(b, last.line[from:lastEnds[i-1]]...)
			for j := next; j < i; j++ {
				ends[j] = lastEnds[j] + shift
			}
		}
		if i == len(plan) {
			return append(b, '}')
		}
		st := &plan[i]
		b = enc.appendStep(b, st, e, sev, ts)
		ends[i] = len(b) - base
		next = i + 1
	}
}

// appendStep writes one member of an entry's line: st's key and value.
func (enc *Encoder) appendStep(b []byte, st *step, e *template.LogEntry, sev string, ts time.Time) []byte {
	b = append(b, st.key...)
	switch st.field {
	case fieldInstance:
		return AppendString(b, e.Name)
	case fieldSeverity:
		return AppendString(b, sev)
	case fieldTime:
		return enc.clock.appendTime(b, ts)
	}
	return enc.appendValue(b, e.Variables.At(st.field))
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

// AppendLine appends e's JSON object (no newline) to b as AppendLogEntry
// writes it, copying from the line AppendLine wrote before it
// what the two entries have in common (the same layout, and values that
// did not change, as most of a request's do not), runs of adjacent keys
// at once. That line's bytes must be as it left them until the next call:
// a caller that overwrites them (reuses its buffer) calls Forget first.
func (enc *Encoder) AppendLine(b []byte, e *template.LogEntry, now time.Time) []byte {
	start := len(b)
	b = enc.appendEntry(b, e, now, true)
	enc.keep(e, b[start:len(b):len(b)], now)
	return b
}

// Forget forgets the line written last: the next line is written whole.
func (enc *Encoder) Forget() {
	enc.last = lastLine{ends: enc.last.ends[:0]}
}

// keep keeps line, e's, as the one to copy from next.
func (enc *Encoder) keep(e *template.LogEntry, line []byte, now time.Time) {
	enc.last = lastLine{ok: true, layout: enc.layout, vars: e.Variables, name: e.Name, sev: e.Severity, ts: e.Timestamp,
		line: line, ends: append(enc.last.ends[:0], enc.ends...)}
	if enc.last.sev == "" {
		enc.last.sev = DefaultSeverity
	}
	if enc.last.ts.IsZero() {
		enc.last.ts = now
	}
}

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

// sameBox reports whether x and y are one box: the same type and the same
// pointer to the value, which, boxed values being immutable, is then the
// same. The policy package puts the box of a value that did not change
// since the previous request into the next request's fields, so this
// answers most comparisons without reading the values. (An interface is
// a type word and a data word; the comparison makes no other assumption.)
func sameBox(x, y any) bool {
	type eface struct{ typ, data unsafe.Pointer }
	return *(*eface)(unsafe.Pointer(&x)) == *(*eface)(unsafe.Pointer(&y))
}

// appendTime appends t as a quoted RFC 3339 UTC string, as FormatValue
// writes it.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// clock writes timestamps as appendTime does, the date and time of day
// formatted once per second: an encoder's entries mostly come in order,
// many in each second.
type clock struct {
	sec    int64    // Unix second of prefix
	prefix [19]byte // "2006-01-02T15:04:05"
	ok     bool
}

// appendTime is appendTime(b, t).
func (c *clock) appendTime(b []byte, t time.Time) []byte {
	sec := t.Unix()
	if !c.ok || sec != c.sec {
		var buf [32]byte
		p := t.UTC().AppendFormat(buf[:0], "2006-01-02T15:04:05")
		if len(p) != len(c.prefix) {
			c.ok = false
			return appendTime(b, t) // a year outside 0 to 9999
		}
		copy(c.prefix[:], p)
		c.sec, c.ok = sec, true
	}
	b = append(b, '"')
	b = append(b, c.prefix[:]...)
	if ns := t.Nanosecond(); ns != 0 {
		// RFC3339Nano's fraction: 9 digits, trailing zeros left out.
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i > 0; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z', '"')
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
