package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// recorder wraps the caller's ResponseWriter to learn the status, headers
// and body size of the response for the report.
type recorder struct {
	http.ResponseWriter
	code      int
	wrote     bool
	size      int64
	headBytes int64
	headers   map[string]string
}

func (w *recorder) WriteHeader(code int) {
	if w.wrote {
		return // superfluous; net/http would only log it
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // informational: not the final status
		return
	}
	w.wrote = true
	w.code = code
	h := w.ResponseWriter.Header()
	w.headers = headerMap(h)
	w.headBytes = int64(len("HTTP/1.1 000 ")+len(http.StatusText(code))+2) + headerBytes(h)
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.size += int64(n)
	return n, err
}

// Flush lets streamed responses (gRPC, server-sent events) through at once.
func (w *recorder) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection to ReverseProxy for an upgraded exchange
// (WebSocket): it writes the 101 itself, so the recorder notes it here.
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && !w.wrote {
		w.wrote = true
		w.code = http.StatusSwitchingProtocols
		w.headers = headerMap(w.ResponseWriter.Header())
	}
	return conn, brw, err
}

// Unwrap gives http.ResponseController (used by ReverseProxy for flushes
// and protocol upgrades) the writer underneath.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// grpcStatus finds grpc-status among the trailers (which ReverseProxy
// copies into the header map after the body) or the headers of a
// trailers-only response.
func (w *recorder) grpcStatus() string {
	h := w.ResponseWriter.Header()
	if v := h.Get("Grpc-Status"); v != "" {
		return v
	}
	if v := h.Get(http.TrailerPrefix + "Grpc-Status"); v != "" {
		return v
	}
	return w.headers["grpc-status"]
}

// countingBody counts the request body bytes the upstream read. The
// transport reads it on its own goroutine, hence the atomic.
type countingBody struct {
	rc io.ReadCloser
	n  atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }
