package meshbench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
)

// RoutedCanary is the v2 subset's share of the routed path's requests.
const RoutedCanary = 10

// routesYAML is the routed path's --routes folder content: the app's
// service with one endpoint per instance (version v1 and v2), a
// DestinationRule with those two subsets and outlier detection, and a
// VirtualService splitting 90/10 between them with a timeout and retries
// (Istio's field names, networking.istio.io/v1).
func routesYAML(v1, v2 string) (string, error) {
	var eps strings.Builder
	for v, addr := range map[string]string{"v1": v1, "v2": v2} {
		host, port, ok := strings.Cut(addr, ":")
		if !ok {
			return "", fmt.Errorf("meshbench: app address %q has no port", addr)
		}
		fmt.Fprintf(&eps, "  - {address: %s, ports: {http: %s}, labels: {app: %s, version: %s}}\n", host, port, appService, v)
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s}
spec:
  hosts: [%[1]s.%[2]s.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
%[3]s---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s}
spec:
  host: %[1]s
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s}
spec:
  hosts: [%[1]s]
  http:
  - name: canary
    timeout: 10s
    retries: {attempts: 2, perTryTimeout: 5s, retryOn: "5xx,connect-failure,reset"}
    route:
    - {destination: {host: %[1]s, subset: v1}, weight: %[4]d}
    - {destination: {host: %[1]s, subset: v2}, weight: %[5]d}
`, appService, namespace, eps.String(), 100-RoutedCanary, RoutedCanary), nil
}

// startRouted starts the routed path: a second app instance (v2) beside
// b's (v1), and the client's outbound sidecar routing by routesYAML.
func (s *Suite) startRouted(dir string, b *backend, cpus string, env []string) (*path, error) {
	addrs, err := harness.FreeAddrs(1)
	if err != nil {
		return nil, err
	}
	v2 := addrs[0]
	echo, err := harness.Start(harness.Spec{Name: "fortioecho (v2)", Path: s.opts.Echo, Args: []string{"-addr", v2}, CPUs: cpus, Env: env})
	if err != nil {
		return nil, err
	}
	if err := echo.WaitReady(30*time.Second, harness.TCPReady(v2)); err != nil {
		_ = echo.Stop(5 * time.Second)
		return nil, err
	}
	y, err := routesYAML(b.echoAddr, v2)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "routes.yaml"), []byte(y), 0o644)
	}
	if err != nil {
		_ = echo.Stop(5 * time.Second)
		return nil, err
	}
	out, err := s.startSidecar("outbound", cpus, env, "--service", clientService, "--inbound", "",
		"--routes", dir, "--mixer", b.mixerAddr)
	if err != nil {
		_ = echo.Stop(5 * time.Second)
		return nil, err
	}
	return &path{name: SidemixRouted, t: target{url: "http://" + out.addr + "/echo", host: appService},
		procs: []*harness.Proc{out.Proc}, others: []*harness.Proc{echo}, admin: out.admin}, nil
}
