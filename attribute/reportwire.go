package attribute

import (
	"errors"
	"math"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// UnmarshalReportRequest decodes the wire form of a ReportRequest into
// req, as proto.Unmarshal does (packed or not, fields in any order,
// repeated, wrong wire types skipped as unknown, strings checked to be
// UTF-8), except that unknown fields are dropped, and that strings and
// bytes are b's memory: b must not change afterwards, and whatever keeps
// a word (an instance holding a request id) keeps b.
//
// proto.Unmarshal makes a batch of 1000 bags in about fifteen thousand
// allocations (every bag's message, each of its repeated fields, each
// word); this makes the bags' messages and their numbers in a few large
// blocks, and no word at all.
func UnmarshalReportRequest(b []byte, req *mixerv1.ReportRequest) error {
	req.Reset()
	var s slabs
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var err error
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			m := s.message()
			if err := s.attributes(v, m); err != nil {
				return err
			}
			req.Attributes = append(req.Attributes, m)
			b = b[n:]
			continue
		case num == 2 && typ == protowire.BytesType:
			req.DefaultWords, n, err = appendString(req.DefaultWords, b)
		case num == 3 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			req.GlobalWordCount = uint32(v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if err != nil {
			return err
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

var errUTF8 = errors.New("string field contains invalid UTF-8")

// appendString appends the string field at the start of b to out.
func appendString(out []string, b []byte) ([]string, int, error) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return out, n, nil
	}
	if !utf8.Valid(v) {
		return out, n, errUTF8
	}
	return append(out, unsafe.String(unsafe.SliceData(v), len(v))), n, nil
}

// slabs hand out the messages and repeated numbers of one request from
// blocks shared by many.
type slabs struct {
	msgs []mixerv1.CompressedAttributes
	i32  []int32
	i64  []int64
	f64  []float64
	bs   []bool
}

const slabSize = 4096

func (s *slabs) message() *mixerv1.CompressedAttributes {
	if len(s.msgs) == cap(s.msgs) {
		s.msgs = make([]mixerv1.CompressedAttributes, 0, 256)
	}
	s.msgs = s.msgs[:len(s.msgs)+1]
	return &s.msgs[len(s.msgs)-1]
}

// take returns an empty slice of capacity n from *slab, whose appends
// stay inside it.
func take[T any](slab *[]T, n int) []T {
	if cap(*slab)-len(*slab) < n {
		*slab = make([]T, 0, max(n, slabSize))
	}
	l := len(*slab)
	*slab = (*slab)[:l+n]
	return (*slab)[l : l : l+n]
}

// varints counts the varints of a packed field.
func varints(b []byte) int {
	n := 0
	for _, c := range b {
		if c < 0x80 {
			n++
		}
	}
	return n
}

// attributes decodes one CompressedAttributes.
func (s *slabs) attributes(b []byte, m *mixerv1.CompressedAttributes) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var err error
		switch {
		case num == 1 && typ == protowire.BytesType:
			m.Words, n, err = appendString(m.Words, b)
		case num == 2:
			m.StringNames, n, err = s.sint32s(m.StringNames, num, typ, b)
		case num == 3:
			m.StringValues, n, err = s.sint32s(m.StringValues, num, typ, b)
		case num == 4:
			m.Int64Names, n, err = s.sint32s(m.Int64Names, num, typ, b)
		case num == 5:
			m.Int64Values, n, err = s.int64s(m.Int64Values, num, typ, b)
		case num == 6:
			m.DoubleNames, n, err = s.sint32s(m.DoubleNames, num, typ, b)
		case num == 7:
			m.DoubleValues, n, err = s.doubles(m.DoubleValues, num, typ, b)
		case num == 8:
			m.BoolNames, n, err = s.sint32s(m.BoolNames, num, typ, b)
		case num == 9:
			m.BoolValues, n, err = s.bools(m.BoolValues, num, typ, b)
		case num == 10:
			m.TimestampNames, n, err = s.sint32s(m.TimestampNames, num, typ, b)
		case num == 11:
			m.TimestampValues, n, err = s.sfixed64s(m.TimestampValues, num, typ, b)
		case num == 12:
			m.DurationNames, n, err = s.sint32s(m.DurationNames, num, typ, b)
		case num == 13:
			m.DurationValues, n, err = s.int64s(m.DurationValues, num, typ, b)
		case num == 14:
			m.BytesNames, n, err = s.sint32s(m.BytesNames, num, typ, b)
		case num == 15 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				m.BytesValues = append(m.BytesValues, v[:len(v):len(v)])
			}
		case num == 16:
			m.StringMapNames, n, err = s.sint32s(m.StringMapNames, num, typ, b)
		case num == 17 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				sm := &mixerv1.StringMap{}
				if err = s.stringMap(v, sm); err == nil {
					m.StringMapValues = append(m.StringMapValues, sm)
				}
			}
		case num == 18:
			m.Deleted, n, err = s.sint32s(m.Deleted, num, typ, b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if err != nil {
			return err
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func (s *slabs) stringMap(b []byte, m *mixerv1.StringMap) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var err error
		switch num {
		case 1:
			m.Keys, n, err = s.sint32s(m.Keys, num, typ, b)
		case 2:
			m.Values, n, err = s.sint32s(m.Values, num, typ, b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if err != nil {
			return err
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// The decoders of repeated numbers take the field's value at the start
// of b, packed (one length-delimited run, from a slab) or one element (of
// the field's own wire type), and return the field, the bytes consumed
// (negative: a parse error) and an error. Another wire type is an unknown
// field, skipped.

func (s *slabs) sint32s(out []int32, num protowire.Number, typ protowire.Type, b []byte) ([]int32, int, error) {
	switch typ {
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b)
		return append(out, int32(protowire.DecodeZigZag(v&math.MaxUint32))), n, nil
	case protowire.BytesType:
		p, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return out, n, nil
		}
		if out == nil {
			out = take(&s.i32, varints(p))
		}
		for len(p) > 0 {
			v, k := protowire.ConsumeVarint(p)
			if k < 0 {
				return out, k, nil
			}
			out = append(out, int32(protowire.DecodeZigZag(v&math.MaxUint32)))
			p = p[k:]
		}
		return out, n, nil
	}
	return out, protowire.ConsumeFieldValue(num, typ, b), nil
}

func (s *slabs) int64s(out []int64, num protowire.Number, typ protowire.Type, b []byte) ([]int64, int, error) {
	switch typ {
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b)
		return append(out, int64(v)), n, nil
	case protowire.BytesType:
		p, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return out, n, nil
		}
		if out == nil {
			out = take(&s.i64, varints(p))
		}
		for len(p) > 0 {
			v, k := protowire.ConsumeVarint(p)
			if k < 0 {
				return out, k, nil
			}
			out = append(out, int64(v))
			p = p[k:]
		}
		return out, n, nil
	}
	return out, protowire.ConsumeFieldValue(num, typ, b), nil
}

func (s *slabs) bools(out []bool, num protowire.Number, typ protowire.Type, b []byte) ([]bool, int, error) {
	switch typ {
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b)
		return append(out, protowire.DecodeBool(v)), n, nil
	case protowire.BytesType:
		p, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return out, n, nil
		}
		if out == nil {
			out = take(&s.bs, varints(p))
		}
		for len(p) > 0 {
			v, k := protowire.ConsumeVarint(p)
			if k < 0 {
				return out, k, nil
			}
			out = append(out, protowire.DecodeBool(v))
			p = p[k:]
		}
		return out, n, nil
	}
	return out, protowire.ConsumeFieldValue(num, typ, b), nil
}

