package proxy_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// BenchmarkOutbound is one proxied GET on the outbound side, check cached,
// reported asynchronously: plain (--upstreams) against routed (--routes: a
// VirtualService splitting 50/50 over two subsets with retries and a
// timeout, a DestinationRule with outlier detection and pool limits).
// Compare the two in one run: the routing path's cost over the plain one.
func BenchmarkOutbound(b *testing.B) {
	m := fakemixer.Start(b, "127.0.0.1:0")
	m.DiscardReports()
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Hour, 1<<30, fakemixer.Ref(attribute.DestinationServiceHost))
	})
	v1 := startBackend(b, "v1", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	v2 := startBackend(b, "v2", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	dir := b.TempDir()
	svc := serviceYAML(v1, v2) + `  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1000}, http: {http1MaxPendingRequests: 1000}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
`
	vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
    retries: {attempts: 2, perTryTimeout: 1s, retryOn: "5xx,connect-failure"}
    timeout: 5s
`
	for n, c := range map[string]string{"svc.yaml": svc, "vs.yaml": vs} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		cfg  proxy.Config
	}{
		{"upstreams", proxy.Config{Upstreams: map[string]string{"reviews": v1.Listener.Addr().String()}}},
		{"routes", proxy.Config{Routes: dir}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := tc.cfg
			cfg.Service, cfg.Namespace, cfg.Outbound, cfg.Mixer = "productpage", "shop", "127.0.0.1:0", m.Addr()
			p, err := proxy.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() {
				b.StopTimer() // the shutdown's report flush is not the request path
				p.Shutdown(context.Background())
			}()
			c := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}
			url := "http://" + p.OutboundAddr() + "/bench"
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", url, nil)
					req.Host = "reviews:9080"
					resp, err := c.Do(req)
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
		})
	}
}
