package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/sidemix/sidemix/attribute"
)

// Trace context headers: W3C trace context and Zipkin's B3, single and
// multi-header, in net/http's canonical form.
const (
	HeaderTraceparent    = "Traceparent"
	HeaderTracestate     = "Tracestate"
	HeaderB3             = "B3"
	HeaderB3TraceID      = "X-B3-Traceid"
	HeaderB3SpanID       = "X-B3-Spanid"
	HeaderB3ParentSpanID = "X-B3-Parentspanid"
	HeaderB3Sampled      = "X-B3-Sampled"
	HeaderB3Flags        = "X-B3-Flags"
)

// Limits beyond which a trace header is refused (431) rather than parsed:
// W3C asks vendors to propagate at least 512 bytes of tracestate and this
// leaves generous room; traceparent is 55 bytes today.
const (
	maxTraceparentBytes  = 512
	maxTracestateBytes   = 8 << 10
	maxB3Bytes           = 512
	maxTracestateMembers = 32
	traceparentV00Length = 55
	traceFlagSampled     = 0x01
)

// traceHeaders are the headers the proxy reads and replaces; it removes
// them all before injecting its own, so that stale values of a format it
// does not inject (b3 single) cannot contradict the ones it does.
var traceHeaders = [...]string{HeaderTraceparent, HeaderTracestate, HeaderB3, HeaderB3TraceID,
	HeaderB3SpanID, HeaderB3ParentSpanID, HeaderB3Sampled, HeaderB3Flags}

// Labels of the trace header metrics.
const (
	traceHeaderW3C      = "traceparent"
	traceHeaderState    = "tracestate"
	traceHeaderB3       = "b3"
	traceHeaderB3Multi  = "x-b3"
	headersTotal        = "total"
	traceOriginStarted  = "started"
	traceOriginContinue = "continued"
)

type (
	traceID [16]byte
	spanID  [8]byte
)

func (t traceID) String() string { return hex.EncodeToString(t[:]) }
func (s spanID) String() string  { return hex.EncodeToString(s[:]) }
func (t traceID) isZero() bool   { return t == traceID{} }
func (s spanID) isZero() bool    { return s == spanID{} }

// span is the span the proxy makes for one request: a server span inbound,
// a client span outbound.
type span struct {
	trace   traceID
	id      spanID
	parent  spanID // zero for a trace's root
	sampled bool
	debug   bool   // B3 debug: sampled, and said so downstream
	state   string // W3C tracestate, passed on as received
}

// remote is the caller's span context, as its headers told it.
type remote struct {
	trace    traceID
	span     spanID
	sampled  bool
	deferred bool // B3 without a sampling state: the receiver decides
	debug    bool
	state    string
}

// extracted is what a request's trace headers said.
type extracted struct {
	parent    *remote // nil: start a new trace
	decided   bool    // B3 gave a sampling decision without ids
	sampled   bool    // that decision
	malformed []string
}

// oversizedTraceHeader names the first trace header over its limit, or "".
// tracestate may come in several header lines; they count together.
func oversizedTraceHeader(h http.Header) string {
	if headerLen(h[HeaderTraceparent]) > maxTraceparentBytes {
		return traceHeaderW3C
	}
	if headerLen(h[HeaderTracestate]) > maxTracestateBytes {
		return traceHeaderState
	}
	if headerLen(h[HeaderB3]) > maxB3Bytes {
		return traceHeaderB3
	}
	for _, k := range traceHeaders[3:] {
		if headerLen(h[k]) > maxB3Bytes {
			return traceHeaderB3Multi
		}
	}
	return ""
}

func headerLen(vs []string) int {
	n := 0
	for _, v := range vs {
		n += len(v)
	}
	return n
}

// extractTrace reads the caller's span context: W3C traceparent first,
// then the b3 header, then the X-B3-* headers. A header present but
// malformed is ignored and named in malformed; the next format is tried.
func extractTrace(h http.Header) extracted {
	var out extracted
	if v, ok := h[HeaderTraceparent]; ok {
		if rc, ok := parseTraceparent(v); ok {
			if st, present := h[HeaderTracestate]; present {
				if s, ok := joinTracestate(st); ok {
					rc.state = s
				} else {
					out.malformed = append(out.malformed, traceHeaderState)
				}
			}
			out.parent = rc
			return out
		}
		out.malformed = append(out.malformed, traceHeaderW3C)
	}
	if v, ok := h[HeaderB3]; ok {
		rc, decided, sampled, ok := parseB3Single(v)
		switch {
		case ok && rc != nil:
			out.parent = rc
			return out
		case ok:
			out.decided, out.sampled = decided, sampled
		default:
			out.malformed = append(out.malformed, traceHeaderB3)
		}
	}
	if hasAny(h, traceHeaders[3:]) {
		rc, decided, sampled, ok := parseB3Multi(h)
		switch {
		case ok && rc != nil:
			out.parent = rc
			return out
		case ok:
			if !out.decided {
				out.decided, out.sampled = decided, sampled
			}
		default:
			out.malformed = append(out.malformed, traceHeaderB3Multi)
		}
	}
	return out
}

