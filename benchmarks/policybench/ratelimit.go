package policybench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
	"github.com/sidemix/sidemix/benchmarks/internal/load"
)

// RatelimitPackage is the peer's command, built from its Go module.
const RatelimitPackage = "github.com/envoyproxy/ratelimit/src/service_cmd"

// rlsDomain is the ratelimit domain of the benchmark's descriptors.
const rlsDomain = "sidemix-bench"

// BuildRatelimit builds the ratelimit peer at version ("latest" or a module
// version) into dir and returns the binary's path. Nothing of it lands in
// the repository.
func BuildRatelimit(ctx context.Context, dir, version string) (string, error) {
	return harness.GoInstall(ctx, dir, RatelimitPackage, version)
}

// rlsProc is a ratelimit server the suite started.
type rlsProc struct {
	*harness.Proc
	grpcAddr string
}

// startRatelimit runs the ratelimit peer against the suite's Redis with a
// limit of limit requests per unit, pinned like the mixer, and waits until
// it answers with that limit.
func (s *Suite) startRatelimit(limit int64, unit string) (*rlsProc, error) {
	root, err := os.MkdirTemp(s.opts.WorkDir, "ratelimit-")
	if err != nil {
		return nil, err
	}
	if err := writeRatelimitConfig(root, limit, unit); err != nil {
		return nil, err
	}
	addrs, err := harness.FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	env := append(s.serverEnv(),
		"HOST=127.0.0.1", "PORT="+harness.Port(addrs[0]),
		"GRPC_HOST=127.0.0.1", "GRPC_PORT="+harness.Port(addrs[1]),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT="+harness.Port(addrs[2]),
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL="+s.redis.Addr,
		fmt.Sprintf("REDIS_POOL_SIZE=%d", redisPoolSize),
		"RUNTIME_ROOT="+root, "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false",
		"USE_STATSD=false", "LOG_LEVEL=warn",
		fmt.Sprintf("LOCAL_CACHE_SIZE_IN_BYTES=%d", max(s.opts.RatelimitLocalCache, 0)),
	)
	p, err := harness.Start(harness.Spec{
		Name: "ratelimit",
		Path: s.opts.Ratelimit,
		Env:  env,
		CPUs: s.opts.ServerCPUs,
		Dir:  filepath.Dir(s.opts.Ratelimit),
	})
	if err != nil {
		return nil, err
	}
	r := &rlsProc{Proc: p, grpcAddr: addrs[1]}
	ready := func() error {
		if err := harness.HTTPReady("http://" + addrs[0] + "/healthcheck")(); err != nil {
			return err
		}
		return probeRatelimit(addrs[1])
	}
	if err := p.WaitReady(30*time.Second, ready); err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, err
	}
	return r, nil
}

// probeRatelimit sends one request and fails unless the answer carries the
// configured limit (the runtime config is loaded).
func probeRatelimit(addr string) error {
	conns, err := dial(addr, 1)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(conns[0]).ShouldRateLimit(ctx, rlsRequest("probe"))
	if err != nil {
		return err
	}
	if st := resp.GetStatuses(); len(st) != 1 || st[0].GetCurrentLimit() == nil {
		return fmt.Errorf("ratelimit answered without the configured limit: %v", resp)
	}
	return nil
}

// rlsRequest is what Envoy's rate-limit filter sends for one request with a
// destination_cluster-style action: one descriptor naming the destination.
func rlsRequest(destination string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{
		Domain: rlsDomain,
		Descriptors: []*rlcommon.RateLimitDescriptor{{
			Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "destination", Value: destination}},
		}},
		HitsAddend: 1,
	}
}

// rlsOp is the closed-loop request against the peer: one ShouldRateLimit
// per call, counted as OK or OVER_LIMIT.
func rlsOp(conns []*grpc.ClientConn) load.Op {
	clients := make([]rlsv3.RateLimitServiceClient, len(conns))
	for i, c := range conns {
		clients[i] = rlsv3.NewRateLimitServiceClient(c)
	}
	return func(ctx context.Context, w int) (string, error) {
		resp, err := clients[w%len(clients)].ShouldRateLimit(ctx, rlsRequest(service))
		if err != nil {
			return "", err
		}
		return resp.GetOverallCode().String(), nil
	}
}
