package mixer

import (
	"errors"
	"fmt"
	"io"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// This file walks OTLP export requests in their protobuf wire form without
// decoding them: it checks that a request is well formed, counts its spans
// (log records), finds the unusable ones and cuts it into its resources,
// each a contiguous byte range that can be forwarded as received
// (ExportTraceServiceRequest and TracesData, like their log twins, are
// both field 1 = repeated ResourceSpans, so the bytes carry over).
//
// "Well formed" is what go.opentelemetry.io/collector/pdata's unmarshaler
// accepts, to the byte: the primitives below mirror its internal/proto
// package (varints of up to ten bytes, field numbers as int32, its
// handling of groups in unknown fields), every known field of every
// message must have pdata's wire type, trace ids are 0 or 16 bytes and
// span ids 0 or 8, attribute values nest at most wireRecursionLimit deep,
// and a resource's deprecated instrumentation_library_spans (field 1000)
// count only when it has no scope_spans, as pdata's migration does. What
// pdata accepts, the walker accepts with the same spans, and the other way
// round (FuzzWalkTraces checks it), so a consumer of the forwarded bytes
// reads exactly what the mixer counted.

// wireRecursionLimit is pdata's proto.RecursionLimit: how deep attribute
// values (KeyValue, AnyValue, ArrayValue, KeyValueList) may nest.
const wireRecursionLimit = 100

var (
	errWireOverflow     = errors.New("proto: integer overflow")
	errWireNegativeLen  = errors.New("proto: negative length found during unmarshaling")
	errWireGroupEnd     = errors.New("proto: unexpected end of group")
	errWireRecursion    = errors.New("proto: exceeded max recursion depth")
	errWireTraceIDSize  = errors.New("invalid length for trace id")
	errWireSpanIDSize   = errors.New("invalid length for span id")
	errWireIllegalField = errors.New("proto: illegal field number")
)

// Wire types, as pdata numbers them.
const (
	wtVarint = 0
	wtI64    = 1
	wtLen    = 2
	wtStart  = 3
	wtEnd    = 4
	wtI32    = 5
)

func consumeVarint(b []byte, pos int) (uint64, int, error) {
	var num uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, 0, errWireOverflow
		}
		if pos >= len(b) {
			return 0, 0, io.ErrUnexpectedEOF
		}
		c := b[pos]
		pos++
		num |= uint64(c&0x7F) << shift
		if c < 0x80 {
			return num, pos, nil
		}
	}
}

func consumeTag(b []byte, pos int) (num int32, wt int8, _ int, _ error) {
	tag, pos, err := consumeVarint(b, pos)
	if err != nil {
		return 0, 0, 0, err
	}
	num, wt = int32(tag>>3), int8(tag&7)
	if num <= 0 {
		return 0, 0, 0, errWireIllegalField
	}
	return num, wt, pos, nil
}

// consumeLen returns the bounds of a length-delimited value.
func consumeLen(b []byte, pos int) (start, end int, _ error) {
	n, pos, err := consumeVarint(b, pos)
	if err != nil {
		return 0, 0, err
	}
	length := int(n)
	if length < 0 {
		return 0, 0, errWireNegativeLen
	}
	end = pos + length
	if end < 0 || end > len(b) {
		return 0, 0, io.ErrUnexpectedEOF
	}
	return pos, end, nil
}

// readTag is consumeTag with the one-byte tags of every OTLP field below
// 16 read inline.
func readTag(b []byte, pos int) (int32, int8, int, error) {
	if pos < len(b) {
		if c := b[pos]; c < 0x80 && c >= 8 {
			return int32(c >> 3), int8(c & 7), pos + 1, nil
		}
	}
	return consumeTag(b, pos)
}

// readLen is consumeLen with lengths of one or two bytes read inline.
func readLen(b []byte, pos int) (start, end int, _ error) {
	if pos+1 < len(b) {
		if c := b[pos]; c < 0x80 {
			if end = pos + 1 + int(c); end <= len(b) {
				return pos + 1, end, nil
			}
		} else if c2 := b[pos+1]; c2 < 0x80 {
			if end = pos + 2 + (int(c&0x7F) | int(c2)<<7); end <= len(b) {
				return pos + 2, end, nil
			}
		}
	}
	return consumeLen(b, pos)
}

func consumeFixed(b []byte, pos, size int) (int, error) {
	pos += size
	if pos < 0 || pos > len(b) {
		return 0, io.ErrUnexpectedEOF
	}
	return pos, nil
}

