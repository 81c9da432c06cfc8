package attribute

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// badMark is a string proto.Marshal takes that the test then makes
// invalid UTF-8 of the same length in the wire form.
const badMark = "\x01BAD"

// randomRequest is a report batch with every field set now and then, some
// words not UTF-8 when bad.
func randomRequest(r *rand.Rand, bad bool) *mixerv1.ReportRequest {
	str := func() string {
		s := []string{"", "a", "/api/orders/7", "ü", "web.default.svc"}[r.IntN(5)]
		if bad && r.IntN(50) == 0 {
			s += badMark // made invalid after marshalling
		}
		return s
	}
	i32s := func() []int32 {
		var out []int32
		for range r.IntN(4) {
			out = append(out, r.Int32N(200)-100)
		}
		return out
	}
	req := &mixerv1.ReportRequest{GlobalWordCount: r.Uint32N(300)}
	for range r.IntN(4) {
		req.DefaultWords = append(req.DefaultWords, str())
	}
	for range r.IntN(6) {
		m := &mixerv1.CompressedAttributes{
			StringNames: i32s(), StringValues: i32s(), Int64Names: i32s(), DoubleNames: i32s(),
			BoolNames: i32s(), TimestampNames: i32s(), DurationNames: i32s(), BytesNames: i32s(),
			StringMapNames: i32s(), Deleted: i32s(),
		}
		for range r.IntN(3) {
			m.Words = append(m.Words, str())
			m.Int64Values = append(m.Int64Values, r.Int64()-r.Int64())
			m.DoubleValues = append(m.DoubleValues, r.NormFloat64())
			m.BoolValues = append(m.BoolValues, r.IntN(2) == 0)
			m.TimestampValues = append(m.TimestampValues, time.Now().UnixNano()-r.Int64())
			m.DurationValues = append(m.DurationValues, r.Int64N(1e12))
			m.BytesValues = append(m.BytesValues, []byte(str()))
			m.StringMapValues = append(m.StringMapValues, &mixerv1.StringMap{Keys: i32s(), Values: i32s()})
		}
		req.Attributes = append(req.Attributes, m)
	}
	return req
}

// mangle rewrites a message's wire form as another sender may: packed
// fields one element per tag, fields split or repeated, unknown fields
// and known fields of the wrong wire type added. The result decodes, by
// proto.Unmarshal, to the same message (but for unknown fields).
func mangle(r *rand.Rand, b []byte, depth int) []byte {
	var out []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		vn := protowire.ConsumeFieldValue(num, typ, b[n:])
		field, val := b[:n+vn], b[n:n+vn]
		b = b[n+vn:]
		if r.IntN(4) == 0 {
			out = protowire.AppendTag(out, 99, protowire.VarintType)
			out = protowire.AppendVarint(out, r.Uint64())
		}
		if r.IntN(6) == 0 { // a known number, a wrong type: unknown
			out = protowire.AppendTag(out, num, protowire.Fixed32Type)
			out = protowire.AppendFixed32(out, r.Uint32())
		}
		packedVarint := map[protowire.Number]bool{2: true, 3: true, 4: true, 5: true, 6: true, 8: true, 9: true,
			10: false, 12: true, 13: true, 14: true, 16: true, 18: true}
		if depth == 1 && typ == protowire.BytesType && r.IntN(2) == 0 {
			p, _ := protowire.ConsumeBytes(val)
			if packedVarint[num] {
				for len(p) > 0 {
					v, k := protowire.ConsumeVarint(p)
					out = protowire.AppendTag(out, num, protowire.VarintType)
					out = protowire.AppendVarint(out, v)
					p = p[k:]
				}
				continue
			}
			if num == 7 || num == 11 {
				for len(p) > 0 {
					v, k := protowire.ConsumeFixed64(p)
					out = protowire.AppendTag(out, num, protowire.Fixed64Type)
					out = protowire.AppendFixed64(out, v)
					p = p[k:]
				}
				continue
			}
		}
		if depth == 0 && num == 1 && typ == protowire.BytesType {
			p, _ := protowire.ConsumeBytes(val)
			out = protowire.AppendTag(out, 1, protowire.BytesType)
			out = protowire.AppendBytes(out, mangle(r, p, 1))
			continue
		}
		out = append(out, field...)
	}
	return out
}

// TestUnmarshalReportRequestMatchesProto is the differential test of
// UnmarshalReportRequest against proto.Unmarshal, over random batches in
// the usual encoding and as other senders may write them, and over
// corrupted ones: the same message, or an error from both.
func TestUnmarshalReportRequestMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		b, err := proto.Marshal(randomRequest(r, i%3 == 0))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(badMark), []byte("\xffBAD"))
		if i%2 == 1 {
			b = mangle(r, b, 0)
		}
		if i%5 == 4 && len(b) > 0 { // corrupt a byte or cut short
			b = append([]byte(nil), b...)
			if r.IntN(2) == 0 {
				b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
			} else {
				b = b[:r.IntN(len(b))]
			}
		}
		var want mixerv1.ReportRequest
		werr := proto.Unmarshal(b, &want)
		var got mixerv1.ReportRequest
		gerr := UnmarshalReportRequest(b, &got)
		if (gerr != nil) != (werr != nil) {
			t.Fatalf("case %d: error %v, proto.Unmarshal: %v", i, gerr, werr)
		}
		if werr != nil {
			continue
		}
		want.ProtoReflect().SetUnknown(nil)
		for _, m := range want.Attributes {
			m.ProtoReflect().SetUnknown(nil)
			for _, sm := range m.StringMapValues {
				sm.ProtoReflect().SetUnknown(nil)
			}
		}
		if !proto.Equal(&got, &want) {
			t.Fatalf("case %d:\n got %v\nwant %v", i, &got, &want)
		}
	}
}

// TestUnmarshalReportRequestBatch: a batch as a proxy sends it decodes to
// the bags it was made of.
func TestUnmarshalReportRequestBatch(t *testing.T) {
	bags := []*Bag{sampleBag("/a", 200), sampleBag("/b", 503), sampleBag("/b", 200)}
	b, err := proto.Marshal(NewEncoder(DefaultDictionary()).EncodeBatch(bags))
	if err != nil {
		t.Fatal(err)
	}
	var req mixerv1.ReportRequest
	if err := UnmarshalReportRequest(b, &req); err != nil {
		t.Fatal(err)
	}
	got, err := DefaultDictionary().DecodeBatch(&req)
	if err != nil {
		t.Fatal(err)
	}
	for i := range bags {
		assertSameBag(t, got[i], bags[i])
	}
}
