package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ConnectError is a failed or timed-out dial; errors.Is(err,
// ErrConnectFailure) holds for it.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string   { return "connect to " + e.Addr + ": " + e.Err.Error() }
func (e *ConnectError) Unwrap() []error { return []error{ErrConnectFailure, e.Err} }

const maxIdleConnsPerHost = 256

// pool is one policy's transports and HTTP/1.1 limits. An Update with new
// limits builds a new pool; requests on the old one finish there.
type pool struct {
	c          *Cluster
	h1, h2c    *http.Transport
	http2      bool
	slots      chan struct{} // HTTP/1.1 requests in flight; nil: unlimited
	pending    atomic.Int64
	maxPending int64 // 0: unlimited
	perConn    int64 // requests per HTTP/1.1 connection; 0: unlimited
}

func newPool(c *Cluster, p Policy) *pool {
	pl := &pool{c: c, http2: p.HTTP2, maxPending: int64(p.Pool.HTTP1MaxPendingRequests),
		perConn: int64(p.Pool.MaxRequestsPerConnection)}
	if n := p.Pool.MaxConnections; n > 0 {
		pl.slots = make(chan struct{}, n)
	}
	pl.h1 = pl.transport(p.Pool, false)
	pl.h2c = pl.transport(p.Pool, true)
	return pl
}

func (pl *pool) transport(l PoolLimits, h2c bool) *http.Transport {
	d := &net.Dialer{Timeout: l.ConnectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy: nil, // never through HTTP_PROXY from the environment
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				if ctx.Err() != nil {
					return nil, err // the caller gave up: not the endpoint's fault
				}
				return nil, &ConnectError{Addr: addr, Err: err}
			}
			pl.c.m.connections.Inc()
			return &countedConn{Conn: conn, pool: pl}, nil
		},
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       l.IdleTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass bodies through as they are
	}
	if l.MaxConnections > 0 {
		t.MaxConnsPerHost = l.MaxConnections
		t.MaxIdleConnsPerHost = min(maxIdleConnsPerHost, l.MaxConnections)
	}
	if h2c {
		var ps http.Protocols
		ps.SetUnencryptedHTTP2(true)
		t.Protocols = &ps
	}
	return t
}

func (pl *pool) closeIdle() {
	pl.h1.CloseIdleConnections()
	pl.h2c.CloseIdleConnections()
}

// countedConn counts open connections and the requests each carried.
type countedConn struct {
	net.Conn
	pool   *pool
	reqs   atomic.Int64
	closed atomic.Bool
}

func (cc *countedConn) Close() error {
	if cc.closed.CompareAndSwap(false, true) {
		cc.pool.c.m.connections.Dec()
	}
	return cc.Conn.Close()
}

// acquire takes an HTTP/1.1 slot, waiting as one of at most maxPending.
func (pl *pool) acquire(ctx context.Context) error {
	if pl.slots == nil {
		return nil
	}
	select {
	case pl.slots <- struct{}{}:
		return nil
	default:
	}
	n := pl.pending.Add(1)
	defer pl.pending.Add(-1)
	if pl.maxPending > 0 && n > pl.maxPending {
		pl.c.m.overflow("pending_requests")
		return fmt.Errorf("cluster %s: %d connections busy and %d requests pending: %w",
			pl.c.name, cap(pl.slots), pl.maxPending, ErrOverflow)
	}
	select {
	case pl.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (pl *pool) release() {
	if pl.slots != nil {
		<-pl.slots
	}
}

// roundTripper forwards to the request's URL host over the cluster's
// current pool.
type roundTripper struct{ c *Cluster }

// Transport forwards a request to the address in its URL (a Pick's Addr)
// over the cluster's pool: gRPC (and everything, with Policy.HTTP2) over
// h2c, the rest over HTTP/1.1 within the pool limits. Errors: a
// ConnectError (ErrConnectFailure) when the dial fails, ErrOverflow when
// MaxConnections are busy and HTTP1MaxPendingRequests already wait.
func (c *Cluster) Transport() http.RoundTripper { return c.rt }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	pl := rt.c.pool.Load()
	if pl.http2 || (req.ProtoMajor == 2 && isGRPC(req)) {
		return roundTripStream(pl.h2c, req)
	}
	if err := pl.acquire(req.Context()); err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, err
	}
	if pl.perConn > 0 {
		req = pl.limitPerConn(req)
	}
	resp, err := pl.h1.RoundTrip(req)
	if err != nil {
		pl.release()
		return nil, err
	}
	// The connection is busy until the body is read or closed; an upgraded
	// connection (101) until the tunnel closes.
	rb := &releaseBody{ReadCloser: resp.Body, release: pl.release}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
		resp.Body = &releaseRWBody{releaseBody: rb, w: rwc}
	} else {
		resp.Body = rb
	}
	return resp, nil
}

// limitPerConn marks the request Connection: close when it is the last
// its connection may carry; net/http then does not reuse the connection.
func (pl *pool) limitPerConn(req *http.Request) *http.Request {
	var r2 *http.Request
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if cc, ok := info.Conn.(*countedConn); ok && cc.reqs.Add(1) >= pl.perConn {
			r2.Close = true
		}
	}}
	r2 = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	return r2
}

type releaseBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releaseBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

type releaseRWBody struct {
	*releaseBody
	w io.Writer
}

func (b *releaseRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }

func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// roundTripStream cancels the request's context when the response body is
// closed. Without that, closing the response of a stream the upstream ended
// while the caller's request body was still open (a gRPC status before the
// client's half-close) waits for the request body writer, which waits for
// the caller's next message: ReverseProxy hands the transport a body whose
// Close does nothing (golang/go#80085). ReverseProxy closes the response
// after reading it to its end, trailers included, so nothing is lost.
func roundTripStream(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	b.cancel()
	return b.ReadCloser.Close()
}
