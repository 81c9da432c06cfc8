package mixer

import (
	"context"
	"slices"

	"google.golang.org/grpc"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// mixerDesc is the Mixer service as generated (mixerv1.Mixer_ServiceDesc)
// but for Check's handler, which decodes each request into a CheckRequest
// from vtprotobuf's pool (`make proto` generates it) and gives it back once
// answered: the request's message and its attribute lists are reused
// instead of allocated per Check, ~15 allocations. That is safe because
// nothing keeps the request's messages or slices past the Check: the bag
// and instances copy the values out, the quota calls get the
// deduplication id cloned, and the strings that do outlive it (in the
// answer, in quota handlers' records) point into the request's body,
// which is not pooled (internal/vtcodec).
func (g *service) mixerDesc() *grpc.ServiceDesc {
	d := mixerv1.Mixer_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	for i := range d.Methods {
		switch d.Methods[i].MethodName {
		case "Check":
			d.Methods[i].Handler = g.checkHandler
		case "Report":
			d.Methods[i].Handler = g.reportHandler // reporthandler.go
		}
	}
	// Made once: gRPC's generated handler makes both per request.
	g.checkInfo = &grpc.UnaryServerInfo{Server: g, FullMethod: mixerv1.Mixer_Check_FullMethodName}
	g.checkUnary = func(ctx context.Context, req any) (any, error) {
		return g.Check(ctx, req.(*mixerv1.CheckRequest))
	}
	return &d
}

func (g *service) checkHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := mixerv1.CheckRequestFromVTPool()
	defer in.ReturnToVTPool()
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return g.Check(ctx, in)
	}
	return interceptor(ctx, in, g.checkInfo, g.checkUnary)
}
