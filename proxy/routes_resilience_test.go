package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidemix/sidemix/proxy"
)

func vsWith(route string) string {
	return `apiVersion: networking.sidemix.dev/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
` + route
}

// TestRoutesRetries: of three endpoints one answers 503 and one hangs;
// with attempts 3, perTryTimeout and retryOn 5xx every request reaches
// the healthy one.
func TestRoutesRetries(t *testing.T) {
	bad := startBackend(t, "bad", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) })
	hang := startBackend(t, "hang", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the caller leave
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	good := startBackend(t, "good", nil)
	p, m, _ := startRouted(t, map[string]string{
		"svc.yaml": serviceYAML(bad, hang, good),
		"vs.yaml": vsWith(`    retries: {attempts: 3, perTryTimeout: 100ms, retryOn: "5xx"}
    timeout: 3s
`),
	}, nil)
	m.DiscardReports()
	const n = 12
	for i := range n {
		code, h, body, took := call(t, p, "POST", "/r", nil, fmt.Sprintf("body %d", i))
		if code != 200 || h.Get("X-Backend") != "good" || body != "good\n" {
			t.Fatalf("request %d: %d from %q: %q", i, code, h.Get("X-Backend"), body)
		}
		if took > 2*time.Second {
			t.Errorf("request %d took %v", i, took)
		}
	}
	if bad.hits.Load() == 0 || hang.hits.Load() == 0 {
		t.Errorf("round robin never tried the failing endpoints: bad %d, hang %d", bad.hits.Load(), hang.hits.Load())
	}
	if good.hits.Load() != n {
		t.Errorf("good saw %d requests, want %d", good.hits.Load(), n)
	}
}

// TestRoutesTimeout: an endpoint that hangs is cut at the route's timeout
// with 504 and flag UT.
func TestRoutesTimeout(t *testing.T) {
	hang := startBackend(t, "hang", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the caller leave
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	p, m, _ := startRouted(t, map[string]string{
		"svc.yaml": serviceYAML(hang),
		"vs.yaml":  vsWith("    timeout: 300ms\n"),
	}, nil)
	code, _, body, took := call(t, p, "GET", "/r", nil, "")
	if code != 504 || !strings.Contains(body, "upstream request timeout") {
		t.Fatalf("%d %q", code, body)
	}
	if took < 300*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("cut after %v, want about 300ms", took)
	}
	bags := m.WaitReported(t, 1, 5*time.Second)
	if f := flags(bags); f["UT"] != 1 {
		t.Errorf("flags %v, want UT", f)
	}
}

// TestRoutesConnectFailure: an endpoint nobody listens on answers 503 UF
// without retries, and retries move to the live one.
func TestRoutesConnectFailure(t *testing.T) {
	dead := startBackend(t, "dead", nil)
	dead.Close()
	live := startBackend(t, "live", nil)
	p, m, _ := startRouted(t, map[string]string{
		"svc.yaml": serviceYAML(dead),
		"vs.yaml":  vsWith("    retries: {attempts: 0}\n"),
	}, nil)
	code, _, body, _ := call(t, p, "GET", "/r", nil, "")
	if code != 503 || !strings.Contains(body, "connect") {
		t.Fatalf("%d %q", code, body)
	}
	if f := flags(m.WaitReported(t, 1, 5*time.Second)); f["UF"] != 1 {
		t.Errorf("flags %v, want UF", f)
	}

	p2, _, _ := startRouted(t, map[string]string{"svc.yaml": serviceYAML(dead, live)}, nil) // default route, Istio's default retries
	for i := range 10 {
		if code, h, _, _ := call(t, p2, "GET", "/r", nil, ""); code != 200 || h.Get("X-Backend") != "live" {
			t.Fatalf("request %d: %d from %q", i, code, h.Get("X-Backend"))
		}
	}
}

// TestRetryBudget: when every endpoint fails, the budget caps retries in
// flight at 20% of the requests in flight (at least 3): counted upstream
// attempts stay far below the 4 per request that attempts 3 would make
// without it.
func TestRetryBudget(t *testing.T) {
	var inFlight, peak atomic.Int64
	fail := func(w http.ResponseWriter, _ *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		inFlight.Add(-1)
		w.WriteHeader(503)
	}
	run := func(tweak func(*proxy.Config)) (attempts int64, codes map[int]int) {
		a, b := startBackend(t, "a", fail), startBackend(t, "b", fail)
		p, m, _ := startRouted(t, map[string]string{
			"svc.yaml": serviceYAML(a, b),
			"vs.yaml":  vsWith(`    retries: {attempts: 3, retryOn: "5xx"}` + "\n"),
		}, tweak)
		const clients = 20
		codes = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, _, _ := call(t, p, "GET", "/r", nil, "")
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if f := flags(m.WaitReported(t, clients, 5*time.Second)); f["URX"] != clients {
			t.Errorf("flags %v, want URX on all %d", f, clients)
		}
		return a.hits.Load() + b.hits.Load(), codes
	}
	unlimited, codes := run(func(c *proxy.Config) { c.RetryBudgetPercent, c.RetryBudgetMinConcurrency = 100, 100 })
	if unlimited != 80 || codes[503] != 20 {
		t.Fatalf("without a budget: %d attempts (want 20 × 4), answers %v", unlimited, codes)
	}
	budgeted, codes := run(nil)
	if codes[503] != 20 {
		t.Errorf("answers %v", codes)
	}
	// 20 first tries, then at most 4 (20% of 20) retries in flight at once,
	// fewer as requests give up.
	if budgeted > 40 {
		t.Errorf("with the default budget %d upstream attempts for 20 requests, want at most 40 (unlimited: %d)", budgeted, unlimited)
	}
	t.Logf("upstream attempts for 20 failing requests: %d without a budget, %d with 20%%/3", unlimited, budgeted)
}