func hasAny(h http.Header, keys []string) bool {
	for _, k := range keys {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// parseTraceparent reads version-traceid-parentid-flags. Version 00 must
// be exactly that long; a later version may append fields after a dash
// (W3C: parse what version 00 defines). Hex is lower case; all-zero ids
// and version ff are invalid.
func parseTraceparent(vs []string) (*remote, bool) {
	if len(vs) != 1 {
		return nil, false
	}
	v := strings.TrimSpace(vs[0])
	if len(v) < traceparentV00Length || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return nil, false
	}
	version := v[:2]
	if !isLowerHex(version) || version == "ff" {
		return nil, false
	}
	if version == "00" && len(v) != traceparentV00Length {
		return nil, false
	}
	if len(v) > traceparentV00Length && v[traceparentV00Length] != '-' {
		return nil, false
	}
	var rc remote
	if !decodeLowerHex(rc.trace[:], v[3:35]) || rc.trace.isZero() ||
		!decodeLowerHex(rc.span[:], v[36:52]) || rc.span.isZero() {
		return nil, false
	}
	var flags [1]byte
	if !decodeLowerHex(flags[:], v[53:55]) {
		return nil, false
	}
	rc.sampled = flags[0]&traceFlagSampled != 0
	return &rc, true
}

// joinTracestate combines tracestate header lines (W3C allows several)
// and checks each list member's shape: key=value, at most 32 members. An
// invalid tracestate is dropped; the traceparent still counts.
func joinTracestate(vs []string) (string, bool) {
	var members []string
	for _, v := range vs {
		for m := range strings.SplitSeq(v, ",") {
			m = strings.Trim(m, " \t")
			if m == "" {
				continue
			}
			k, val, ok := strings.Cut(m, "=")
			if !ok || !validTracestateKey(k) || !validTracestateValue(val) {
				return "", false
			}
			members = append(members, m)
		}
	}
	if len(members) > maxTracestateMembers {
		return "", false
	}
	return strings.Join(members, ","), true
}

func validTracestateKey(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '*' || c == '/' || c == '@') {
			return false
		}
	}
	return true
}