// consumeUnknown skips an unknown field's value, as pdata's
// proto.ConsumeUnknown does (groups included, quirks and all).
func consumeUnknown(b []byte, pos int, wt int8) (int, error) {
	var err error
	depth := 0
	for pos < len(b) {
		switch wt {
		case wtVarint:
			_, pos, err = consumeVarint(b, pos)
			return pos, err
		case wtI64:
			return consumeFixed(b, pos, 8)
		case wtLen:
			_, pos, err = consumeLen(b, pos)
			return pos, err
		case wtStart:
			depth++
		case wtEnd:
			if depth == 0 {
				return 0, errWireGroupEnd
			}
			depth--
		case wtI32:
			return consumeFixed(b, pos, 4)
		default:
			return 0, fmt.Errorf("proto: illegal wireType %d", wt)
		}
		if depth == 0 {
			return pos, nil
		}
		if _, wt, pos, err = consumeTag(b, pos); err != nil {
			return 0, err
		}
	}
	return 0, io.ErrUnexpectedEOF
}

// fieldKind is what a known field holds.
type fieldKind uint8

const (
	fkUnknown fieldKind = iota // not a field of the message: skipped
	fkVarint
	fkI64
	fkI32
	fkLen // string or bytes
	fkMsg // a message of field.msg
	fkTraceID
	fkSpanID
)

type wireField struct {
	kind fieldKind
	msg  *wireSchema
}

// wireSchema is a message's known fields, by number.
type wireSchema struct {
	name   string
	fields []wireField
	// depth: the message counts towards wireRecursionLimit (pdata's
	// attribute values); any other message starts its children at 0.
	depth bool
}

func (s *wireSchema) field(num int32) wireField {
	if int(num) < len(s.fields) {
		return s.fields[num]
	}
	return wireField{}
}

func schema(name string, depth bool, fields map[int]wireField) *wireSchema {
	n := 0
	for k := range fields {
		n = max(n, k+1)
	}
	s := &wireSchema{name: name, depth: depth, fields: make([]wireField, n)}
	for k, f := range fields {
		s.fields[k] = f
	}
	return s
}

var (
	fVarint  = wireField{kind: fkVarint}
	fI64     = wireField{kind: fkI64}
	fI32     = wireField{kind: fkI32}
	fLen     = wireField{kind: fkLen}
	fTraceID = wireField{kind: fkTraceID}
	fSpanID  = wireField{kind: fkSpanID}
)

func fMsg(s *wireSchema) wireField { return wireField{kind: fkMsg, msg: s} }

// The messages of OTLP traces and logs, as pdata v1.71 knows them.
var (
	schemaAnyValue     = &wireSchema{name: "AnyValue", depth: true}
	schemaKeyValue     = &wireSchema{name: "KeyValue", depth: true}
	schemaArrayValue   = &wireSchema{name: "ArrayValue", depth: true}
	schemaKeyValueList = &wireSchema{name: "KeyValueList", depth: true}
	schemaEntityRef    = schema("EntityRef", false, map[int]wireField{1: fLen, 2: fLen, 3: fLen, 4: fLen})
	schemaResource     = schema("Resource", false, map[int]wireField{1: fMsg(schemaKeyValue), 2: fVarint, 3: fMsg(schemaEntityRef)})
	schemaScope        = schema("InstrumentationScope", false, map[int]wireField{1: fLen, 2: fLen, 3: fMsg(schemaKeyValue), 4: fVarint})
	schemaEvent        = schema("Span.Event", false, map[int]wireField{1: fI64, 2: fLen, 3: fMsg(schemaKeyValue), 4: fVarint})
	schemaLink         = schema("Span.Link", false, map[int]wireField{1: fTraceID, 2: fSpanID, 3: fLen, 4: fMsg(schemaKeyValue), 5: fVarint, 6: fI32})
	schemaStatus       = schema("Status", false, map[int]wireField{2: fLen, 3: fVarint})
	schemaSpan         = schema("Span", false, map[int]wireField{1: fTraceID, 2: fSpanID, 3: fLen, 4: fSpanID, 5: fLen, 6: fVarint,
		7: fI64, 8: fI64, 9: fMsg(schemaKeyValue), 10: fVarint, 11: fMsg(schemaEvent), 12: fVarint, 13: fMsg(schemaLink),
		14: fVarint, 15: fMsg(schemaStatus), 16: fI32})
	schemaLogRecord = schema("LogRecord", false, map[int]wireField{1: fI64, 2: fVarint, 3: fLen, 5: fMsg(schemaAnyValue),
		6: fMsg(schemaKeyValue), 7: fVarint, 8: fI32, 9: fTraceID, 10: fSpanID, 11: fI64, 12: fLen})
)

