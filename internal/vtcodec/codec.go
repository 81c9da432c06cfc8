// Package vtcodec is gRPC's proto codec through the marshalling code that
// protoc-gen-go-vtproto generates (MarshalToSizedBufferVT, SizeVT,
// UnmarshalVT), for the messages that have it: the Mixer API's
// (api/mixer/v1, `make proto`). Those methods are straight-line code for one
// message type, where protobuf-go walks a table per field, and allocate
// less (mixer's BenchmarkCheckRPCWire, with its pooled requests: 66 → 24
// allocations per Check, decoding and encoding included). Other
// messages (health checks, the OTLP services) go through gRPC's proto codec
// as before. Messages of the types given to New are decoded with their
// strings pointing into a copy of the body (UnmarshalVTUnsafe), the others
// with their strings copied.
//
// Use it on a server with grpc.ForceServerCodecV2(vtcodec.New(...)), or
// wrapped by another codec that delegates to it.
//
// Unlike protobuf-go, the generated code does not check that proto3 string
// fields hold valid UTF-8; the caller checks the strings it keeps
// (mixer's Check and Report do, answering InvalidArgument).
package vtcodec

import (
	"fmt"
	"reflect"
	"slices"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec delegated to
	"google.golang.org/grpc/mem"

	"github.com/sidemix/sidemix/internal/bufpool"
)

// Message is what protoc-gen-go-vtproto generates with its marshal,
// unmarshal and size features.
type Message interface {
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
	UnmarshalVT(dAtA []byte) error
}

// Codec encodes and decodes Messages with their generated methods and
// everything else with gRPC's registered proto codec. The zero Codec
// copies every string it decodes.
type Codec struct {
	// aliasing lists the message types decoded into their body's copy.
	aliasing []reflect.Type
}

// New returns a Codec that decodes the types of the given messages (typed
// nil pointers will do) with UnmarshalVTUnsafe, their strings and bytes
// pointing into one copy of the body. Name only messages whose strings
// are not kept long, or are cloned when they are: any one of them keeps
// the whole body alive.
func New(aliasing ...UnsafeMessage) Codec {
	c := Codec{}
	for _, m := range aliasing {
		c.aliasing = append(c.aliasing, reflect.TypeOf(m))
	}
	return c
}

var _ encoding.CodecV2 = Codec{}

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2("proto") }

// Marshal encodes v. Small answers get a buffer of their own, as gRPC's
// proto codec does; larger ones one from gRPC's buffer pool, given back
// once written.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(Message)
	if !ok {
		return protoCodec().Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVT(buf); err != nil {
			return nil, fmt.Errorf("vtcodec: marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVT((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("vtcodec: marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// UnsafeMessage is a Message generated with the unmarshal_unsafe feature:
// its strings and bytes point into the body it is decoded from.
type UnsafeMessage interface {
	Message
	UnmarshalVTUnsafe(dAtA []byte) error
}

// Unmarshal decodes data into v.
//
// A message of a type given to New is decoded from one copy of the body
// made for it alone and never written again: its strings and bytes point
// into that copy, one allocation instead of one per string, and stay valid
// for as long as anything refers to them (which keeps the whole copy
// alive: a string kept long, such as a deduplication id, is better
// cloned). Other Messages copy what they keep, and the body goes back to
// gRPC's pool.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if len(c.aliasing) > 0 {
		if m, ok := v.(UnsafeMessage); ok && slices.Contains(c.aliasing, reflect.TypeOf(v)) {
			return m.UnmarshalVTUnsafe(data.Materialize())
		}
	}
	m, ok := v.(Message)
	if !ok {
		return protoCodec().Unmarshal(data, v)
	}
	if len(data) == 1 {
		return m.UnmarshalVT(data[0].ReadOnlyData())
	}
	// A body that arrived in several parts (a Report of 1000 bags) is
	// copied into one buffer, from a pool that does not clear it first:
	// the copy writes every byte the decoding reads.
	buf := data.MaterializeToBuffer(materializePool)
	defer buf.Free()
	return m.UnmarshalVT(buf.ReadOnlyData())
}

var materializePool = &bufpool.Uncleared{}

// Name is the proto codec's name: peers see an ordinary proto call.
func (Codec) Name() string { return "proto" }