// TestRoutesFaults: abort 50% gives 50% ±5 injected 503s over 2,000
// requests, all flagged FI; a delay of 200ms is measured.
func TestRoutesFaults(t *testing.T) {
	be := startBackend(t, "v1", nil)
	p, m, _ := startRouted(t, map[string]string{
		"svc.yaml": serviceYAML(be),
		"vs.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /slow}}]
    fault: {delay: {percentage: {value: 100}, fixedDelay: 200ms}}
    route: [{destination: {host: reviews}}]
  - fault: {abort: {percentage: {value: 50}, httpStatus: 503}}
    route: [{destination: {host: reviews}}]
`,
	}, nil)
	const n = 2000
	counts := parallel(t, n, func(int) (int, http.Header) {
		code, h, _, _ := call(t, p, "GET", "/r", nil, "")
		return code, h
	})
	aborted := counts["503 "]
	if aborted+counts["200 v1"] != n {
		t.Fatalf("answers %v", counts)
	}
	if share := 100 * float64(aborted) / n; share < 45 || share > 55 {
		t.Errorf("%.1f%% aborted, want 50%% ±5", share)
	}
	bags := m.WaitReported(t, n, 10*time.Second)
	if f := flags(bags); f["FI"] != aborted || f["-"] != n-aborted {
		t.Errorf("flags %v, want FI %d", f, aborted)
	}
	if int(be.hits.Load()) != n-aborted {
		t.Errorf("backend saw %d, want %d", be.hits.Load(), n-aborted)
	}

	var fast time.Duration = time.Hour
	for range 3 {
		_, _, _, took := call(t, p, "GET", "/r?x", map[string]string{}, "")
		fast = min(fast, took)
	}
	code, _, _, took := call(t, p, "GET", "/slow", nil, "")
	if code != 200 || took < 200*time.Millisecond || took > 200*time.Millisecond+time.Second {
		t.Errorf("delayed request: %d after %v, want 200 after about 200ms", code, took)
	}
	t.Logf("delay measured: %v (undelayed: %v)", took, fast)
	last := m.WaitReported(t, n+4, 5*time.Second)
	if f := flags(last[n+3:]); f["DI"] != 1 {
		t.Errorf("delayed request flags %v, want DI", f)
	}
}

// TestRoutesOutlierDetection: one of three endpoints answers 500; it is
// ejected after 3 in a row, the callers see no error thanks to retries,
// and once healthy it is back after baseEjectionTime.
func TestRoutesOutlierDetection(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	bad := startBackend(t, "v1", func(w http.ResponseWriter, _ *http.Request) {
		if broken.Load() {
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, "v1 again\n")
	})
	a, b := startBackend(t, "v1", nil), startBackend(t, "v1", nil)
	p, _, _ := startRouted(t, map[string]string{
		"svc.yaml": strings.Replace(serviceYAML(bad, a, b), "  subsets:\n", `  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 100ms, baseEjectionTime: 500ms, maxEjectionPercent: 100}
  subsets:
`, 1),
		"vs.yaml": vsWith(`    retries: {attempts: 2, retryOn: "5xx"}` + "\n"),
	}, nil)
	for i := range 60 {
		if code, _, _, _ := call(t, p, "GET", "/r", nil, ""); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if n := bad.hits.Load(); n != 3 {
		t.Errorf("the failing endpoint got %d requests, want 3 (then ejected)", n)
	}
	broken.Store(false)
	time.Sleep(700 * time.Millisecond)
	before := bad.hits.Load()
	for range 30 {
		call(t, p, "GET", "/r", nil, "")
	}
	if bad.hits.Load() == before {
		t.Error("the endpoint did not come back after baseEjectionTime")
	}
}

// TestRoutesOverflowAndNoHealthy: a full pool answers 503 UO, a subset
// without endpoints 503 UH.
func TestRoutesOverflowAndNoHealthy(t *testing.T) {
	slow := startBackend(t, "v1", func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "slow\n")
	})
	p, m, _ := startRouted(t, map[string]string{
		"svc.yaml": strings.Replace(serviceYAML(slow), "  subsets:\n", `  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 1}}
  subsets:
  - {name: empty, labels: {version: none}}
`, 1),
		"vs.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /empty}}]
    route: [{destination: {host: reviews, subset: empty}}]
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 0}
`,
	}, nil)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _, _ = call(t, p, "GET", "/r", nil, "")
		}()
	}
	wg.Wait()
	if !(codes[0] == 200 && codes[1] == 503 || codes[0] == 503 && codes[1] == 200) {
		t.Errorf("two requests with room for one: %v", codes)
	}
	code, _, body, _ := call(t, p, "GET", "/empty", nil, "")
	if code != 503 || !strings.Contains(body, "no healthy upstream") {
		t.Errorf("empty subset: %d %q", code, body)
	}
	if f := flags(m.WaitReported(t, 3, 5*time.Second)); f["UO"] != 1 || f["UH"] != 1 || f["-"] != 1 {
		t.Errorf("flags %v, want one each of UO, UH and -", f)
	}
}