func init() {
	// The attribute values refer to each other.
	*schemaAnyValue = *schema("AnyValue", true, map[int]wireField{1: fLen, 2: fVarint, 3: fVarint, 4: fI64,
		5: fMsg(schemaArrayValue), 6: fMsg(schemaKeyValueList), 7: fLen, 8: fVarint})
	*schemaKeyValue = *schema("KeyValue", true, map[int]wireField{1: fLen, 2: fMsg(schemaAnyValue), 3: fVarint})
	*schemaArrayValue = *schema("ArrayValue", true, map[int]wireField{1: fMsg(schemaAnyValue)})
	*schemaKeyValueList = *schema("KeyValueList", true, map[int]wireField{1: fMsg(schemaKeyValue)})
}

// wireIDs is what validating a span or log record saw of its ids: the
// last value of each (as pdata keeps the last), nil when absent.
type wireIDs struct {
	traceID, spanID []byte
	name            []byte // a span's name, for messages
}

func wrongWire(num int32, wt int8, msg string) error {
	return fmt.Errorf("proto: wrong wireType = %d for field %d of %s", wt, num, msg)
}

// validateMsg checks that b is a well-formed message of s: the messages
// every span and log record holds many of have their own code, the others
// go through validate.
func validateMsg(s *wireSchema, b []byte, depth int) error {
	switch s {
	case schemaKeyValue:
		return validateKV(b, depth)
	case schemaAnyValue:
		return validateAny(b, depth)
	}
	return validate(s, b, depth, nil)
}

