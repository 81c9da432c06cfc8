package vtcodec

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

func sampleRequest(words int) *mixerv1.CheckRequest {
	a := &mixerv1.CompressedAttributes{
		StringNames: []int32{1, -2, 300}, StringValues: []int32{-1, 2, -300},
		Int64Names: []int32{4}, Int64Values: []int64{-1 << 40},
		DoubleNames: []int32{5}, DoubleValues: []float64{2.5},
		BoolNames: []int32{6}, BoolValues: []bool{true},
		TimestampNames: []int32{7}, TimestampValues: []int64{1_700_000_000_000_000_000},
		DurationNames: []int32{8}, DurationValues: []int64{1500},
		BytesNames: []int32{9}, BytesValues: [][]byte{{10, 0, 3, 17}},
		StringMapNames:  []int32{10},
		StringMapValues: []*mixerv1.StringMap{{Keys: []int32{-1}, Values: []int32{-2}}},
		Deleted:         []int32{11},
	}
	for i := range words {
		a.Words = append(a.Words, strings.Repeat("w", i%40)+"é")
	}
	return &mixerv1.CheckRequest{Attributes: a, GlobalWordCount: 190, DeduplicationId: "dedup-1",
		Quotas: map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: 3, BestEffort: true}}}
}

func sampleResponse() *mixerv1.CheckResponse {
	details, _ := anypb.New(durationpb.New(3))
	return &mixerv1.CheckResponse{
		Precondition: &mixerv1.CheckResponse_PreconditionResult{
			Status:        &rpcstatus.Status{Code: 8, Message: `quota "requestcount" exhausted`, Details: []*anypb.Any{details}},
			ValidDuration: durationpb.New(5e9), ValidUseCount: 10000,
			ReferencedAttributes: &mixerv1.ReferencedAttributes{AttributeMatches: []*mixerv1.ReferencedAttributes_AttributeMatch{
				{Name: "request.path", Condition: mixerv1.ReferencedAttributes_EXACT}, {Name: "request.headers", Condition: mixerv1.ReferencedAttributes_ABSENCE, MapKey: "x-user", HasMapKey: true}}},
		},
		Quotas:       map[string]*mixerv1.CheckResponse_QuotaResult{"requestcount": {GrantedAmount: 0, Limit: 7, Remaining: 0, Reset_: durationpb.New(2e9)}},
		QuotaCharges: []*mixerv1.CheckResponse_QuotaCharge{{Quota: "requestcount", Charge: 1}},
	}
}

// split cuts b into n buffers, as gRPC may hand a body over in pieces.
func split(b []byte, n int) mem.BufferSlice {
	var out mem.BufferSlice
	step := max(len(b)/n, 1)
	for len(b) > 0 {
		k := min(step, len(b))
		out = append(out, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return out
}

// What the codec encodes, protobuf-go decodes to the same message, and
// the other way round, in one buffer or in pieces, small and past gRPC's
// buffer pooling threshold. A body in pieces is copied into a pooled
// buffer that is not cleared: the pool is left holding garbage first.
func TestSameMessagesAsProtobufGo(t *testing.T) {
	junk := materializePool.Get(1 << 20)
	for i := range *junk {
		(*junk)[i] = 0xa5
	}
	materializePool.Put(junk)
	for _, words := range []int{0, 3, 2000} {
		for _, msg := range []proto.Message{sampleRequest(words), sampleResponse()} {
			enc, err := Codec{}.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			got := msg.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(enc.Materialize(), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, msg) {
				t.Errorf("%d words: protobuf-go decodes %v, want %v", words, got, msg)
			}
			enc.Free()

			body, err := proto.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			for _, pieces := range []int{1, 3} {
				got := msg.ProtoReflect().New().Interface()
				if err := (Codec{}).Unmarshal(split(body, pieces), got); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got, msg) {
					t.Errorf("%d words, %d pieces: decoded %v, want %v", words, pieces, got, msg)
				}
			}
		}
	}
}

// A decoded request's strings and bytes stay valid after the buffers gRPC
// handed over are reused, whether copied one by one (the zero Codec, and
// types not given to New) or pointing into the request's own copy of the
// body (types given to New), which costs one allocation instead of one per
// string.
func TestDecodedRequestOutlivesTheBuffers(t *testing.T) {
	want := sampleRequest(40)
	body, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	aliasing := New((*mixerv1.CheckRequest)(nil))
	for name, c := range map[string]Codec{"copying": {}, "aliasing": aliasing, "other type listed": New((*mixerv1.ReportRequest)(nil))} {
		buf := slices.Clone(body)
		got := new(mixerv1.CheckRequest)
		if err := c.Unmarshal(split(buf, 2), got); err != nil {
			t.Fatal(err)
		}
		clear(buf)
		if !proto.Equal(got, want) {
			t.Errorf("%s: after the body was overwritten: %v, want %v", name, got, want)
		}
	}
	allocs := func(c Codec) float64 {
		return testing.AllocsPerRun(20, func() {
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(body)}, new(mixerv1.CheckRequest)); err != nil {
				t.Fatal(err)
			}
		})
	}
	if a, c := allocs(aliasing), allocs(Codec{}); a+float64(len(want.Attributes.Words)) > c {
		t.Errorf("aliasing decode: %v allocations, copying %v: want at least %d fewer", a, c, len(want.Attributes.Words))
	}
}

// Messages without generated methods go through protobuf-go; bad input is
// an error, not a panic.
func TestOtherMessagesAndErrors(t *testing.T) {
	d := durationpb.New(1234567)
	enc, err := Codec{}.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	got := new(durationpb.Duration)
	if err := (Codec{}).Unmarshal(enc, got); err != nil || !proto.Equal(got, d) {
		t.Errorf("duration: %v, %v", got, err)
	}
	if _, err := (Codec{}).Marshal(struct{}{}); err == nil {
		t.Error("marshalled a non-message")
	}
	body, _ := proto.Marshal(sampleRequest(3))
	for _, cut := range []int{1, 7, len(body) - 1} {
		if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(body[:cut])}, new(mixerv1.CheckRequest)); err == nil {
			t.Errorf("request cut at %d of %d bytes decoded", cut, len(body))
		}
	}
	if n := (Codec{}).Name(); n != "proto" {
		t.Errorf("Name %q", n)
	}
}
