package proxy

import (
	"context"
	"io"
	"net/http"
)

// roundTripStream forwards a streamed (HTTP/2) request and cancels its
// context when the response body is closed. Without that, closing the
// response of a stream the upstream ended while the caller's request body
// was still open (a gRPC status before the client's half-close) waits for
// the request body writer, which waits for the caller's next message:
// ReverseProxy hands the transport a body whose Close does nothing
// (golang/go#80085). The response has been read to its end (trailers
// included) when ReverseProxy closes it, so nothing is lost.
func roundTripStream(rt http.RoundTripper, r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(r.Context())
	resp, err := rt.RoundTrip(r.WithContext(ctx))
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
