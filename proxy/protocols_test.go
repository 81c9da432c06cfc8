package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/grpctest"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// chain starts the callee's sidecar (service reviews, inbound, in front of
// appAddr) and the caller's (service web, outbound) that reaches it as
// "reviews": by --upstreams, or with routed, by a ServiceEntry in a
// --routes folder (through proxy/upstream's clusters). It returns the
// caller and the Host to send.
func chain(t *testing.T, m *fakemixer.Server, appAddr string, routed bool) (caller *proxy.Proxy, host string) {
	t.Helper()
	callee := startProxy(t, proxy.Config{App: appAddr, Mixer: m.Addr()})
	cfg := proxy.Config{Service: "web", Namespace: "shop", Outbound: "127.0.0.1:0", Mixer: m.Addr()}
	if !routed {
		cfg.Upstreams = map[string]string{"reviews": callee.InboundAddr()}
		return startProxy(t, cfg), "reviews"
	}
	_, port, _ := net.SplitHostPort(callee.InboundAddr())
	cfg.Routes = t.TempDir()
	writeRoutes(t, cfg.Routes, "reviews.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: `+port+`}}
`)
	return startProxy(t, cfg), "reviews:9080"
}

// bothWays runs f once with the caller routing by --upstreams and once by
// --routes.
func bothWays(t *testing.T, f func(t *testing.T, routed bool)) {
	for _, routed := range []bool{false, true} {
		name := "upstreams"
		if routed {
			name = "routes"
		}
		t.Run(name, func(t *testing.T) { f(t, routed) })
	}
}

// wsEcho is a WebSocket-style server: it answers an Upgrade with 101 on a
// hijacked connection and then echoes lines, prefixed.
func wsEcho(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Echo-Key: %s\r\n\r\n", r.Header.Get("Sec-WebSocket-Key"))
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
	t.Cleanup(srv.Close)
	return srv
}

// An Upgrade (WebSocket) is tunnelled through the caller's outbound and the
// callee's inbound listener: 101 with the server's headers, then bytes both
// ways, message after message, until the client closes.
func TestWebSocketUpgradeThroughBothSidecars(t *testing.T) { bothWays(t, testWebSocket) }

func testWebSocket(t *testing.T, routed bool) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	app := wsEcho(t)
	caller, host := chain(t, m, app.Listener.Addr().String(), routed)

	c, err := net.DialTimeout("tcp", caller.OutboundAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" ||
		resp.Header.Get("X-Echo-Key") != "dGhlIHNhbXBsZSBub25jZQ==" {
		t.Fatalf("handshake answer %d %v", resp.StatusCode, resp.Header)
	}
	for i := range 5 {
		fmt.Fprintf(c, "message %d\n", i)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := fmt.Sprintf("echo message %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
	}
	c.Close()

	// Both sidecars report the exchange as a 101.
	bags := m.WaitReported(t, 2, 5*time.Second)
	kinds := map[string]int64{}
	for _, b := range bags {
		k, _ := b.String(attribute.ContextReporterKind)
		kinds[k] = num(t, b, attribute.ResponseCode)
	}
	if kinds["inbound"] != 101 || kinds["outbound"] != 101 {
		t.Fatalf("reported codes by side %v, want 101 on both", kinds)
	}
}

// gRPC over h2c through two sidecars: a bidirectional stream answers each
// message before the next is sent (nothing is buffered), headers and
// trailers arrive, an error status with its message reaches the client,
// and a server stream delivers every message; the reports carry
// grpc_status.
func TestGRPCStreamingAndTrailersThroughBothSidecars(t *testing.T) { bothWays(t, testGRPCStreaming) }

func testGRPCStreaming(t *testing.T, routed bool) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	caller, host := chain(t, m, grpctest.Start(t), routed)
	conn, err := grpc.NewClient(caller.OutboundAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(host))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := testpb.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		msg := fmt.Sprintf("ping %d", i)
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if got := string(resp.GetPayload().GetBody()); got != "echo:"+msg {
			t.Fatalf("got %q, want %q", got, "echo:"+msg)
		}
	}
	if h, err := stream.Header(); err != nil || strings.Join(h.Get("x-stream-header"), ",") != "hello" {
		t.Fatalf("stream header %v, %v", h, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v, want EOF", err)
	}
	if tr := stream.Trailer(); strings.Join(tr.Get("x-messages"), ",") != "5" {
		t.Fatalf("trailer %v, want x-messages 5", tr)
	}

	// An error status with trailers.
	stream, err = c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.Aborted), Message: "stop here"}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if st, _ := status.FromError(err); st.Code() != codes.Aborted || st.Message() != "stop here" {
		t.Fatalf("status %v, want Aborted \"stop here\"", err)
	}
	if tr := stream.Trailer(); strings.Join(tr.Get("x-messages"), ",") != "1" {
		t.Fatalf("trailer of the failed stream %v", tr)
	}

	// Server streaming.
	ss, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 20000}, {Size: 30}}})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for {
		resp, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(resp.GetPayload().GetBody()))
	}
	if fmt.Sprint(sizes) != "[10 20000 30]" || strings.Join(ss.Trailer().Get("x-sent"), ",") != "3" {
		t.Fatalf("server stream sizes %v trailer %v", sizes, ss.Trailer())
	}

	// Three calls, each reported by both sidecars, with the status.
	bags := m.WaitReported(t, 6, 5*time.Second)
	statuses := map[string]int{}
	for _, b := range bags {
		k, _ := b.String(attribute.ContextReporterKind)
		statuses[k+"/"+str(t, b, attribute.ResponseGRPCStatus)]++
		if p := str(t, b, attribute.ContextProtocol); p != "grpc" {
			t.Errorf("context.protocol %q", p)
		}
	}
	if statuses["inbound/0"] != 2 || statuses["outbound/0"] != 2 || statuses["inbound/10"] != 1 || statuses["outbound/10"] != 1 {
		t.Fatalf("reported grpc statuses %v", statuses)
	}
}

// h2c with prior knowledge that is not gRPC passes through too.
func TestH2CPriorKnowledgeThroughBothSidecars(t *testing.T) { bothWays(t, testH2C) }

func testH2C(t *testing.T, routed bool) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app saw %s", r.Proto)
	}))
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetUnencryptedHTTP2(true)
	app.Config.Protocols = &ps
	app.Start()
	defer app.Close()
	caller, host := chain(t, m, app.Listener.Addr().String(), routed)

	var cps http.Protocols
	cps.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &cps}, Timeout: 10 * time.Second}
	defer h2c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+caller.OutboundAddr()+"/x", nil)
	req.Host = host
	resp, err := h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.HasPrefix(string(body), "app saw HTTP/") {
		t.Fatalf("got %s %d %q", resp.Proto, resp.StatusCode, body)
	}
}
