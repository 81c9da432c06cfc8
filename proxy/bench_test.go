package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// BenchmarkInboundCachedCheck is one proxied GET whose check the cache
// answers, reported asynchronously: the proxy's request-path overhead.
func BenchmarkInboundCachedCheck(b *testing.B) { benchInbound(b, 0) }

// BenchmarkInboundPost1K is the same with a 1 KiB POST body echoed back,
// as in the mesh suite's latency set-up.
func BenchmarkInboundPost1K(b *testing.B) { benchInbound(b, 1024) }

func benchInbound(b *testing.B, bodySize int) {
	m := fakemixer.Start(b, "127.0.0.1:0")
	m.DiscardReports()
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Hour, 1<<30, fakemixer.Ref(attribute.RequestURLPath))
	})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 0 {
			// Read first: net/http may close a request body once the
			// response is under way.
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
			return
		}
		io.WriteString(w, "ok\n")
	}))
	defer app.Close()
	p, err := proxy.New(proxy.Config{Service: "bench", Inbound: "127.0.0.1:0", App: app.Listener.Addr().String(), Mixer: m.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		b.StopTimer()
		start := time.Now()
		p.Shutdown(context.Background())
		if d := time.Since(start); d > 100*time.Millisecond {
			b.Logf("shutdown took %v", d)
		}
	}()
	c := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}
	url := "http://" + p.InboundAddr() + "/bench"
	payload := bytes.Repeat([]byte("x"), bodySize)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var resp *http.Response
			var err error
			if bodySize > 0 {
				resp, err = c.Post(url, "application/octet-stream", bytes.NewReader(payload))
			} else {
				resp, err = c.Get(url)
			}
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
	})
}