func validTracestateValue(v string) bool {
	if v == "" || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

// parseB3Single reads "b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]"
// or a bare sampling decision "0", "1" or "d". ok is false when malformed;
// a bare decision returns a nil remote with decided set.
func parseB3Single(vs []string) (rc *remote, decided, sampled, ok bool) {
	if len(vs) != 1 {
		return nil, false, false, false
	}
	v := strings.TrimSpace(vs[0])
	parts := strings.Split(v, "-")
	if len(parts) == 1 {
		s, d, ok := b3Sampling(parts[0])
		return nil, ok, s || d, ok
	}
	if len(parts) > 4 {
		return nil, false, false, false
	}
	rc = &remote{deferred: true}
	if !parseB3TraceID(&rc.trace, parts[0]) || !decodeHexAnyCase(rc.span[:], parts[1]) || rc.span.isZero() {
		return nil, false, false, false
	}
	if len(parts) >= 3 {
		s, d, ok := b3Sampling(parts[2])
		if !ok {
			return nil, false, false, false
		}
		rc.sampled, rc.debug, rc.deferred = s || d, d, false
	}
	if len(parts) == 4 {
		var p spanID
		if !decodeHexAnyCase(p[:], parts[3]) {
			return nil, false, false, false
		}
	}
	return rc, false, false, true
}

// b3Sampling reads a B3 sampling state: 0, 1, d (debug), and the legacy
// true/false of X-B3-Sampled.
func b3Sampling(s string) (sampled, debug, ok bool) {
	switch strings.ToLower(s) {
	case "1", "true":
		return true, false, true
	case "0", "false":
		return false, false, true
	case "d":
		return true, true, true
	}
	return false, false, false
}

// parseB3Multi reads X-B3-TraceId, -SpanId, -ParentSpanId, -Sampled and
// -Flags. Ids come together or not at all; without them Sampled or Flags
// is a bare sampling decision.
func parseB3Multi(h http.Header) (rc *remote, decided, sampled, ok bool) {
	one := func(k string) (string, bool, bool) {
		vs, present := h[k]
		if !present {
			return "", false, true
		}
		if len(vs) != 1 {
			return "", true, false
		}
		return strings.TrimSpace(vs[0]), true, true
	}
	tid, hasTID, ok1 := one(HeaderB3TraceID)
	sid, hasSID, ok2 := one(HeaderB3SpanID)
	pid, hasPID, ok3 := one(HeaderB3ParentSpanID)
	smp, hasSmp, ok4 := one(HeaderB3Sampled)
	flg, hasFlg, ok5 := one(HeaderB3Flags)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || hasTID != hasSID || (hasPID && !hasTID) {
		return nil, false, false, false
	}
	decision, debug, known := false, false, false
	if hasSmp {
		s, d, ok := b3Sampling(smp)
		if !ok || d { // "d" belongs to the single header
			return nil, false, false, false
		}
		decision, known = s, true
	}
	if hasFlg {
		switch flg {
		case "1":
			decision, debug, known = true, true, true
		case "0":
		default:
			return nil, false, false, false
		}
	}
	if !hasTID {
		return nil, known, decision, known
	}
	rc = &remote{sampled: decision, debug: debug, deferred: !known}
	if !parseB3TraceID(&rc.trace, tid) || !decodeHexAnyCase(rc.span[:], sid) || rc.span.isZero() {
		return nil, false, false, false
	}
	if hasPID {
		var p spanID
		if !decodeHexAnyCase(p[:], pid) {
			return nil, false, false, false
		}
	}
	return rc, false, false, true
}

// parseB3TraceID reads a 128-bit or 64-bit (zero-extended) trace id.
func parseB3TraceID(dst *traceID, s string) bool {
	switch len(s) {
	case 32:
		if !decodeHexAnyCase(dst[:], s) {
			return false
		}
	case 16:
		*dst = traceID{}
		if !decodeHexAnyCase(dst[8:], s) {
			return false
		}
	default:
		return false
	}
	return !dst.isZero()
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// decodeLowerHex is W3C's strict form: lower-case hex of exactly the length.
func decodeLowerHex(dst []byte, s string) bool {
	return len(s) == 2*len(dst) && isLowerHex(s) && decodeHexAnyCase(dst, s)
}

func decodeHexAnyCase(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

// sampler decides new traces from their id, as OpenTelemetry's
// TraceIDRatioBased does, so that every proxy seeing a trace id decides
// alike.
type sampler struct{ bound uint64 }

func newSampler(ratio float64) sampler {
	switch {
	case ratio >= 1:
		return sampler{bound: math.MaxUint64}
	case ratio <= 0 || math.IsNaN(ratio):
		return sampler{}
	}
	return sampler{bound: uint64(ratio * (1 << 63))}
}

func (s sampler) sample(t traceID) bool {
	if s.bound == math.MaxUint64 {
		return true
	}
	return binary.BigEndian.Uint64(t[8:])>>1 < s.bound
}

func newTraceID() traceID {
	var t traceID
	for t.isZero() {
		binary.BigEndian.PutUint64(t[:8], rand.Uint64())
		binary.BigEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t
}

func newSpanID() spanID {
	var s spanID
	for s.isZero() {
		binary.BigEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}

// startSpan makes the request's span, child of the caller's span when its
// headers carry one, and counts what it found.
func (s *side) startSpan(h http.Header) span {
	ext := extractTrace(h)
	for _, name := range ext.malformed {
		s.m.malformed(name)
	}
	sp := span{id: newSpanID()}
	if rc := ext.parent; rc != nil {
		sp.trace, sp.parent, sp.sampled, sp.debug, sp.state = rc.trace, rc.span, rc.sampled, rc.debug, rc.state
		if rc.deferred {
			sp.sampled = s.p.sampler.sample(sp.trace)
		}
		s.m.continued.Inc()
		return sp
	}
	sp.trace = newTraceID()
	if ext.decided {
		sp.sampled = ext.sampled
	} else {
		sp.sampled = s.p.sampler.sample(sp.trace)
	}
	s.m.started.Inc()
	return sp
}

// inject replaces the trace headers of h with sp as the parent: W3C
// traceparent (and tracestate) and B3 multi-header, so that an app
// forwarding either format keeps the trace.
func (sp *span) inject(h http.Header) {
	for _, k := range traceHeaders {
		delete(h, k)
	}
	var buf [traceparentV00Length]byte
	copy(buf[:], "00-")
	hex.Encode(buf[3:35], sp.trace[:])
	buf[35] = '-'
	hex.Encode(buf[36:52], sp.id[:])
	buf[52] = '-'
	buf[53], buf[54] = '0', '0'
	if sp.sampled {
		buf[54] = '1'
	}
	h[HeaderTraceparent] = []string{string(buf[:])}
	if sp.state != "" {
		h[HeaderTracestate] = []string{sp.state}
	}
	tid, sid := string(buf[3:35]), string(buf[36:52])
	h[HeaderB3TraceID] = []string{tid}
	h[HeaderB3SpanID] = []string{sid}
	if !sp.parent.isZero() {
		h[HeaderB3ParentSpanID] = []string{sp.parent.String()}
	}
	switch {
	case sp.debug:
		h[HeaderB3Flags] = []string{"1"} // debug implies sampled; B3 sends no Sampled with it
	case sp.sampled:
		h[HeaderB3Sampled] = []string{"1"}
	default:
		h[HeaderB3Sampled] = []string{"0"}
	}
}

// setAttributes adds request.trace.* for the span to b.
func (sp *span) setAttributes(b *attribute.Builder) {
	if sp.trace.isZero() {
		return // no span: the request was refused before it had one
	}
	b.SetString(attribute.RequestTraceID, sp.trace.String())
	b.SetString(attribute.RequestSpanID, sp.id.String())
	if !sp.parent.isZero() {
		b.SetString(attribute.RequestParentSpanID, sp.parent.String())
	}
	b.SetBool(attribute.RequestTraceSampled, sp.sampled)
	if sp.state != "" {
		b.SetString(attribute.RequestTraceState, sp.state)
	}
}
