package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// A small body of known length is read whole and forwarded in memory: the
// app gets it intact with its Content-Length, and the report counts it.
func TestSmallBodyForwarded(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr()})
	for _, size := range []int{1, 1024, 16 << 10, 16<<10 + 1, 100 << 10} {
		body := strings.Repeat("x", size-1) + "!"
		resp, _ := do(t, "POST", "http://"+p.InboundAddr()+"/upload", nil, strings.NewReader(body))
		if resp.StatusCode != 200 {
			t.Fatalf("%d bytes: %s", size, resp.Status)
		}
		if a.body != body {
			t.Fatalf("%d bytes: app got %d bytes", size, len(a.body))
		}
		if cl := a.lastRequest().ContentLength; cl != int64(size) {
			t.Errorf("%d bytes: app saw Content-Length %d", size, cl)
		}
	}
	bags := m.WaitReported(t, 5, 5*time.Second)
	for i, want := range []int64{1, 1024, 16 << 10, 16<<10 + 1, 100 << 10} {
		if got := num(t, bags[i], attribute.RequestSize); got != want {
			t.Errorf("report %d: request.size = %d, want %d", i, got, want)
		}
	}
}

// A body that ends before its Content-Length is answered 400, never reaches
// the app, and is reported with flag DC.
func TestBodyCutShort(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr()})
	conn, err := net.Dial("tcp", p.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: reviews\r\nContent-Length: 100\r\n\r\n0123456789")
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	b := m.WaitReported(t, 1, 5*time.Second)[0]
	if f := str(t, b, attribute.ContextProxyErrorCode); f != "DC" {
		t.Errorf("flag %q, want DC", f)
	}
	if n := a.hits.Load(); n != 0 {
		t.Errorf("the app saw %d requests", n)
	}
}
