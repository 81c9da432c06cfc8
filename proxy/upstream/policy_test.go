package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/fakeclock"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func newClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// count sends n requests and counts the answers by backend name.
func count(t *testing.T, c *Cluster, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		name, st, err := send(t, c)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		got[fmt.Sprintf("%s/%d", name, st)]++
	}
	return got
}

func TestWeightedRoundRobinIsExactAndInterleaved(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	ea, eb := a.ep, b.ep
	ea.Weight, eb.Weight = 3, 1
	c := NewCluster("wrr", []Endpoint{ea, eb}, Policy{}, Options{})
	defer c.Close()
	var seq []string
	for range 8 {
		name, _, err := send(t, c)
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, name)
	}
	// Smooth WRR for 3:1 is a a b a, repeated: b is never starved for
	// three picks in a row.
	if got := strings.Join(seq, ""); got != "aabaaaba" {
		t.Fatalf("sequence %s, want aabaaaba", got)
	}
}

func TestRandomFollowsWeights(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	ea, eb := a.ep, b.ep
	ea.Weight, eb.Weight = 9, 1
	c := NewCluster("rnd", []Endpoint{ea, eb}, Policy{LB: Random}, Options{})
	defer c.Close()
	const n = 4000
	hits := map[string]int{}
	for range n {
		pk, err := c.Pick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		hits[pk.Addr]++
		pk.Done(200, nil)
	}
	// 10% of 4000 = 400, sd ≈ 19: ±100 is over 5 sd.
	if got := hits[eb.HostPort()]; got < 300 || got > 500 {
		t.Fatalf("weight-1 endpoint got %d of %d picks, want about 400", got, n)
	}
}

func TestLeastRequestAvoidsBusyEndpoint(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	c := NewCluster("lr", []Endpoint{a.ep, b.ep}, Policy{LB: LeastRequest}, Options{})
	defer c.Close()
	// Hold five requests on whichever endpoint the first picks land on.
	var held []*Pick
	busy := ""
	for len(held) < 5 {
		pk, err := c.Pick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if busy == "" {
			busy = pk.Addr
		}
		if pk.Addr == busy {
			held = append(held, pk)
		} else {
			pk.Done(200, nil)
		}
	}
	const n = 2000
	toBusy := 0
	for range n {
		pk, err := c.Pick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if pk.Addr == busy {
			toBusy++
		}
		pk.Done(200, nil)
	}
	// Only a draw of the busy one twice (1/4) sends it more work.
	if toBusy > n*35/100 {
		t.Fatalf("busy endpoint got %d of %d picks, want about a quarter", toBusy, n)
	}
	for _, pk := range held {
		pk.Done(200, nil)
	}
	if st := c.Status(); st[0].Active != 0 || st[1].Active != 0 {
		t.Fatalf("active after Done: %+v", st)
	}
}

func TestPassthroughUsesOriginalDestination(t *testing.T) {
	a := newBackend(t, "orig")
	c := NewCluster("pt", nil, Policy{LB: Passthrough}, Options{})
	defer c.Close()
	if _, err := c.Pick(context.Background()); !errors.Is(err, ErrNoHealthy) {
		t.Fatalf("pick without destination: %v, want ErrNoHealthy", err)
	}
	pk, err := c.Pick(WithOriginalDestination(context.Background(), a.ep.HostPort()))
	if err != nil || pk.Addr != a.ep.HostPort() {
		t.Fatalf("pick %v %v, want %s", pk, err, a.ep.HostPort())
	}
	pk.Done(200, nil)
}

