package mixer

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/internal/vtcodec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// BenchmarkCheckRPC measures the Mixer API's Check as a proxy sends it
// (a 28-attribute inbound bag, encoded, with a deduplication id) against
// one memquota rule, without the gRPC transport: decoding, evaluation,
// the quota call and the answer.
func BenchmarkCheckRPC(b *testing.B) {
	svc, req := checkRPCSetup(b, 1_000_000_000_000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := svc.Check(ctx, req)
		if err != nil || resp.GetPrecondition().GetStatus().GetCode() != 0 {
			b.Fatal(err, resp.GetPrecondition().GetStatus())
		}
	}
}

// BenchmarkCheckRPCWire is BenchmarkCheckRPC through the Check handler
// and its interceptor, with the request decoded from its bytes and the
// answer encoded, as the gRPC server does: the generated handler with
// protobuf-go (proto) against the mixer's (mixerDesc: pooled requests,
// internal/vtcodec's generated vtprotobuf code).
func BenchmarkCheckRPCWire(b *testing.B) { benchmarkCheckRPCWire(b, 1_000_000_000_000, codes.OK) }

// BenchmarkCheckRPCWireDenied is BenchmarkCheckRPCWire with the quota
// exhausted: every answer a denial with its details.
func BenchmarkCheckRPCWireDenied(b *testing.B) { benchmarkCheckRPCWire(b, 1, codes.ResourceExhausted) }

func benchmarkCheckRPCWire(b *testing.B, limit int64, want codes.Code) {
	svc, req := checkRPCSetup(b, limit)
	if want != codes.OK {
		// Every request a new one (no deduplication id), the first
		// granted: the rest are denied.
		req.DeduplicationId = ""
		if _, err := svc.Check(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	body, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		codec   encoding.CodecV2
		handler grpc.MethodHandler
	}{
		{"proto", encoding.GetCodecV2("proto"), mixerv1.Mixer_ServiceDesc.Methods[0].Handler},
		{"vtcodec", vtcodec.New((*mixerv1.CheckRequest)(nil)), svc.mixerDesc().Methods[0].Handler},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			dec := func(v any) error { return c.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(body)}, v) }
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.handler(svc, ctx, dec, svc.s.recoverUnary)
				if err != nil || codes.Code(resp.(*mixerv1.CheckResponse).GetPrecondition().GetStatus().GetCode()) != want {
					b.Fatal(err, resp)
				}
				out, err := c.codec.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
	}
}

func checkRPCSetup(b *testing.B, limit int64) (*service, *mixerv1.CheckRequest) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(`apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: mem-quota}
spec:
  adapter: memquota
  params:
    quotas:
    - {name: requestcount, maxAmount: `+strconv.FormatInt(limit, 10)+`, validDuration: 1h}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: requestcount}
spec:
  template: quota
  params:
    dimensions:
      destination: destination.service.name
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: quota}
spec:
  actions:
  - handler: mem-quota
    instances: [requestcount]
`), 0o644); err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{ConfigPaths: []string{dir}, Adapters: testRegistry(b),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	bag := attribute.NewBuilder(32).
		SetString(attribute.ContextReporterKind, "inbound").
		SetString(attribute.ContextReporterUID, "kubernetes://web-7d9f8-abcde.default").
		SetTime(attribute.ContextTime, time.Unix(1_700_000_000, 0)).
		SetBool(attribute.ConnectionMTLS, false).
		SetString(attribute.ContextProtocol, "http").
		SetString(attribute.DestinationWorkloadName, "web").
		SetString(attribute.DestinationWorkloadNamespace, "default").
		SetString(attribute.DestinationUID, "kubernetes://web-7d9f8-abcde.default").
		SetString(attribute.DestinationServiceName, "web").
		SetString(attribute.DestinationServiceNamespace, "default").
		SetString(attribute.DestinationServiceHost, "web.default.svc.cluster.local").
		SetString(attribute.DestinationName, "web").
		SetString(attribute.DestinationNamespace, "default").
		SetString(attribute.DestinationPrincipal, "cluster.local/ns/default/sa/web").
		SetString(attribute.SourceWorkloadName, "shop").
		SetString(attribute.SourceName, "shop").
		SetString(attribute.SourceNamespace, "default").
		SetString(attribute.SourcePrincipal, "cluster.local/ns/default/sa/shop").
		SetIP(attribute.SourceIP, netip.MustParseAddr("10.0.3.17")).
		SetString(attribute.RequestID, "7b1d3c52-0e4f-4a8b-9c6d-000000000001").
		SetString(attribute.RequestPath, "/api/orders/1000?expand=items").
		SetString(attribute.RequestURLPath, "/api/orders/1000").
		SetStringMap(attribute.RequestQueryParams, map[string]string{"expand": "items"}).
		SetString(attribute.RequestHost, "web:8080").
		SetString(attribute.RequestMethod, "GET").
		SetString(attribute.RequestScheme, "http").
		SetString(attribute.RequestUserAgent, "shop/2.3 (go-http-client)").
		Build()
	enc := attribute.NewEncoder(attribute.DefaultDictionary())
	req := &mixerv1.CheckRequest{Attributes: enc.Encode(bag), GlobalWordCount: enc.GlobalWordCount(), DeduplicationId: "0123456789abcdef0123456789abcdef"}
	return &service{s: srv}, req
}
