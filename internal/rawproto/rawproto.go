// Package rawproto passes protobuf message bodies through gRPC undecoded:
// the mixer's OTLP receiver walks the bodies it receives itself, and the
// otlp adapter sends the bodies it forwards as they are.
package rawproto

import (
	"bytes"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// Message is a protobuf message body, passed through undecoded.
type Message []byte

// Codec is gRPC's proto codec except for Message (to send) and *Message
// (to receive), which it passes through. Use it with
// grpc.ForceServerCodecV2 or grpc.ForceCodecV2.
type Codec struct{ delegate encoding.CodecV2 }

// NewCodec returns a Codec over gRPC's registered proto codec.
func NewCodec() Codec { return Codec{delegate: encoding.GetCodecV2("proto")} }

// Marshal sends a Message as it is.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(Message); ok {
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return c.delegate.Marshal(v)
}

// Unmarshal copies the body into a *Message. The body outlives the call
// (forwarded instances hold parts of it), so it is copied out of gRPC's
// pooled buffers; bytes.Join does not zero the copy first, as
// Materialize's make does.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*Message); ok {
		parts := make([][]byte, len(data))
		for i, b := range data {
			parts[i] = b.ReadOnlyData()
		}
		*m = bytes.Join(parts, nil)
		return nil
	}
	return c.delegate.Unmarshal(data, v)
}

// Name is the proto codec's name, so peers see an ordinary proto call.
func (Codec) Name() string { return "proto" }
