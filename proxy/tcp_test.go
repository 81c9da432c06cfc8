package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// echoServer is a real TCP server that sends back what it reads, prefixed,
// and closes its side after the client's EOF.
type echoServer struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.accepted++
			e.mu.Unlock()
			go func() {
				defer c.Close()
				io.WriteString(c, "echo:")
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func (e *echoServer) count() int { e.mu.Lock(); defer e.mu.Unlock(); return e.accepted }

// tcpReports are the reported bags of context.protocol tcp, by event.
func tcpReports(bags []*attribute.Bag) map[string][]*attribute.Bag {
	out := map[string][]*attribute.Bag{}
	for _, b := range bags {
		if p, _ := b.String(attribute.ContextProtocol); p == "tcp" {
			ev, _ := b.String(attribute.ConnectionEvent)
			out[ev] = append(out[ev], b)
		}
	}
	return out
}

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// A connection passes through byte for byte, the half-close reaches the
// server, and open and close are reported with the bytes both ways.
func TestTCPPassThroughReportsConnection(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	echo := startEcho(t)
	p := startProxy(t, proxy.Config{Mixer: m.Addr(), Outbound: "127.0.0.1:0",
		Upstreams: map[string]string{"db.data": echo.addr()},
		TCP:       []proxy.TCPListener{{Listen: "127.0.0.1:0", Upstream: "db.data"}}})

	c := dialTCP(t, p.TCPAddrs()[0])
	payload := bytes.Repeat([]byte("0123456789"), 10000) // 100 kB, several reads
	go func() {
		c.Write(payload)
		c.CloseWrite() // the echo server sees EOF only if the proxy passes it on
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("echo:"), payload...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d (echo: + payload)", len(got), len(want))
	}

	bags := m.WaitReported(t, 2, 5*time.Second)
	ev := tcpReports(bags)
	if len(ev["open"]) != 1 || len(ev["close"]) != 1 {
		t.Fatalf("reports by event %v, want one open and one close", ev)
	}
	cl := ev["close"][0]
	for name, want := range map[string]int64{
		attribute.ConnectionReceivedBytes:      int64(len(payload)),
		attribute.ConnectionReceivedBytesTotal: int64(len(payload)),
		attribute.ConnectionSentBytes:          int64(len(want)),
		attribute.ConnectionSentBytesTotal:     int64(len(want)),
	} {
		if got := num(t, cl, name); got != want {
			t.Errorf("close: %s = %d, want %d", name, got, want)
		}
	}
	if d, ok := cl.Duration(attribute.ConnectionDuration); !ok || d <= 0 {
		t.Errorf("close: connection.duration %v %v", d, ok)
	}
	for name, want := range map[string]string{
		attribute.ContextReporterKind:         "outbound",
		attribute.ContextProxyErrorCode:       "-",
		attribute.SourceWorkloadName:          "reviews",
		attribute.DestinationServiceName:      "db",
		attribute.DestinationServiceNamespace: "data",
		attribute.DestinationServiceHost:      "db.data.svc.cluster.local",
	} {
		if got := str(t, cl, name); got != want {
			t.Errorf("close: %s = %q, want %q", name, got, want)
		}
	}
	op := ev["open"][0]
	if n := num(t, op, attribute.ConnectionReceivedBytes); n != 0 {
		t.Errorf("open: connection.received.bytes %d", n)
	}
	if str(t, op, attribute.ConnectionID) != str(t, cl, attribute.ConnectionID) {
		t.Error("open and close carry different connection.id")
	}
	if c := m.Checked(); len(c) != 1 || str(t, c[0], attribute.ContextProtocol) != "tcp" {
		t.Errorf("checks %v, want one tcp check", c)
	}
}

// A long connection is reported while it lasts; the deltas add up to the
// totals.
func TestTCPContinueReportsCarryDeltas(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	echo := startEcho(t)
	p := startProxy(t, proxy.Config{Mixer: m.Addr(), TCPReportInterval: 20 * time.Millisecond,
		TCP: []proxy.TCPListener{{Listen: "127.0.0.1:0", Upstream: echo.addr(), Inbound: true}}})
	c := dialTCP(t, p.TCPAddrs()[0])
	buf := make([]byte, 64)
	if _, err := io.ReadFull(c, buf[:5]); err != nil {
		t.Fatal(err)
	}
	sentTotal := 0
	for i := range 3 {
		msg := strings.Repeat("x", 10*(i+1))
		c.Write([]byte(msg))
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		sentTotal += len(msg)
		// Wait for a continue report that has seen these bytes.
		deadline := time.Now().Add(5 * time.Second)
		for {
			ev := tcpReports(m.Reported())
			if k := len(ev["continue"]); k > 0 && num(t, ev["continue"][k-1], attribute.ConnectionReceivedBytesTotal) == int64(sentTotal) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no continue report with %d bytes received", sentTotal)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(tcpReports(m.Reported())["close"]) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no close report")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ev := tcpReports(m.Reported())
	var recv, sent int64
	for _, e := range []string{"open", "continue", "close"} {
		for _, b := range ev[e] {
			recv += num(t, b, attribute.ConnectionReceivedBytes)
			sent += num(t, b, attribute.ConnectionSentBytes)
		}
	}
	cl := ev["close"][0]
	if recv != int64(sentTotal) || recv != num(t, cl, attribute.ConnectionReceivedBytesTotal) {
		t.Errorf("received deltas sum to %d, total %d, want %d", recv, num(t, cl, attribute.ConnectionReceivedBytesTotal), sentTotal)
	}
	if sent != int64(sentTotal+5) || sent != num(t, cl, attribute.ConnectionSentBytesTotal) {
		t.Errorf("sent deltas sum to %d, total %d, want %d", sent, num(t, cl, attribute.ConnectionSentBytesTotal), sentTotal+5)
	}
	if str(t, cl, attribute.ContextReporterKind) != "inbound" || str(t, cl, attribute.DestinationWorkloadName) != "reviews" {
		t.Errorf("inbound close report names %q / %q", str(t, cl, attribute.ContextReporterKind), str(t, cl, attribute.DestinationWorkloadName))
	}
}

// A denied connection never reaches the upstream; a dead upstream is UF.
func TestTCPDeniedAndConnectFailure(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	echo := startEcho(t)
	_, echoPort, _ := net.SplitHostPort(echo.addr())
	m.SetCheck(func(b *attribute.Bag) *mixerv1.CheckResponse {
		port, _ := b.Int64(attribute.DestinationPort)
		if strconv.FormatInt(port, 10) == echoPort {
			return fakemixer.Answer(codes.PermissionDenied, "no tcp for you", time.Minute, 100, fakemixer.Ref(attribute.DestinationPort))
		}
		return fakemixer.Allow(time.Minute, 100, fakemixer.Ref(attribute.DestinationPort))
	})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	p := startProxy(t, proxy.Config{Mixer: m.Addr(), TCP: []proxy.TCPListener{
		{Listen: "127.0.0.1:0", Upstream: echo.addr()},
		{Listen: "127.0.0.1:0", Upstream: deadAddr},
	}})
	c := dialTCP(t, p.TCPAddrs()[0])
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("denied connection: read %d, %v; want EOF", n, err)
	}
	if echo.count() != 0 {
		t.Fatal("denied connection reached the upstream")
	}
	c2 := dialTCP(t, p.TCPAddrs()[1])
	if n, err := c2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection to a dead upstream: read %d, %v; want EOF", n, err)
	}
	bags := m.WaitReported(t, 4, 5*time.Second)
	ev := tcpReports(bags)
	if len(ev["open"]) != 2 || len(ev["close"]) != 2 {
		t.Fatalf("reports %v, want two opens and two closes", ev)
	}
	flags := map[string]bool{}
	for _, b := range ev["close"] {
		flags[str(t, b, attribute.ContextProxyErrorCode)] = true
	}
	if !flags["UAEX"] || !flags["UF"] {
		t.Fatalf("close flags %v, want UAEX and UF", flags)
	}
}