func TestOutlierEjectsAndReturnsWithGrowingTime(t *testing.T) {
	clk := newClock()
	reg := prometheus.NewRegistry()
	good1, good2, bad := newBackend(t, "g1"), newBackend(t, "g2"), newBackend(t, "bad")
	bad.setStatus(500)
	p := Policy{Outlier: OutlierDetection{Consecutive5xxErrors: 3, Interval: 10 * time.Second,
		BaseEjectionTime: 30 * time.Second, MaxEjectionPercent: 50}}
	c := NewCluster("od", []Endpoint{good1.ep, bad.ep, good2.ep}, p, Options{Now: clk.Now, Registerer: reg})
	defer c.Close()

	got := count(t, c, 9) // three rounds: the third 500 ejects
	if got["bad/500"] != 3 {
		t.Fatalf("before ejection: %v", got)
	}
	got = count(t, c, 100)
	if got["bad/500"] != 0 || got["g1/200"] != 50 || got["g2/200"] != 50 {
		t.Fatalf("while ejected: %v, want g1 and g2 only", got)
	}
	if v := metricValue(t, reg, "sidemix_upstream_ejections_total", "cluster", "od"); v != 1 {
		t.Fatalf("ejections metric %v", v)
	}
	healthyOf := func(ep Endpoint) float64 {
		return metricValue(t, reg, "sidemix_upstream_endpoint_healthy", "cluster", "od", "endpoint", ep.HostPort())
	}
	if healthyOf(bad.ep) != 0 || healthyOf(good1.ep) != 1 {
		t.Fatal("healthy gauge does not show the ejection")
	}
	clk.Advance(29 * time.Second)
	if got = count(t, c, 10); got["bad/500"] != 0 {
		t.Fatalf("back before the ejection time: %v", got)
	}
	clk.Advance(time.Second)
	bad.setStatus(200)
	if got = count(t, c, 30); got["bad/200"] != 10 {
		t.Fatalf("after 30s: %v, want the endpoint back with a third of the traffic", got)
	}
	if healthyOf(bad.ep) != 1 {
		t.Fatal("healthy gauge not back to 1")
	}
	// Failing again at once: the second ejection lasts 2 × 30s.
	bad.setStatus(503)
	count(t, c, 9)
	st := c.Status()[1]
	if !st.Ejected || st.Ejections != 2 || st.EjectedUntil.Sub(clk.Now()) != 60*time.Second {
		t.Fatalf("second ejection %+v, want 60s", st)
	}
	clk.Advance(60 * time.Second)
	if st := c.Status()[1]; st.Ejected {
		t.Fatalf("still ejected after 60s: %+v", st)
	}
	// Three healthy intervals later the multiplier has faded to 0:
	// the next ejection is 30s again.
	clk.Advance(30 * time.Second)
	count(t, c, 9)
	if st := c.Status()[1]; !st.Ejected || st.EjectedUntil.Sub(clk.Now()) != 30*time.Second {
		t.Fatalf("third ejection %+v, want 30s after the multiplier faded", st)
	}
}

func TestGatewayErrorsAndConnectFailuresEject(t *testing.T) {
	clk := newClock()
	good := newBackend(t, "good")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := endpointOf(t, ln.Addr().String())
	ln.Close()
	p := Policy{Outlier: OutlierDetection{ConsecutiveGatewayErrors: 2, MaxEjectionPercent: 50}}
	c := NewCluster("gw", []Endpoint{dead, good.ep}, p, Options{Now: clk.Now})
	defer c.Close()
	fails := 0
	for range 10 {
		if _, _, err := send(t, c); err != nil {
			if !errors.Is(err, ErrConnectFailure) {
				t.Fatalf("err %v, want a connect failure", err)
			}
			fails++
		}
	}
	if fails != 2 {
		t.Fatalf("%d connect failures, want 2 before the ejection", fails)
	}
	// A plain 500 is no gateway error: it breaks the run.
	c.Update([]Endpoint{good.ep}, p)
	good.setStatus(500)
	count(t, c, 5)
	if c.Status()[0].Ejected {
		t.Fatal("500s ejected with only consecutiveGatewayErrors set")
	}
}

