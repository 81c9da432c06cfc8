package mixerclient_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/fakeclock"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
	"github.com/sidemix/sidemix/proxy/mixerclient"
)

// metricValue sums the samples of a counter or gauge whose labels include
// the given ones.
func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// waitMetric waits for a metric to reach want.
func waitMetric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := metricValue(t, g, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newClient(t testing.TB, opts mixerclient.Options) (*mixerclient.Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	c, err := mixerclient.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c, reg
}

func pathBag(path string) *attribute.Bag {
	return attribute.NewBuilder(4).
		SetString(attribute.RequestPath, path).
		SetString(attribute.RequestMethod, "GET").
		SetString(attribute.RequestID, path+"-id").
		Build()
}

func check(t testing.TB, c *mixerclient.Client, bag *attribute.Bag) mixerclient.Decision {
	t.Helper()
	d, err := c.Check(context.Background(), bag)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return d
}

func TestCheckCacheByReferencedPath(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(b *attribute.Bag) *mixerv1.CheckResponse {
		p, _ := b.String(attribute.RequestPath)
		if p == "/admin" {
			return fakemixer.Answer(codes.PermissionDenied, "admin is closed", time.Minute, 100, fakemixer.Ref(attribute.RequestPath))
		}
		return fakemixer.Allow(time.Minute, 100, fakemixer.Ref(attribute.RequestPath))
	})
	c, reg := newClient(t, mixerclient.Options{Addr: m.Addr()})

	if d := check(t, c, pathBag("/a")); !d.Allowed() || d.Cached {
		t.Fatalf("first /a = %+v, want allowed, not cached", d)
	}
	// Same path, other request id: the decision depended on the path only.
	if d := check(t, c, pathBag("/a")); !d.Allowed() || !d.Cached {
		t.Fatalf("second /a = %+v, want allowed from cache", d)
	}
	if n := m.CheckCalls(); n != 1 {
		t.Fatalf("mixer saw %d checks, want 1", n)
	}
	if d := check(t, c, pathBag("/b")); d.Cached {
		t.Fatalf("/b served from cache: %+v", d)
	}
	if n := m.CheckCalls(); n != 2 {
		t.Fatalf("mixer saw %d checks, want 2", n)
	}
	d := check(t, c, pathBag("/admin"))
	if d.Code != codes.PermissionDenied || d.Message != "admin is closed" {
		t.Fatalf("/admin = %+v", d)
	}
	d = check(t, c, pathBag("/admin"))
	if d.Code != codes.PermissionDenied || !d.Cached {
		t.Fatalf("second /admin = %+v, want cached denial", d)
	}
	if n := m.CheckCalls(); n != 3 {
		t.Fatalf("mixer saw %d checks, want 3", n)
	}
	if hits := metricValue(t, reg, "sidemix_proxy_check_requests_total", map[string]string{"result": "cache_hit"}); hits != 2 {
		t.Errorf("cache_hit = %v, want 2", hits)
	}
	if misses := metricValue(t, reg, "sidemix_proxy_check_requests_total", map[string]string{"result": "cache_miss"}); misses != 3 {
		t.Errorf("cache_miss = %v, want 3", misses)
	}
	// Every RPC carries a fresh deduplication id.
	ids := m.DedupIDs()
	seen := map[string]bool{}
	for _, id := range ids {
		if len(id) != 32 || seen[id] {
			t.Errorf("dedup id %q: want 32 hex chars, unique", id)
		}
		seen[id] = true
	}
}

func headerBag(headers map[string]string) *attribute.Bag {
	return attribute.NewBuilder(2).
		SetString(attribute.RequestPath, "/").
		SetStringMap(attribute.RequestHeaders, headers).
		Build()
}

