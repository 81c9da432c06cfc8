package proxy

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sidemix/sidemix/proxy/routing"
	ups "github.com/sidemix/sidemix/proxy/upstream"
)

// TestRoutesDNSEndpoints: endpoints given by name become one endpoint per
// address (localhost: from the hosts file), a name that does not resolve
// stays a name, and the refresh puts changed addresses into the cluster.
func TestRoutesDNSEndpoints(t *testing.T) {
	dir := t.TempDir()
	se := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings]
  ports: [{number: 9080, name: http}]
  resolution: DNS
  endpoints:
  - {address: localhost, ports: {http: 19090}, labels: {version: v1}}
  - {address: nothing.invalid, ports: {http: 19091}}
`
	if err := os.WriteFile(filepath.Join(dir, "se.yaml"), []byte(se), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Service: "productpage", Outbound: "127.0.0.1:0", Mixer: "127.0.0.1:1",
		Routes: dir, DNSRefreshRate: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	key := routing.ClusterKey{Host: "ratings", Port: 9080}
	eps := func() []ups.Endpoint {
		p.routes.mu.Lock()
		defer p.routes.mu.Unlock()
		return p.routes.live[key].eps
	}
	check := func(got []ups.Endpoint) {
		t.Helper()
		loop, named := 0, 0
		for _, e := range got {
			a, err := netip.ParseAddr(e.Address)
			switch {
			case err == nil && a.IsLoopback() && e.Port == 19090 && e.Labels["version"] == "v1":
				loop++
			case e.Address == "nothing.invalid" && e.Port == 19091:
				named++
			default:
				t.Errorf("unexpected endpoint %+v", e)
			}
		}
		if loop == 0 || named != 1 {
			t.Errorf("endpoints %+v: want localhost's addresses and the unresolved name", got)
		}
	}
	check(eps())

	// Pretend the name pointed elsewhere: the refresh puts it right.
	p.routes.mu.Lock()
	rc := p.routes.live[key]
	rc.eps = []ups.Endpoint{{Address: "192.0.2.1", Port: 19090}}
	rc.c.Update(rc.eps, rc.pol)
	p.routes.mu.Unlock()
	p.routes.start()
	deadline := time.Now().Add(5 * time.Second)
	for len(eps()) == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the refresh never replaced the stale address")
		}
		time.Sleep(10 * time.Millisecond)
	}
	check(eps())
	if st := rc.c.Status(); len(st) != len(eps()) {
		t.Errorf("cluster has %d endpoints, want %d", len(st), len(eps()))
	}
}
