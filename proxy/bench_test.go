package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// BenchmarkInboundCachedCheck is one proxied GET whose check the cache
// answers, reported asynchronously: the proxy's request-path overhead.
func BenchmarkInboundCachedCheck(b *testing.B) {
	m := fakemixer.Start(b, "127.0.0.1:0")
	m.DiscardReports()
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Hour, 1<<30, fakemixer.Ref(attribute.RequestURLPath))
	})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
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