// Shutdown waits for connections until its deadline, then cuts them and
// still reports them closed.
func TestTCPShutdownCutsConnections(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	echo := startEcho(t)
	p, err := proxy.New(proxy.Config{Service: "reviews", Mixer: m.Addr(), ReportInterval: time.Hour,
		TCP: []proxy.TCPListener{{Listen: "127.0.0.1:0", Upstream: echo.addr()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, p.TCPAddrs()[0])
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "1 connections cut") {
		t.Fatalf("Shutdown: %v, want 1 connection cut", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after shutdown")
	}
	ev := tcpReports(m.Reported())
	if len(ev["open"]) != 1 || len(ev["close"]) != 1 {
		t.Fatalf("reports %v after shutdown, want open and close flushed", ev)
	}
}

func TestTCPConfigErrors(t *testing.T) {
	_, err := proxy.New(proxy.Config{Service: "s", Mixer: "127.0.0.1:1", TCP: []proxy.TCPListener{
		{Listen: "nope", Upstream: "127.0.0.1:1"},
		{Listen: "127.0.0.1:15999", Upstream: "db"},
		{Listen: "127.0.0.1:15999"},
	}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`tcp[0].listen: "nope" is not host:port`,
		`tcp[1].upstream: "db" is not host:port (want host:port or a name of upstreams)`,
		`tcp[2].listen: "127.0.0.1:15999" given twice`, "tcp[2].upstream: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// Many connections at once each pass their own bytes and are reported once
// opened and once closed.
func TestTCPConcurrentConnections(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	echo := startEcho(t)
	p := startProxy(t, proxy.Config{Mixer: m.Addr(), TCP: []proxy.TCPListener{{Listen: "127.0.0.1:0", Upstream: echo.addr()}}})
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", p.TCPAddrs()[0], 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := strings.Repeat(strconv.Itoa(i%10), 1000*(i+1))
			go func() {
				c.Write([]byte(msg))
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "echo:"+msg {
				t.Errorf("connection %d: %d bytes back, %v", i, len(got), err)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := tcpReports(m.Reported())
		if len(ev["open"]) == n && len(ev["close"]) == n {
			var recv int64
			ids := map[string]bool{}
			for _, b := range ev["close"] {
				recv += num(t, b, attribute.ConnectionReceivedBytesTotal)
				ids[str(t, b, attribute.ConnectionID)] = true
			}
			if want := int64(1000 * n * (n + 1) / 2); recv != want || len(ids) != n {
				t.Fatalf("closes report %d bytes received over %d ids, want %d over %d", recv, len(ids), want, n)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d opens and %d closes reported, want %d each", len(ev["open"]), len(ev["close"]), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkTCP is the cost of the TCP listener: a 4 KiB echo round trip on
// one kept connection, straight to the server and through the proxy, and a
// new connection per round trip through the proxy (check from the cache,
// open and close reported).
func BenchmarkTCP(b *testing.B) {
	m := fakemixer.Start(b, "127.0.0.1:0")
	m.DiscardReports()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	p, err := proxy.New(proxy.Config{Service: "bench", Mixer: m.Addr(),
		TCP: []proxy.TCPListener{{Listen: "127.0.0.1:0", Upstream: ln.Addr().String()}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	msg := bytes.Repeat([]byte("x"), 4096)
	buf := make([]byte, len(msg))
	roundTrip := func(b *testing.B, c net.Conn) {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, addr string }{{"direct", ln.Addr().String()}, {"proxy", p.TCPAddrs()[0]}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(2 * len(msg)))
			for b.Loop() {
				roundTrip(b, c)
			}
		})
	}
	for _, tc := range []struct{ name, addr string }{{"direct-connection-per-round-trip", ln.Addr().String()}, {"proxy-connection-per-round-trip", p.TCPAddrs()[0]}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				c, err := net.Dial("tcp", tc.addr)
				if err != nil {
					b.Fatal(err)
				}
				roundTrip(b, c)
				c.Close()
			}
		})
	}
}
