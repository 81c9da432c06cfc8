// Package grpctest is a real gRPC server of grpc.testing.TestService for
// tests that carry gRPC through the proxy: streams, headers, trailers and
// error statuses.
package grpctest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Header and trailer names the Echo service sets.
const (
	HeaderName      = "x-stream-header" // sent first on every FullDuplexCall, value "hello"
	TrailerMessages = "x-messages"      // FullDuplexCall: the messages received
	TrailerSent     = "x-sent"          // StreamingOutputCall: the messages sent
)

// Echo implements grpc.testing.TestService's streaming calls.
type Echo struct {
	testpb.UnimplementedTestServiceServer
}

// FullDuplexCall sends its header at once (so an early status comes as
// trailers after it rather than as a trailers-only answer), answers each
// message with "echo:" and its body, sets a trailer with the number of
// messages received, and ends with the status a message asks for.
func (Echo) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	if err := stream.SendHeader(metadata.Pairs(HeaderName, "hello")); err != nil {
		return err
	}
	n := 0
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			stream.SetTrailer(metadata.Pairs(TrailerMessages, fmt.Sprint(n)))
			return nil
		}
		if err != nil {
			return err
		}
		n++
		if s := req.GetResponseStatus(); s != nil {
			stream.SetTrailer(metadata.Pairs(TrailerMessages, fmt.Sprint(n)))
			return status.Error(codes.Code(s.GetCode()), s.GetMessage())
		}
		body := append([]byte("echo:"), req.GetPayload().GetBody()...)
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

// StreamingOutputCall sends one message per response parameter, of its
// size, and a trailer with the number sent.
func (Echo) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	for i, p := range req.GetResponseParameters() {
		body := []byte(strings.Repeat(fmt.Sprint(i), int(p.GetSize())))
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
	stream.SetTrailer(metadata.Pairs(TrailerSent, fmt.Sprint(len(req.GetResponseParameters()))))
	return nil
}

// Start serves Echo on a loopback port until the test ends and returns
// its address.
func Start(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, Echo{})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}