func TestCheckCacheByHeaderKey(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(b *attribute.Bag) *mixerv1.CheckResponse {
		u, ok := b.MapValue(attribute.RequestHeaders, "x-user")
		if ok && u == "mallory" {
			return fakemixer.Answer(codes.PermissionDenied, "no", time.Minute, 100, fakemixer.KeyRef(attribute.RequestHeaders, "x-user", true))
		}
		return fakemixer.Allow(time.Minute, 100, fakemixer.KeyRef(attribute.RequestHeaders, "x-user", ok))
	})
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr()})

	check(t, c, headerBag(map[string]string{"x-user": "alice", "accept": "a"}))
	// Other headers differ, the referenced key agrees: a hit.
	if d := check(t, c, headerBag(map[string]string{"x-user": "alice", "accept": "b", "x-other": "1"})); !d.Cached || !d.Allowed() {
		t.Fatalf("alice again = %+v, want cached allow", d)
	}
	if d := check(t, c, headerBag(map[string]string{"x-user": "mallory"})); d.Cached || d.Code != codes.PermissionDenied {
		t.Fatalf("mallory = %+v, want uncached denial", d)
	}
	// Absence of the key is a value of its own.
	if d := check(t, c, headerBag(map[string]string{"accept": "a"})); d.Cached || !d.Allowed() {
		t.Fatalf("no x-user = %+v, want uncached allow", d)
	}
	if d := check(t, c, headerBag(map[string]string{"accept": "c"})); !d.Cached || !d.Allowed() {
		t.Fatalf("no x-user again = %+v, want cached allow", d)
	}
	if d := check(t, c, headerBag(map[string]string{"x-user": "mallory", "accept": "z"})); !d.Cached || d.Code != codes.PermissionDenied {
		t.Fatalf("mallory again = %+v, want cached denial", d)
	}
	if n := m.CheckCalls(); n != 3 {
		t.Fatalf("mixer saw %d checks, want 3", n)
	}
}

func TestCheckValidUseCount(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Minute, 3, fakemixer.Ref(attribute.RequestPath))
	})
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr()})
	for i := 1; i <= 3; i++ {
		check(t, c, pathBag("/x"))
		if n := m.CheckCalls(); n != 1 {
			t.Fatalf("use %d: mixer saw %d checks, want 1", i, n)
		}
	}
	if d := check(t, c, pathBag("/x")); d.Cached {
		t.Fatalf("4th use served from cache")
	}
	if n := m.CheckCalls(); n != 2 {
		t.Fatalf("4th use: mixer saw %d checks, want 2", n)
	}
}

func TestCheckValidDurationExpires(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(10*time.Second, 1000, fakemixer.Ref(attribute.RequestPath))
	})
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now})
	check(t, c, pathBag("/x"))
	clock.Advance(9 * time.Second)
	if d := check(t, c, pathBag("/x")); !d.Cached {
		t.Fatal("within valid duration: not cached")
	}
	clock.Advance(time.Second)
	if d := check(t, c, pathBag("/x")); d.Cached {
		t.Fatal("after valid duration: served from cache")
	}
	if n := m.CheckCalls(); n != 2 {
		t.Fatalf("mixer saw %d checks, want 2", n)
	}
}

func TestCheckQuota(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	var mu sync.Mutex
	granted := int64(1)
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		mu.Lock()
		defer mu.Unlock()
		r := fakemixer.Allow(time.Minute, 1, fakemixer.Ref(attribute.RequestPath))
		return fakemixer.WithQuota(r, "requestcount", granted, 1500*time.Millisecond)
	})
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr()})
	for i := 0; i < 3; i++ {
		if d := check(t, c, pathBag("/q")); !d.Allowed() || d.Cached {
			t.Fatalf("check %d = %+v, want uncached allow", i, d)
		}
	}
	if n := m.CheckCalls(); n != 3 {
		t.Fatalf("mixer saw %d checks, want 3 (quota answers are never reused)", n)
	}
	mu.Lock()
	granted = 0
	mu.Unlock()
	d := check(t, c, pathBag("/q"))
	if d.Code != codes.ResourceExhausted || d.Message != "quota exhausted" || d.RetryAfter != 2*time.Second {
		t.Fatalf("exhausted = %+v, want ResourceExhausted, quota exhausted, retry after 2s", d)
	}
}

// Once a quota applies, the mixer sees every such request, even when an
// older answer for the request's attributes was cached before.
func TestCheckQuotaStartsApplying(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	var mu sync.Mutex
	quota := false
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		mu.Lock()
		defer mu.Unlock()
		if quota {
			return fakemixer.WithQuota(fakemixer.Allow(time.Minute, 1, fakemixer.Ref(attribute.RequestPath), fakemixer.Ref(attribute.RequestMethod)), "q", 1, time.Second)
		}
		return fakemixer.Allow(10*time.Second, 1000, fakemixer.Ref(attribute.RequestPath))
	})
	clock := fakeclock.New(time.Unix(1e9, 0))
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now})
	check(t, c, pathBag("/a"))
	if d := check(t, c, pathBag("/a")); !d.Cached {
		t.Fatal("second /a not cached")
	}
	mu.Lock()
	quota = true
	mu.Unlock()
	clock.Advance(11 * time.Second)
	for i := 0; i < 3; i++ {
		if d := check(t, c, pathBag("/a")); d.Cached {
			t.Fatalf("check %d under quota served from cache", i)
		}
	}
	if n := m.CheckCalls(); n != 4 {
		t.Fatalf("mixer saw %d checks, want 4", n)
	}
}

