package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a real HTTP server that names itself in its answers.
type backend struct {
	*httptest.Server
	ep     Endpoint
	mu     sync.Mutex
	status int
	hits   int
	conns  atomic.Int32 // connections accepted
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{status: http.StatusOK}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits++
		st := b.status
		b.mu.Unlock()
		w.WriteHeader(st)
		fmt.Fprint(w, name)
	}))
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	b.ep = endpointOf(t, b.Listener.Addr().String())
	return b
}

func (b *backend) setStatus(s int) { b.mu.Lock(); b.status = s; b.mu.Unlock() }

func endpointOf(t *testing.T, addr string) Endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Endpoint{Address: host, Port: p}
}

// send picks, forwards one GET and reports the outcome; it returns the
// body (the backend's name) and status.
func send(t *testing.T, c *Cluster) (string, int, error) {
	t.Helper()
	pk, err := c.Pick(context.Background())
	if err != nil {
		return "", 0, err
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+pk.Addr+"/", nil)
	resp, err := c.Transport().RoundTrip(req)
	if err != nil {
		pk.Done(0, err)
		return "", 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	pk.Done(resp.StatusCode, err)
	return string(body), resp.StatusCode, err
}

func TestRoundRobinOverRealServers(t *testing.T) {
	a, b, c3 := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	c := NewCluster("rr", []Endpoint{a.ep, b.ep, c3.ep}, Policy{}, Options{})
	defer c.Close()
	var got []string
	for range 6 {
		name, st, err := send(t, c)
		if err != nil || st != 200 {
			t.Fatalf("send: %v %d", err, st)
		}
		got = append(got, name)
	}
	if fmt.Sprint(got) != "[a b c a b c]" {
		t.Fatalf("order %v, want a b c a b c", got)
	}
}

func TestConnectFailureIsUF(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := endpointOf(t, ln.Addr().String())
	ln.Close() // nothing listens there now
	c := NewCluster("dead", []Endpoint{ep}, Policy{Pool: PoolLimits{ConnectTimeout: time.Second}}, Options{})
	defer c.Close()
	_, _, err = send(t, c)
	if !errors.Is(err, ErrConnectFailure) {
		t.Fatalf("err %v, want ErrConnectFailure", err)
	}
}
