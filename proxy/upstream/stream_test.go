package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/grpctest"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// frontProxy is a ReverseProxy over the cluster, as the sidecar uses it,
// serving HTTP/1.1 and h2c.
func frontProxy(t *testing.T, c *Cluster) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pk, err := c.Pick(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		var st int
		rp := &httputil.ReverseProxy{
			Transport: c.Transport(),
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme, pr.Out.URL.Host = "http", pk.Addr
			},
			ModifyResponse: func(resp *http.Response) error { st = resp.StatusCode; return nil },
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				pk.Done(0, err)
				http.Error(w, err.Error(), http.StatusBadGateway)
			},
		}
		rp.ServeHTTP(w, r)
		pk.Done(st, nil)
	}))
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &ps
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// gRPC through the cluster's transport (h2c): a bidirectional stream, its
// trailers, and a status the server sends before the client half-closes.
func TestGRPCStreamThroughCluster(t *testing.T) {
	c := NewCluster("grpc", []Endpoint{endpointOf(t, grpctest.Start(t))}, Policy{}, Options{})
	defer c.Close()
	conn, err := grpc.NewClient(frontProxy(t, c), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg := fmt.Sprintf("m%d", i)
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil || string(resp.GetPayload().GetBody()) != "echo:"+msg {
			t.Fatalf("recv %d: %v %v", i, resp, err)
		}
	}
	stream.CloseSend()
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
	if got := stream.Trailer().Get("x-messages"); len(got) != 1 || got[0] != "3" {
		t.Fatalf("trailer %v", stream.Trailer())
	}

	stream, err = client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "early"}})
	if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("early status: %v, want FailedPrecondition (a hang here is golang/go#80085)", err)
	}
	if n := c.inFlight.Load(); n != 0 {
		t.Fatalf("%d requests in flight after the streams ended", n)
	}
}

// An upgraded (WebSocket) exchange holds its HTTP/1.1 slot while the tunnel
// is open and gives it back when it closes.
func TestUpgradeHoldsAndReleasesSlot(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	}))
	defer app.Close()
	c := NewCluster("ws", []Endpoint{endpointOf(t, app.Listener.Addr().String())},
		Policy{Pool: PoolLimits{MaxConnections: 1, HTTP1MaxPendingRequests: 1}}, Options{})
	defer c.Close()
	front := frontProxy(t, c)
	for round := range 3 { // a leaked slot would block the second round
		conn, err := net.DialTimeout("tcp", front, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("round %d: %v %v", round, resp, err)
		}
		if n := len(c.pool.Load().slots); n != 1 {
			t.Fatalf("round %d: %d slots taken during the tunnel, want 1", round, n)
		}
		fmt.Fprintf(conn, "hi %d\n", round)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "echo hi") {
			t.Fatalf("round %d: %q %v", round, line, err)
		}
		conn.Close()
		deadline := time.Now().Add(5 * time.Second)
		for len(c.pool.Load().slots) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: slot not released after the tunnel closed", round)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}
