package mixer

import (
	"context"

	"google.golang.org/grpc"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// reportHandler is the Report method's gRPC handler: the generated one
// with the request taken from the vtprotobuf pool and given back once
// Report has returned. A request of 1000 bags decoded into a fresh
// message allocated each bag's message and each of its fields' slices
// (some 13,000 allocations per batch); a pooled one decodes into the
// previous request's, and allocates only the strings it copies. Report
// keeps nothing of the request: the bags it decodes copy their strings,
// and instances hold those.
func (g *service) reportHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := mixerv1.ReportRequestFromVTPool()
	defer in.ReturnToVTPool()
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return g.Report(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: g, FullMethod: mixerv1.Mixer_Report_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return g.Report(ctx, req.(*mixerv1.ReportRequest))
	})
}