func (s *slabs) doubles(out []float64, num protowire.Number, typ protowire.Type, b []byte) ([]float64, int, error) {
	switch typ {
	case protowire.Fixed64Type:
		v, n := protowire.ConsumeFixed64(b)
		return append(out, math.Float64frombits(v)), n, nil
	case protowire.BytesType:
		p, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return out, n, nil
		}
		if out == nil {
			out = take(&s.f64, len(p)/8)
		}
		for len(p) > 0 {
			v, k := protowire.ConsumeFixed64(p)
			if k < 0 {
				return out, k, nil
			}
			out = append(out, math.Float64frombits(v))
			p = p[k:]
		}
		return out, n, nil
	}
	return out, protowire.ConsumeFieldValue(num, typ, b), nil
}

func (s *slabs) sfixed64s(out []int64, num protowire.Number, typ protowire.Type, b []byte) ([]int64, int, error) {
	switch typ {
	case protowire.Fixed64Type:
		v, n := protowire.ConsumeFixed64(b)
		return append(out, int64(v)), n, nil
	case protowire.BytesType:
		p, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return out, n, nil
		}
		if out == nil {
			out = take(&s.i64, len(p)/8)
		}
		for len(p) > 0 {
			v, k := protowire.ConsumeFixed64(p)
			if k < 0 {
				return out, k, nil
			}
			out = append(out, int64(v))
			p = p[k:]
		}
		return out, n, nil
	}
	return out, protowire.ConsumeFieldValue(num, typ, b), nil
}