func TestMaxEjectionPercentAndPanic(t *testing.T) {
	clk := newClock()
	bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c"), newBackend(t, "d")}
	var eps []Endpoint
	for _, b := range bs {
		b.setStatus(500)
		eps = append(eps, b.ep)
	}
	p := Policy{Outlier: OutlierDetection{Consecutive5xxErrors: 1, MaxEjectionPercent: 50}}
	c := NewCluster("panic", eps, p, Options{Now: clk.Now})
	defer c.Close()
	count(t, c, 20)
	ejected := 0
	for _, st := range c.Status() {
		if st.Ejected {
			ejected++
		}
	}
	if ejected != 2 {
		t.Fatalf("%d ejected, want 2 (50%% of 4)", ejected)
	}
	// Now 2 of 4 healthy = 50%: not below the threshold, no panic.
	pk, _ := c.Pick(context.Background())
	pk.Done(200, nil)
	if pk.Panic {
		t.Fatal("panic at 50% healthy with threshold 50")
	}
	// With everything allowed out, all get ejected and the cluster
	// panics over all four instead of failing.
	p.Outlier.MaxEjectionPercent = 100
	c.Update(eps, p)
	count(t, c, 20)
	seen := map[string]bool{}
	for range 8 {
		pk, err := c.Pick(context.Background())
		if err != nil {
			t.Fatalf("pick with all ejected: %v, want panic mode", err)
		}
		if !pk.Panic {
			t.Fatal("pick not marked panic")
		}
		seen[pk.Addr] = true
		pk.Done(200, nil)
	}
	if len(seen) != 4 {
		t.Fatalf("panic mode used %d endpoints, want all 4", len(seen))
	}
	p.PanicThreshold = -1
	c.Update(eps, p)
	if _, err := c.Pick(context.Background()); !errors.Is(err, ErrNoHealthy) {
		t.Fatalf("pick without panic mode: %v, want ErrNoHealthy", err)
	}
}

func TestUpdateKeepsStateOfEndpointsThatStay(t *testing.T) {
	clk := newClock()
	a, b, n := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "new")
	a.setStatus(500)
	p := Policy{Outlier: OutlierDetection{Consecutive5xxErrors: 1, MaxEjectionPercent: 100}}
	c := NewCluster("upd", []Endpoint{a.ep, b.ep}, p, Options{Now: clk.Now})
	defer c.Close()
	count(t, c, 2)
	c.Update([]Endpoint{n.ep, a.ep}, p) // b leaves, new arrives, a stays ejected
	st := c.Status()
	if len(st) != 2 || st[0].Addr != n.ep.HostPort() || !st[0].Healthy || !st[1].Ejected {
		t.Fatalf("after update: %+v", st)
	}
	if got := count(t, c, 4); got["new/200"] != 4 {
		t.Fatalf("after update: %v, want only the new endpoint", got)
	}
}