// validate checks that b is a well-formed message of s. ids, when not
// nil, receives the message's own trace and span id fields (a span's or
// log record's).
func validate(s *wireSchema, b []byte, depth int, ids *wireIDs) error {
	if s.depth {
		if depth >= wireRecursionLimit {
			return errWireRecursion
		}
		depth++
	} else {
		depth = 0
	}
	pos := 0
	for pos < len(b) {
		num, wt, p, err := readTag(b, pos)
		if err != nil {
			return err
		}
		f := s.field(num)
		want := int8(wtLen)
		switch f.kind {
		case fkUnknown:
			if pos, err = consumeUnknown(b, p, wt); err != nil {
				return err
			}
			continue
		case fkVarint:
			want = wtVarint
		case fkI64:
			want = wtI64
		case fkI32:
			want = wtI32
		}
		if wt != want {
			return wrongWire(num, wt, s.name)
		}
		switch f.kind {
		case fkVarint:
			_, pos, err = consumeVarint(b, p)
		case fkI64:
			pos, err = consumeFixed(b, p, 8)
		case fkI32:
			pos, err = consumeFixed(b, p, 4)
		default:
			var start int
			if start, pos, err = readLen(b, p); err != nil {
				return err
			}
			v := b[start:pos]
			switch f.kind {
			case fkMsg:
				err = validateMsg(f.msg, v, depth)
			case fkTraceID:
				if len(v) != 0 && len(v) != 16 {
					return errWireTraceIDSize
				}
				if ids != nil { // the item's own (nested links have theirs)
					ids.traceID = v
				}
			case fkSpanID:
				if len(v) != 0 && len(v) != 8 {
					return errWireSpanIDSize
				}
				if ids != nil && (s == schemaSpan && num == 2 || s == schemaLogRecord && num == 10) {
					ids.spanID = v
				}
			case fkLen:
				if ids != nil && s == schemaSpan && num == 5 {
					ids.name = v
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// validateSpan is validate for a Span, the message there is most of.
func validateSpan(b []byte, ids *wireIDs) error {
	return validateSpanFields(b, spanPrefix(b, ids), ids)
}

// validateSpanFields validates the fields of a Span from pos on.
func validateSpanFields(b []byte, pos int, ids *wireIDs) error {
	for pos < len(b) {
		// The one-byte tags of every field below 16, inline.
		var num int32
		var wt int8
		var p int
		var err error
		if c := b[pos]; c < 0x80 && c >= 8 {
			num, wt, p = int32(c>>3), int8(c&7), pos+1
		} else if num, wt, p, err = consumeTag(b, pos); err != nil {
			return err
		}
		switch num {
		case 1, 2, 3, 4, 5, 9, 11, 13, 15:
			if wt != wtLen {
				return wrongWire(num, wt, "Span")
			}
			var start int
			if p < len(b) && b[p] < 0x80 && p+1+int(b[p]) <= len(b) {
				start, pos = p+1, p+1+int(b[p])
			} else if start, pos, err = readLen(b, p); err != nil {
				return err
			}
			v := b[start:pos]
			switch num {
			case 1:
				if len(v) != 0 && len(v) != 16 {
					return errWireTraceIDSize
				}
				ids.traceID = v
			case 2, 4:
				if len(v) != 0 && len(v) != 8 {
					return errWireSpanIDSize
				}
				if num == 2 {
					ids.spanID = v
				}
			case 5:
				ids.name = v
			case 9:
				if !plainKV(v) {
					err = validateKV(v, 0)
				}
			case 11:
				err = validate(schemaEvent, v, 0, nil)
			case 13:
				err = validate(schemaLink, v, 0, nil)
			case 15:
				err = validate(schemaStatus, v, 0, nil)
			}
		case 6, 10, 12, 14:
			if wt != wtVarint {
				return wrongWire(num, wt, "Span")
			}
			_, pos, err = consumeVarint(b, p)
		case 7, 8:
			if wt != wtI64 {
				return wrongWire(num, wt, "Span")
			}
			pos, err = consumeFixed(b, p, 8)
		case 16:
			if wt != wtI32 {
				return wrongWire(num, wt, "Span")
			}
			pos, err = consumeFixed(b, p, 4)
		default:
			pos, err = consumeUnknown(b, p, wt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// spanPrefix consumes the fields a span usually starts with, in one of
// the two orders encoders write them: ascending, as protobuf-go (an
// OpenTelemetry SDK) does (trace_id, span_id, trace_state,
// parent_span_id, name, kind, start and end times, attributes), or
// descending, as pdata (a collector) does, status first. It takes each field only when
// it has its one-byte tag and length and validateSpan's loop would accept
// it as is, and returns where that loop takes over. A span laid out
// otherwise just goes through the loop from an earlier position:
// spanPrefix decides nothing the loop would not, it only spares the
// loop's dispatch on the field number (whose indirect jump, mispredicted,
// was a quarter of the walk's time).
func spanPrefix(b []byte, ids *wireIDs) int {
	if len(b) == 0 {
		return 0
	}
	if b[0] == 15<<3|wtLen || b[0] == 9<<3|wtLen {
		return spanPrefixDesc(b, ids)
	}
	pos := 0
	if len(b) >= 18 && b[0] == 1<<3|wtLen && b[1] == 16 {
		ids.traceID, pos = b[2:18], 18
	}
	if pos+10 <= len(b) && b[pos] == 2<<3|wtLen && b[pos+1] == 8 {
		ids.spanID, pos = b[pos+2:pos+10], pos+10
	}
	pos = skipShortLen(b, pos, 3<<3|wtLen) // trace_state
	if pos+10 <= len(b) && b[pos] == 4<<3|wtLen && b[pos+1] == 8 {
		pos += 10 // parent_span_id
	}
	if pos+2 <= len(b) && b[pos] == 5<<3|wtLen && b[pos+1] < 0x80 && pos+2+int(b[pos+1]) <= len(b) {
		ids.name, pos = b[pos+2:pos+2+int(b[pos+1])], pos+2+int(b[pos+1])
	}
	if pos+2 <= len(b) && b[pos] == 6<<3|wtVarint && b[pos+1] < 0x80 {
		pos += 2 // kind
	}
	if pos+9 <= len(b) && b[pos] == 7<<3|wtI64 {
		pos += 9 // start_time_unix_nano
	}
	if pos+9 <= len(b) && b[pos] == 8<<3|wtI64 {
		pos += 9 // end_time_unix_nano
	}
	return plainStatus(b, plainAttrs(b, pos))
}

// spanPrefixDesc is spanPrefix for a span that starts with its
// attributes: fields in descending order.
func spanPrefixDesc(b []byte, ids *wireIDs) int {
	pos := plainAttrs(b, plainStatus(b, 0))
	if pos+9 <= len(b) && b[pos] == 8<<3|wtI64 {
		pos += 9
	}
	if pos+9 <= len(b) && b[pos] == 7<<3|wtI64 {
		pos += 9
	}
	if pos+2 <= len(b) && b[pos] == 6<<3|wtVarint && b[pos+1] < 0x80 {
		pos += 2
	}
	if pos+2 <= len(b) && b[pos] == 5<<3|wtLen && b[pos+1] < 0x80 && pos+2+int(b[pos+1]) <= len(b) {
		ids.name, pos = b[pos+2:pos+2+int(b[pos+1])], pos+2+int(b[pos+1])
	}
	if pos+10 <= len(b) && b[pos] == 4<<3|wtLen && b[pos+1] == 8 {
		pos += 10
	}
	pos = skipShortLen(b, pos, 3<<3|wtLen)
	if pos+10 <= len(b) && b[pos] == 2<<3|wtLen && b[pos+1] == 8 {
		ids.spanID, pos = b[pos+2:pos+10], pos+10
	}
	if pos+18 <= len(b) && b[pos] == 1<<3|wtLen && b[pos+1] == 16 {
		ids.traceID, pos = b[pos+2:pos+18], pos+18
	}
	return pos
}

// skipShortLen skips a field of tag tag (one byte) with a one-byte length
// at pos, if there is one.
func skipShortLen(b []byte, pos int, tag byte) int {
	if pos+2 <= len(b) && b[pos] == tag && b[pos+1] < 0x80 && pos+2+int(b[pos+1]) <= len(b) {
		return pos + 2 + int(b[pos+1])
	}
	return pos
}

// plainStatus skips a span's status at pos when it is empty or holds
// only a code of one byte (pdata writes an empty one for every span).
func plainStatus(b []byte, pos int) int {
	if pos+2 <= len(b) && b[pos] == 15<<3|wtLen {
		switch {
		case b[pos+1] == 0:
			return pos + 2
		case b[pos+1] == 2 && pos+4 <= len(b) && b[pos+2] == 3<<3|wtVarint && b[pos+3] < 0x80:
			return pos + 4
		}
	}
	return pos
}

// plainAttrs skips the span attributes at pos that plainKV accepts.
func plainAttrs(b []byte, pos int) int {
	for pos+2 <= len(b) && b[pos] == 9<<3|wtLen && b[pos+1] < 0x80 {
		end := pos + 2 + int(b[pos+1])
		if end > len(b) || !plainKV(b[pos+2:end]) {
			break
		}
		pos = end
	}
	return pos
}

// validateKV is validate for a KeyValue.
func validateKV(b []byte, depth int) error {
	if depth >= wireRecursionLimit {
		return errWireRecursion
	}
	depth++
	pos := 0
	for pos < len(b) {
		// The one-byte tags of every field below 16, inline.
		var num int32
		var wt int8
		var p int
		var err error
		if c := b[pos]; c < 0x80 && c >= 8 {
			num, wt, p = int32(c>>3), int8(c&7), pos+1
		} else if num, wt, p, err = consumeTag(b, pos); err != nil {
			return err
		}
		switch num {
		case 1, 2:
			if wt != wtLen {
				return wrongWire(num, wt, "KeyValue")
			}
			var start int
			if p < len(b) && b[p] < 0x80 && p+1+int(b[p]) <= len(b) {
				start, pos = p+1, p+1+int(b[p])
			} else if start, pos, err = readLen(b, p); err != nil {
				return err
			}
			if num == 2 && !scalarAny(b[start:pos], depth) {
				err = validateAny(b[start:pos], depth)
			}
		case 3:
			if wt != wtVarint {
				return wrongWire(num, wt, "KeyValue")
			}
			_, pos, err = consumeVarint(b, p)
		default:
			pos, err = consumeUnknown(b, p, wt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// plainKV reports whether kv is a KeyValue that validateKV(kv, 0) accepts
// for sure because it is a key of up to 127 bytes and a value that
// scalarAny accepts, in either order, each with a one-byte tag and length,
// and nothing else: a span's usual attribute, checked without the call.
func plainKV(kv []byte) bool {
	if len(kv) < 4 || kv[1] >= 0x80 {
		return false
	}
	first := kv[0]
	if first != 1<<3|wtLen && first != 2<<3|wtLen {
		return false
	}
	i := 2 + int(kv[1])
	if i+2 > len(kv) || kv[i] != (1<<3|wtLen)+(2<<3|wtLen)-first || kv[i+1] >= 0x80 || i+2+int(kv[i+1]) != len(kv) {
		return false
	}
	v := kv[i+2:] // the value, second
	if first == 2<<3|wtLen {
		v = kv[2:i] // first
	}
	if len(v) >= 2 && v[0] == 1<<3|wtLen && v[1] < 0x80 {
		return 2+int(v[1]) == len(v) // string_value
	}
	return scalarAny(v, 1)
}

// scalarAny reports whether v is an AnyValue that validateAny(v, depth)
// accepts for sure because it is one string (of up to 127 bytes), bool or
// int field and nothing else: most attribute values, checked without the
// call.
func scalarAny(v []byte, depth int) bool {
	if len(v) < 2 || depth >= wireRecursionLimit {
		return false
	}
	switch v[0] {
	case 1<<3 | wtLen: // string_value
		return v[1] < 0x80 && 2+int(v[1]) == len(v)
	case 2<<3 | wtVarint, 3<<3 | wtVarint: // bool_value, int_value
		if len(v) > 11 || v[len(v)-1] >= 0x80 {
			return false
		}
		for _, c := range v[1 : len(v)-1] {
			if c < 0x80 {
				return false
			}
		}
		return true
	}
	return false
}

// validateAny is validate for an AnyValue.
func validateAny(b []byte, depth int) error {
	if depth >= wireRecursionLimit {
		return errWireRecursion
	}
	depth++
	pos := 0
	for pos < len(b) {
		// The one-byte tags of every field below 16, inline.
		var num int32
		var wt int8
		var p int
		var err error
		if c := b[pos]; c < 0x80 && c >= 8 {
			num, wt, p = int32(c>>3), int8(c&7), pos+1
		} else if num, wt, p, err = consumeTag(b, pos); err != nil {
			return err
		}
		switch num {
		case 1, 5, 6, 7:
			if wt != wtLen {
				return wrongWire(num, wt, "AnyValue")
			}
			var start int
			if p < len(b) && b[p] < 0x80 && p+1+int(b[p]) <= len(b) {
				start, pos = p+1, p+1+int(b[p])
			} else if start, pos, err = readLen(b, p); err != nil {
				return err
			}
			switch num {
			case 5:
				err = validate(schemaArrayValue, b[start:pos], depth, nil)
			case 6:
				err = validate(schemaKeyValueList, b[start:pos], depth, nil)
			}
		case 2, 3, 8:
			if wt != wtVarint {
				return wrongWire(num, wt, "AnyValue")
			}
			_, pos, err = consumeVarint(b, p)
		case 4:
			if wt != wtI64 {
				return wrongWire(num, wt, "AnyValue")
			}
			pos, err = consumeFixed(b, p, 8)
		default:
			pos, err = consumeUnknown(b, p, wt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// isZeroID reports whether an id is absent or all zero, as pdata's
// IsEmpty.
func isZeroID(id []byte) bool {
	for _, c := range id {
		if c != 0 {
			return false
		}
	}
	return true
}

// wireSignal is how the walk differs between traces and logs.
type wireSignal struct {
	name   string      // signalTraces, signalLogs (template.SignalTraces, SignalLogs)
	item   *wireSchema // Span, LogRecord
	ids    bool        // items without a trace or span id are rejected
	kind   string      // "span", "log record": for messages
	plural string      // "Spans", "Logs": ResourceSpans, ScopeLogs, ... in messages
}

var (
	wireTraces = &wireSignal{name: signalTraces, item: schemaSpan, ids: true, kind: "span", plural: "Spans"}
	wireLogs   = &wireSignal{name: signalLogs, item: schemaLogRecord, kind: "log record", plural: "Logs"}
)

// wireRange is a byte range of the request body.
type wireRange struct{ start, end int }

// wireResource is one resource of a walked request.
type wireResource struct {
	// entry is the resource's field 1 (tag, length, message) in the body;
	// msg the message inside it.
	entry, msg wireRange
	// items are the resource's usable spans (log records), rejected the
	// unusable ones: both of the scope group that counts (scope_spans, or
	// the deprecated group when there is none).
	items, rejected int
	// drops are the entries (tag to end) of the rejected items, to cut
	// out before forwarding.
	drops []wireRange
	// attrs are the entries of the resource's service.name and
	// service.namespace values (AnyValue messages), empty when absent.
	service, namespace wireRange
	hasService, hasNS  bool
	// migrate: the resource has deprecated scope groups (field 1000).
	// pdata's export request moves them to scope_spans when there is none
	// and drops them otherwise, but its ProtoUnmarshaler (what a Kafka
	// consumer reads a record with) does neither, so the forwarded
	// resource is migrated likewise.
	migrate, hasScoped bool
}

// wireWalk is the outcome of walking one request.
type wireWalk struct {
	resources []wireResource
	accepted  int
	rejected  int
	msg       string // why the last item was rejected
}

// walk checks body, an export request (or TracesData / LogsData) of sig,
// and cuts it into its resources.
func walk(sig *wireSignal, body []byte, out *wireWalk) error {
	*out = wireWalk{resources: out.resources[:0]}
	pos := 0
	for pos < len(body) {
		entry := pos
		num, wt, p, err := consumeTag(body, pos)
		if err != nil {
			return err
		}
		if num != 1 {
			if pos, err = consumeUnknown(body, p, wt); err != nil {
				return err
			}
			continue
		}
		if wt != wtLen {
			return fmt.Errorf("proto: wrong wireType = %d for field Resource%s", wt, sig.plural)
		}
		start, end, err := consumeLen(body, p)
		if err != nil {
			return err
		}
		r := wireResource{entry: wireRange{entry, end}, msg: wireRange{start, end}}
		if err := walkResource(sig, body, &r, out); err != nil {
			return err
		}
		out.accepted += r.items
		out.rejected += r.rejected
		out.resources = append(out.resources, r)
		pos = end
	}
	return nil
}

// walkResource walks a ResourceSpans (ResourceLogs) at r.msg.
func walkResource(sig *wireSignal, body []byte, r *wireResource, w *wireWalk) error {
	var scoped, deprecated struct {
		items, rejected int
		drops           []wireRange
	}
	hasScoped, hasDeprecated := false, false
	pos := r.msg.start
	for pos < r.msg.end {
		num, wt, p, err := consumeTag(body[:r.msg.end], pos)
		if err != nil {
			return err
		}
		switch num {
		case 1, 2, 3, 1000:
		default:
			if pos, err = consumeUnknown(body[:r.msg.end], p, wt); err != nil {
				return err
			}
			continue
		}
		if wt != wtLen {
			return fmt.Errorf("proto: wrong wireType = %d for field %d of Resource%s", wt, num, sig.plural)
		}
		start, end, err := consumeLen(body[:r.msg.end], p)
		if err != nil {
			return err
		}
		switch num {
		case 1:
			if err := walkResourceAttrs(body, start, end, r); err != nil {
				return err
			}
		case 2:
			hasScoped = true
			if err := walkScope(sig, body, start, end, &scoped.items, &scoped.rejected, &scoped.drops, w); err != nil {
				return err
			}
		case 1000:
			hasDeprecated = true
			if err := walkScope(sig, body, start, end, &deprecated.items, &deprecated.rejected, &deprecated.drops, w); err != nil {
				return err
			}
		}
		pos = end
	}
	if hasScoped {
		r.items, r.rejected, r.drops = scoped.items, scoped.rejected, scoped.drops
	} else {
		r.items, r.rejected, r.drops = deprecated.items, deprecated.rejected, deprecated.drops
	}
	r.migrate, r.hasScoped = hasDeprecated, hasScoped
	return nil
}

// walkResourceAttrs validates a Resource and finds its service.name and
// service.namespace (the first of each, as pcommon.Map.Get finds them).
func walkResourceAttrs(body []byte, start, end int, r *wireResource) error {
	b := body[start:end]
	if err := validate(schemaResource, b, 0, nil); err != nil {
		return err
	}
	pos := 0
	for pos < len(b) {
		num, wt, p, _ := consumeTag(b, pos)
		if num != 1 || wt != wtLen {
			pos, _ = consumeUnknown(b, p, wt)
			continue
		}
		ks, ke, _ := consumeLen(b, p)
		pos = ke
		var key []byte
		var val wireRange
		for q := ks; q < ke; {
			n, t, p2, _ := consumeTag(b[:ke], q)
			if t != wtLen {
				q, _ = consumeUnknown(b[:ke], p2, t)
				continue
			}
			s, e, _ := consumeLen(b[:ke], p2)
			switch n {
			case 1:
				key = b[s:e]
			case 2:
				val = wireRange{start + s, start + e}
			}
			q = e
		}
		switch {
		case string(key) == "service.name" && !r.hasService:
			r.service, r.hasService = val, true
		case string(key) == "service.namespace" && !r.hasNS:
			r.namespace, r.hasNS = val, true
		}
	}
	return nil
}

// walkScope walks a ScopeSpans (ScopeLogs) and its items.
func walkScope(sig *wireSignal, body []byte, start, end int, items, rejected *int, drops *[]wireRange, w *wireWalk) error {
	b := body[:end]
	pos := start
	for pos < end {
		entry := pos
		num, wt, p, err := readTag(b, pos)
		if err != nil {
			return err
		}
		switch num {
		case 1, 2, 3:
		default:
			if pos, err = consumeUnknown(b, p, wt); err != nil {
				return err
			}
			continue
		}
		if wt != wtLen {
			return fmt.Errorf("proto: wrong wireType = %d for field %d of Scope%s", wt, num, sig.plural)
		}
		s, e, err := readLen(b, p)
		if err != nil {
			return err
		}
		switch num {
		case 1:
			err = validate(schemaScope, b[s:e], 0, nil)
		case 2:
			var ids wireIDs
			if sig.item == schemaSpan {
				err = validateSpan(b[s:e], &ids)
			} else {
				err = validate(sig.item, b[s:e], 0, &ids)
			}
			if err != nil {
				return err
			}
			switch {
			case sig.ids && isZeroID(ids.traceID):
				*rejected++
				w.msg = fmt.Sprintf("%s %q has no trace id", sig.kind, ids.name)
				*drops = append(*drops, wireRange{entry, e})
			case sig.ids && isZeroID(ids.spanID):
				*rejected++
				w.msg = fmt.Sprintf("%s %q has no span id", sig.kind, ids.name)
				*drops = append(*drops, wireRange{entry, e})
			default:
				*items++
			}
		}
		if err != nil {
			return err
		}
		pos = e
	}
	return nil
}

// data is the resource's field 1 entry to forward: as received, or, when
// some of its items were rejected (or must be migrated), rebuilt without
// them.
func (r *wireResource) data(body []byte) []byte {
	if len(r.drops) == 0 && !r.migrate {
		return body[r.entry.start:r.entry.end]
	}
	msg := cutRanges(body, r.msg, r.drops, r.migrate, r.hasScoped)
	out := protowire.AppendTag(make([]byte, 0, len(msg)+8), 1, protowire.BytesType)
	return protowire.AppendBytes(out, msg)
}

// cutRanges copies the message at m without the field entries in drops,
// rewriting the lengths of the messages that enclose them (a resource's
// scopes; drops lie inside its scope groups). With migrate, the deprecated
// scope groups (field 1000) become scope_spans (field 2), or are left out
// when the resource has scope_spans.
func cutRanges(body []byte, m wireRange, drops []wireRange, migrate, hasScoped bool) []byte {
	out := make([]byte, 0, m.end-m.start)
	pos := m.start
	b := body[:m.end]
	for pos < m.end {
		entry := pos
		num, wt, p, _ := consumeTag(b, pos)
		if wt != wtLen {
			pos, _ = consumeUnknown(b, p, wt)
			out = append(out, b[entry:pos]...)
			continue
		}
		s, e, _ := consumeLen(b, p)
		pos = e
		if migrate && num == 1000 {
			if hasScoped {
				continue
			}
			num = 2
			inner := within(drops, s, e)
			if len(inner) == 0 {
				out = protowire.AppendTag(out, 2, protowire.BytesType)
				out = protowire.AppendBytes(out, b[s:e])
				continue
			}
		}
		if inner := within(drops, s, e); len(inner) > 0 && (num == 2 || num == 1000) {
			// A scope group holding dropped items: copy it without them.
			scope := make([]byte, 0, e-s)
			last := s
			for _, d := range inner {
				scope = append(scope, b[last:d.start]...)
				last = d.end
			}
			scope = append(scope, b[last:e]...)
			out = protowire.AppendTag(out, protowire.Number(num), protowire.BytesType)
			out = protowire.AppendBytes(out, scope)
			continue
		}
		out = append(out, b[entry:pos]...)
	}
	return out
}

// within returns the ranges of drops inside [start, end).
func within(drops []wireRange, start, end int) []wireRange {
	i := 0
	for i < len(drops) && drops[i].start < start {
		i++
	}
	j := i
	for j < len(drops) && drops[j].end <= end {
		j++
	}
	return drops[i:j]
}

// anyValueString is the text of an AnyValue message holding a string, and
// false when it holds anything else (the caller then asks pdata, which
// renders every kind).
func anyValueString(v []byte) (string, bool) {
	s, kind := "", int32(0)
	for pos := 0; pos < len(v); {
		num, wt, p, _ := consumeTag(v, pos)
		if wt == wtLen && num == 1 {
			st, e, _ := consumeLen(v, p)
			s, kind = string(v[st:e]), 1
			pos = e
			continue
		}
		if num >= 1 && num <= 8 {
			kind = num
		}
		pos, _ = consumeUnknown(v, p, wt)
	}
	return s, kind == 0 || kind == 1
}

// resourceText is the resource's service.name and service.namespace as
// text (pdata's AsString for a value that is not a string).
func (r *wireResource) resourceText(body []byte) resource {
	var res resource
	fallback := false
	if r.hasService {
		var ok bool
		if res.service, ok = anyValueString(body[r.service.start:r.service.end]); !ok {
			fallback = true
		}
	}
	if r.hasNS {
		var ok bool
		if res.namespace, ok = anyValueString(body[r.namespace.start:r.namespace.end]); !ok {
			fallback = true
		}
	}
	if !fallback {
		return res
	}
	// Rare: let pdata render the values. The resource alone, inside a
	// TracesData, whatever the signal.
	msg := body[r.msg.start:r.msg.end]
	var res1 []byte
	for pos := 0; pos < len(msg); {
		num, wt, p, _ := consumeTag(msg, pos)
		if num == 1 && wt == wtLen {
			s, e, _ := consumeLen(msg, p)
			res1 = protowire.AppendTag(res1, 1, protowire.BytesType)
			res1 = protowire.AppendBytes(res1, msg[s:e])
			pos = e
			continue
		}
		pos, _ = consumeUnknown(msg, p, wt)
	}
	td := protowire.AppendTag(nil, 1, protowire.BytesType)
	td = protowire.AppendBytes(td, res1)
	traces, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(td)
	if err != nil || traces.ResourceSpans().Len() == 0 {
		return res
	}
	return resourceOf(traces.ResourceSpans().At(0).Resource())
}