func TestCheckRouteDirective(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		r := fakemixer.Allow(time.Minute, 10)
		r.Precondition.RouteDirective = &mixerv1.RouteDirective{
			RequestHeaderOperations:  []*mixerv1.HeaderOperation{{Name: "x-a", Value: "1"}, {Name: "x-b", Operation: mixerv1.HeaderOperation_REMOVE}},
			ResponseHeaderOperations: []*mixerv1.HeaderOperation{{Name: "x-c", Value: "2", Operation: mixerv1.HeaderOperation_APPEND}},
			DirectResponseCode:       418,
			DirectResponseBody:       "teapot",
		}
		return r
	})
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr()})
	for i := 0; i < 2; i++ {
		d := check(t, c, pathBag("/"))
		if len(d.RequestHeaderOps) != 2 || d.RequestHeaderOps[0] != (mixerclient.HeaderOp{Name: "x-a", Value: "1", Op: mixerclient.HeaderReplace}) ||
			d.RequestHeaderOps[1].Op != mixerclient.HeaderRemove ||
			len(d.ResponseHeaderOps) != 1 || d.ResponseHeaderOps[0].Op != mixerclient.HeaderAppend ||
			d.DirectResponseCode != 418 || d.DirectResponseBody != "teapot" {
			t.Fatalf("decision %d = %+v", i, d)
		}
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCheckMixerDown(t *testing.T) {
	for _, open := range []bool{false, true} {
		name := map[bool]string{false: "closed", true: "open"}[open]
		t.Run(name, func(t *testing.T) {
			const timeout = 300 * time.Millisecond
			c, reg := newClient(t, mixerclient.Options{Addr: freeAddr(t), FailOpen: open, CheckTimeout: timeout})
			for i := 0; i < 3; i++ {
				start := time.Now()
				d, err := c.Check(context.Background(), pathBag("/"))
				took := time.Since(start)
				if err == nil {
					t.Fatal("no error from a Check the mixer never saw")
				}
				if took > timeout+200*time.Millisecond {
					t.Fatalf("Check took %v, timeout %v", took, timeout)
				}
				if open && d.Code != codes.OK {
					t.Fatalf("fail open: %+v", d)
				}
				if !open && (d.Code != codes.Unavailable || d.Message != "mixer unavailable") {
					t.Fatalf("fail closed: %+v", d)
				}
			}
			if n := metricValue(t, reg, "sidemix_proxy_check_failures_total", map[string]string{"policy": name}); n != 3 {
				t.Errorf("check failures{policy=%s} = %v, want 3", name, n)
			}
		})
	}
}

// A mixer that answers too late: the Check returns within CheckTimeout.
func TestCheckSlowMixer(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetDelay(5 * time.Second)
	const timeout = 200 * time.Millisecond
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), CheckTimeout: timeout})
	start := time.Now()
	d, err := c.Check(context.Background(), pathBag("/"))
	if took := time.Since(start); took > timeout+200*time.Millisecond {
		t.Fatalf("Check took %v, timeout %v", took, timeout)
	}
	if err == nil || d.Code != codes.Unavailable {
		t.Fatalf("got %+v, %v; want Unavailable and an error", d, err)
	}
}

func TestCheckCacheBounded(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Minute, 1000, fakemixer.Ref(attribute.RequestPath))
	})
	c, reg := newClient(t, mixerclient.Options{Addr: m.Addr(), CacheSize: 2})
	check(t, c, pathBag("/1"))
	check(t, c, pathBag("/2"))
	check(t, c, pathBag("/1")) // hit: /1 most recent
	check(t, c, pathBag("/3")) // evicts /2
	if n := metricValue(t, reg, "sidemix_proxy_check_cache_entries", nil); n != 2 {
		t.Fatalf("cache entries = %v, want 2", n)
	}
	if d := check(t, c, pathBag("/1")); !d.Cached {
		t.Error("/1 evicted, want /2 evicted")
	}
	if d := check(t, c, pathBag("/2")); d.Cached {
		t.Error("/2 still cached")
	}
}

func TestCheckConcurrent(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Minute, 50, fakemixer.Ref(attribute.RequestPath))
	})
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), CacheSize: 8})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				bag := pathBag("/" + string(rune('a'+(i+g)%12)))
				if d, err := c.Check(context.Background(), bag); err != nil || !d.Allowed() {
					t.Errorf("Check: %+v, %v", d, err)
					return
				}
				c.Report(bag)
			}
		}()
	}
	wg.Wait()
}