func TestActiveHealthChecks(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && !healthy.Load() {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	other := newBackend(t, "other")
	ep := endpointOf(t, srv.Listener.Addr().String())
	hc := HealthCheck{Path: "/healthz", Interval: time.Hour, Timeout: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 2}
	reg := prometheus.NewRegistry()
	// No Health in the policy: the test runs the checks itself, one round
	// at a time, instead of the loop.
	c := NewCluster("hc", []Endpoint{ep, other.ep}, Policy{PanicThreshold: -1}, Options{Registerer: reg})
	defer c.Close()
	client := &http.Client{}
	check := func() { c.checkAll(context.Background(), client, hc) }
	healthy.Store(false)
	check()
	if !c.Status()[0].Healthy {
		t.Fatal("unhealthy after one failure with threshold 2")
	}
	check()
	if c.Status()[0].Healthy {
		t.Fatal("healthy after two failures")
	}
	if got := count(t, c, 6); got["other/200"] != 6 {
		t.Fatalf("traffic %v, want all to the healthy endpoint", got)
	}
	healthy.Store(true)
	check()
	if c.Status()[0].Healthy {
		t.Fatal("healthy after one pass with threshold 2")
	}
	check()
	if !c.Status()[0].Healthy {
		t.Fatal("unhealthy after two passes")
	}
	if got := metricValue(t, reg, "sidemix_upstream_health_checks_total", "cluster", "hc", "result", "fail"); got != 2 {
		t.Fatalf("failed checks metric %v, want 2", got)
	}
}

// The loop itself runs on its interval: a failing endpoint is marked
// unhealthy without anyone calling checkAll.
func TestHealthCheckLoopRuns(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	ep := endpointOf(t, srv.Listener.Addr().String())
	hc := HealthCheck{Path: "/", Interval: 10 * time.Millisecond, UnhealthyThreshold: 2}
	c := NewCluster("loop", []Endpoint{ep}, Policy{Health: &hc, PanicThreshold: -1}, Options{})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Status()[0].Healthy {
		if time.Now().After(deadline) {
			t.Fatal("endpoint still healthy after 10s of failing checks every 10ms")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := c.Pick(context.Background()); !errors.Is(err, ErrNoHealthy) {
		t.Fatalf("pick: %v, want ErrNoHealthy", err)
	}
}

func TestMaxRequestsOverflow(t *testing.T) {
	a := newBackend(t, "a")
	reg := prometheus.NewRegistry()
	c := NewCluster("maxreq", []Endpoint{a.ep}, Policy{Pool: PoolLimits{HTTP2MaxRequests: 2}}, Options{Registerer: reg})
	defer c.Close()
	p1, err1 := c.Pick(context.Background())
	p2, err2 := c.Pick(context.Background())
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := c.Pick(context.Background()); !errors.Is(err, ErrOverflow) {
		t.Fatalf("third pick: %v, want ErrOverflow", err)
	}
	p1.Done(200, nil)
	p1.Done(200, nil) // a second Done must not free a second slot
	p3, err := c.Pick(context.Background())
	if err != nil {
		t.Fatalf("pick after Done: %v", err)
	}
	if _, err := c.Pick(context.Background()); !errors.Is(err, ErrOverflow) {
		t.Fatalf("pick after double Done: %v, want ErrOverflow", err)
	}
	p2.Done(200, nil)
	p3.Done(200, nil)
	if v := metricValue(t, reg, "sidemix_upstream_overflows_total", "cluster", "maxreq", "limit", "max_requests"); v != 2 {
		t.Fatalf("overflow metric %v, want 2", v)
	}
}

func TestMaxConnectionsAndPendingOverflow(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "slow")
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	ep := endpointOf(t, srv.Listener.Addr().String())
	c := NewCluster("pool", []Endpoint{ep}, Policy{Pool: PoolLimits{MaxConnections: 1, HTTP1MaxPendingRequests: 1}}, Options{})
	defer c.Close()

	results := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := send(t, c)
			results <- err
		}()
	}
	<-arrived // one request is at the server, holding the only connection
	pl := c.pool.Load()
	for pl.pending.Load() != 1 {
		time.Sleep(time.Millisecond) // the other is about to queue
	}
	if _, _, err := send(t, c); !errors.Is(err, ErrOverflow) {
		t.Fatalf("third request: %v, want ErrOverflow", err)
	}
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("queued request: %v", err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1 (MaxConnections)", n)
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	a := newBackend(t, "a")
	c := NewCluster("perconn", []Endpoint{a.ep}, Policy{Pool: PoolLimits{MaxRequestsPerConnection: 2}}, Options{})
	defer c.Close()
	count(t, c, 6)
	if n := a.conns.Load(); n != 3 {
		t.Fatalf("%d connections for 6 requests at 2 per connection, want 3", n)
	}
}

func TestHTTP2PolicyUsesH2C(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	var ps http.Protocols
	ps.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &ps
	srv.Start()
	defer srv.Close()
	ep := endpointOf(t, srv.Listener.Addr().String())
	c := NewCluster("h2", []Endpoint{ep}, Policy{HTTP2: true}, Options{})
	defer c.Close()
	proto, st, err := send(t, c)
	if err != nil || st != 200 || proto != "HTTP/2.0" {
		t.Fatalf("got %q %d %v, want HTTP/2.0", proto, st, err)
	}
}

func TestValidate(t *testing.T) {
	p := Policy{Pool: PoolLimits{ConnectTimeout: -time.Second}, Outlier: OutlierDetection{MaxEjectionPercent: 120},
		Health: &HealthCheck{Path: "healthz"}}
	err := p.Validate()
	for _, want := range []string{"connectionPool.tcp.connectTimeout: must not be negative",
		"outlierDetection.maxEjectionPercent: must be 0..100, got 120", `healthCheck.path: must start with /, got "healthz"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
	if err := (Policy{}).Validate(); err != nil {
		t.Fatalf("zero policy: %v", err)
	}
	if _, err := ParseLBPolicy("LEAST_CONN"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseLBPolicy("MAGLEV"); err == nil || !strings.Contains(err.Error(), `"MAGLEV"`) {
		t.Fatalf("ParseLBPolicy(MAGLEV) = %v", err)
	}
}

// Picks, Dones, updates and status reads race against each other.
func TestConcurrentUse(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	b.setStatus(503)
	p := Policy{LB: LeastRequest, Outlier: OutlierDetection{Consecutive5xxErrors: 2, MaxEjectionPercent: 50, BaseEjectionTime: time.Millisecond},
		Pool: PoolLimits{MaxConnections: 4, HTTP2MaxRequests: 64}}
	c := NewCluster("race", []Endpoint{a.ep, b.ep}, p, Options{Registerer: prometheus.NewRegistry()})
	defer c.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, _, err := send(t, c); err != nil && !errors.Is(err, ErrOverflow) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			q := p
			q.LB = LBPolicy(i % 3)
			q.Pool.MaxConnections = 2 + i%3
			c.Update([]Endpoint{a.ep, b.ep}, q)
			c.Status()
		}
	})
	wg.Wait()
	for _, st := range c.Status() {
		if st.Active != 0 {
			t.Fatalf("active %d after all Done", st.Active)
		}
	}
	if n := c.inFlight.Load(); n != 0 {
		t.Fatalf("in flight %d after all Done", n)
	}
}

// metricValue reads one counter or gauge series from reg; -1 when absent.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return value(m)
		}
	}
	return -1
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// Idle connections close after IdleTimeout; the connections gauge follows.
func TestIdleTimeoutClosesConnections(t *testing.T) {
	a := newBackend(t, "a")
	reg := prometheus.NewRegistry()
	c := NewCluster("idle", []Endpoint{a.ep}, Policy{Pool: PoolLimits{IdleTimeout: 50 * time.Millisecond}}, Options{Registerer: reg})
	defer c.Close()
	count(t, c, 3) // one connection, reused
	if n := metricValue(t, reg, "sidemix_upstream_connections", "cluster", "idle"); n != 1 || a.conns.Load() != 1 {
		t.Fatalf("connections gauge %v, server saw %d; want 1 and 1", n, a.conns.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, reg, "sidemix_upstream_connections", "cluster", "idle") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connection still open 5s after a 50ms idle timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	count(t, c, 1)
	if n := a.conns.Load(); n != 2 {
		t.Fatalf("server saw %d connections, want a new one after the idle close", n)
	}
}

// A reload that adds an endpoint and changes the pool does not disturb a
// request in flight: it finishes on its connection, its Done counts, and
// the new endpoint takes traffic at once.
func TestUpdateKeepsRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "old")
	}))
	defer slow.Close()
	old := endpointOf(t, slow.Listener.Addr().String())
	added := newBackend(t, "new")
	p := Policy{Pool: PoolLimits{MaxConnections: 1}}
	c := NewCluster("reload", []Endpoint{old}, p, Options{})
	defer c.Close()

	pk, err := c.Pick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+pk.Addr+"/slow", nil)
		resp, err := c.Transport().RoundTrip(req)
		if err != nil {
			pk.Done(0, err)
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pk.Done(resp.StatusCode, nil)
		done <- string(b)
	}()
	<-arrived
	p.Pool.MaxConnections = 2
	c.Update([]Endpoint{old, added.ep}, p)
	if got := count(t, c, 2); got["new/200"] != 1 || got["old/200"] != 1 {
		t.Fatalf("after the reload: %v, want both endpoints", got)
	}
	close(release)
	if got := <-done; got != "old" {
		t.Fatalf("request in flight across the reload: %q", got)
	}
	if n := c.inFlight.Load(); n != 0 {
		t.Fatalf("%d in flight after all Done", n)
	}
}
