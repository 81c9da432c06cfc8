package e2e

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// TestPrometheusPerVersionTraffic: a sidecar's outbound side routes a
// canary by header to subsets v1 and v2 of reviews (--routes), and a real
// Prometheus scraping examples/default's metrics splits the caller's
// reports by destination_version.
func TestPrometheusPerVersionTraffic(t *testing.T) {
	versions := map[string]string{}
	for _, v := range []string{"v1", "v2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "reviews %s\n", v)
		}))
		t.Cleanup(srv.Close)
		versions[v] = srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	}
	routes := t.TempDir()
	err := os.WriteFile(filepath.Join(routes, "reviews.yaml"), []byte(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: `+versions["v1"]+`}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: `+versions["v2"]+`}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cfg := newConfig(t, nil)
	prom := testenv.StartPrometheus(t, cfg.metricsAddr)
	m := startMixer(t, cfg, "", "")
	a := newApp(t)
	outbound := testenv.FreeAddr(t)
	startProxy(t, m.grpc, a.addr(), "--service", "productpage", "--outbound", outbound, "--routes", routes)
	testenv.WaitTCP(t, outbound, 5*time.Second)
	prom.WaitTargetsUp(t, 30*time.Second)

	const toV1, toV2 = 5, 3
	for i := range toV1 + toV2 {
		req, err := http.NewRequest("GET", "http://"+outbound+"/reviews/1", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "reviews"
		want := "v1"
		if i < toV2 {
			req.Header.Set("End-User", "jason")
			want = "v2"
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "reviews "+want+"\n" {
			t.Fatalf("request %d: %d %q (%v), want 200 from %s", i, resp.StatusCode, body, err, want)
		}
	}
	const q = `sum by (destination_version) (istio_requests_total{reporter="source",destination_service_name="reviews",response_code="200"})`
	want := map[string]float64{"v1": toV1, "v2": toV2}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		v, err := prom.TryQuery(q)
		if err != nil {
			return false, err.Error()
		}
		got := map[string]float64{}
		for _, s := range v {
			got[s.Metric["destination_version"]] += s.Value
		}
		return maps.Equal(got, want), fmt.Sprintf("%s = %v, want %v", q, got, want)
	})
}
