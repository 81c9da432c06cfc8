package policybench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/benchmarks/internal/harness"
	"github.com/sidemix/sidemix/benchmarks/internal/load"
)

// mixerProc is a `sidemix mixer` the suite started.
type mixerProc struct {
	*harness.Proc
	grpcAddr, adminAddr string
}

// startMixer runs `sidemix mixer` on the policy in dir, pinned to the
// server CPUs with GOMAXPROCS matching them, and waits until it is ready.
func (s *Suite) startMixer(dir string) (*mixerProc, error) {
	addrs, err := harness.FreeAddrs(2)
	if err != nil {
		return nil, err
	}
	p, err := harness.Start(harness.Spec{
		Name: "sidemix mixer",
		Path: s.opts.Sidemix,
		Args: []string{"mixer", "--config", dir, "--grpc", addrs[0], "--admin", addrs[1], "--log-level", "warn"},
		Env:  s.serverEnv(),
		CPUs: s.opts.ServerCPUs,
	})
	if err != nil {
		return nil, err
	}
	m := &mixerProc{Proc: p, grpcAddr: addrs[0], adminAddr: addrs[1]}
	if err := p.WaitReady(30*time.Second, harness.HTTPReady("http://"+addrs[1]+"/readyz")); err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, err
	}
	return m, nil
}

// validate runs `sidemix validate dir`. A policy this build cannot load for
// want of a feature (an adapter or kind it does not know yet) makes the
// scenario skip; any other complaint is an error.
func (s *Suite) validate(dir string) error {
	out, err := exec.Command(s.opts.Sidemix, "validate", dir).CombinedOutput()
	if err == nil {
		return nil
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		for _, missing := range []string{"unknown adapter", "unknown kind"} {
			if i := strings.Index(line, missing); i >= 0 {
				what, _, _ := strings.Cut(line[i:], " (")
				return skipf("this sidemix build: %s", what)
			}
		}
	}
	return fmt.Errorf("sidemix validate: %v: %s", err, strings.TrimSpace(string(out)))
}

// dial opens n client connections to addr, as n proxies would.
func dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		c.Connect()
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		c.Close()
	}
}

// checkBags returns request bags as an inbound sidecar of the service builds
// them for a Check: n of them, differing in path, request id and time, so
// consecutive Checks are not byte-identical.
func checkBags(n int) []*attribute.Bag {
	bags := make([]*attribute.Bag, n)
	ip := netip.MustParseAddr("10.0.3.17")
	for i := range bags {
		path := "/api/orders/" + strconv.Itoa(1000+i)
		bags[i] = attribute.NewBuilder(32).
			SetString(attribute.ContextReporterKind, "inbound").
			SetString(attribute.ContextReporterUID, "kubernetes://web-7d9f8-abcde.default").
			SetTime(attribute.ContextTime, time.Unix(1_700_000_000, int64(i))).
			SetBool(attribute.ConnectionMTLS, false).
			SetString(attribute.ContextProtocol, "http").
			SetString(attribute.DestinationWorkloadName, service).
			SetString(attribute.DestinationWorkloadNamespace, namespace).
			SetString(attribute.DestinationWorkloadUID, "kubernetes://web-7d9f8-abcde.default").
			SetString(attribute.DestinationUID, "kubernetes://web-7d9f8-abcde.default").
			SetString(attribute.DestinationServiceName, service).
			SetString(attribute.DestinationServiceNamespace, namespace).
			SetString(attribute.DestinationServiceHost, service+"."+namespace+".svc.cluster.local").
			SetString(attribute.DestinationName, service).
			SetString(attribute.DestinationNamespace, namespace).
			SetString(attribute.DestinationPrincipal, "cluster.local/ns/default/sa/web").
			SetString(attribute.SourceWorkloadName, "shop").
			SetString(attribute.SourceName, "shop").
			SetString(attribute.SourceWorkloadNamespace, namespace).
			SetString(attribute.SourceNamespace, namespace).
			SetString(attribute.SourcePrincipal, "cluster.local/ns/default/sa/shop").
			SetIP(attribute.SourceIP, ip).
			SetString(attribute.RequestID, fmt.Sprintf("7b1d3c52-0e4f-4a8b-9c6d-%012d", i)).
			SetString(attribute.RequestPath, path+"?expand=items").
			SetString(attribute.RequestURLPath, path).
			SetStringMap(attribute.RequestQueryParams, map[string]string{"expand": "items"}).
			SetString(attribute.RequestHost, service+":8080").
			SetString(attribute.RequestMethod, "GET").
			SetString(attribute.RequestScheme, "http").
			SetString(attribute.RequestUserAgent, "shop/2.3 (go-http-client)").
			Build()
	}
	return bags
}

// checkOp returns the closed-loop request of the mixer benchmarks: one Check
// per call, encoded as proxy/mixerclient encodes it (a fresh attribute
// Encoder state, the global word count, a random deduplication id) and
// without a check cache in front. Callers spread over the connections.
func checkOp(conns []*grpc.ClientConn, workers int) load.Op {
	clients := make([]mixerv1.MixerClient, len(conns))
	for i, c := range conns {
		clients[i] = mixerv1.NewMixerClient(c)
	}
	bags := checkBags(64)
	encs := make([]*attribute.Encoder, workers)
	seq := make([]int, workers)
	for i := range encs {
		encs[i] = attribute.NewEncoder(attribute.DefaultDictionary())
	}
	return func(ctx context.Context, w int) (string, error) {
		enc := encs[w]
		seq[w]++
		enc.Reset()
		req := &mixerv1.CheckRequest{
			Attributes:      enc.Encode(bags[(w*7+seq[w])%len(bags)]),
			GlobalWordCount: enc.GlobalWordCount(),
			DeduplicationId: dedupID(),
		}
		resp, err := clients[w%len(clients)].Check(ctx, req)
		if err != nil {
			return "", err
		}
		// Named as google.rpc.Code spells them, like the peer's OVER_LIMIT.
		return code.Code(resp.GetPrecondition().GetStatus().GetCode()).String(), nil
	}
}

// dedupID is what mixerclient sends: 16 random bytes in hex.
func dedupID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
