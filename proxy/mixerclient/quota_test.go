package mixerclient_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/fakeclock"

	"google.golang.org/grpc/codes"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
	"github.com/sidemix/sidemix/proxy/mixerclient"
)

func svcBag(svc, path string) *attribute.Bag {
	return attribute.NewBuilder(3).
		SetString(attribute.DestinationServiceName, svc).
		SetString(attribute.RequestPath, path).
		SetString(attribute.RequestID, path+"-id").
		Build()
}

func newQuota(clock *fakeclock.Clock, limit int64, window time.Duration) *fakemixer.Quota {
	return &fakemixer.Quota{
		Name: "requestcount", Charge: 1, Limit: limit, Window: window,
		Dims: []string{attribute.DestinationServiceName},
		Refs: []attribute.Reference{fakemixer.Ref(attribute.DestinationServiceName)},
		Now:  clock.Now,
	}
}

// With prefetch, most requests are answered from the local pool, and the
// proxy never admits more than the mixer granted.
func TestQuotaPrefetchAnswersLocally(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	// Large enough that PrefetchMax, not the limit, bounds each prefetch.
	const limit = 8 * mixerclient.PrefetchLimitShare
	q := newQuota(clock, limit, time.Hour)
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	c, reg := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now, PrefetchMax: 8, PrefetchMaxAge: time.Hour})

	admitted, denied := 0, 0
	for i := 0; i < 5*limit && admitted < limit; i++ {
		d := check(t, c, svcBag("web", "/"))
		switch d.Code {
		case codes.OK:
			admitted++
		case codes.ResourceExhausted:
			denied++
			mixerclient.WaitPrefetches(c) // let a prefetch under way land in the pool
		default:
			t.Fatalf("request %d: %+v", i, d)
		}
		if int64(admitted) > q.Granted() {
			t.Fatalf("admitted %d, granted only %d", admitted, q.Granted())
		}
	}
	if admitted != limit {
		t.Fatalf("admitted %d, want the limit %d", admitted, limit)
	}
	// Exhausted now. The first refusal may still ask the mixer (unless a
	// refill learnt of the exhaustion already); after it, refusals are
	// local and the mixer is not asked.
	mixerclient.WaitPrefetches(c)
	if d := check(t, c, svcBag("web", "/")); d.Code != codes.ResourceExhausted {
		t.Fatalf("after the limit: %+v", d)
	}
	mixerclient.WaitPrefetches(c)
	calls := m.CheckCalls()
	for i := 0; i < 5; i++ {
		if d := check(t, c, svcBag("web", "/")); d.Code != codes.ResourceExhausted || d.RetryAfter <= 0 {
			t.Fatalf("after the limit: %+v", d)
		}
	}
	if n := m.CheckCalls(); n != calls {
		t.Errorf("mixer asked %d more times while the quota is known exhausted", n-calls)
	}
	if q.Granted() != limit {
		t.Errorf("granted %d, want %d", q.Granted(), limit)
	}
	hits := metricValue(t, reg, "sidemix_proxy_quota_prefetch_total", map[string]string{"result": "hit"})
	if hits < limit/2 {
		t.Errorf("prefetch hits = %v of %d admitted, want most", hits, limit)
	}
	if calls >= limit*3/4 {
		t.Errorf("mixer saw %d checks for %d admitted requests, want far fewer", calls, limit)
	}
	// The first request was charged by the mixer unasked; every other
	// admitted request took a token the mixer granted to the pool.
	if used := metricValue(t, reg, "sidemix_proxy_quota_tokens_total", map[string]string{"result": "used"}); used != limit-1 {
		t.Errorf("tokens used %v, want %d", used, limit-1)
	}
	if granted := metricValue(t, reg, "sidemix_proxy_quota_tokens_total", map[string]string{"result": "granted"}); granted != limit-1 {
		t.Errorf("tokens granted %v, want %d", granted, limit-1)
	}
	// Every Check after the first named the quota, at most 8 at a time.
	for i, r := range m.Requests()[1:] {
		qp := r.GetQuotas()["requestcount"]
		if qp == nil || qp.GetAmount() < 1 || qp.GetAmount() > 8 {
			t.Fatalf("check %d asked %v", i+1, r.GetQuotas())
		}
	}
}

// Concurrent requests never admit more than the mixer granted.
func TestQuotaPrefetchNeverOveradmits(t *testing.T) {
	q := &fakemixer.Quota{Name: "requestcount", Charge: 1, Limit: 50, Window: time.Hour,
		Dims: []string{attribute.DestinationServiceName}}
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), PrefetchMax: 10, PrefetchMaxAge: time.Hour})
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				d, err := c.Check(context.Background(), svcBag("web", "/"))
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed() {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	mixerclient.WaitPrefetches(c)
	if a := admitted.Load(); a > q.Granted() || a > 50 {
		t.Fatalf("admitted %d, granted %d, limit 50", a, q.Granted())
	}
	if admitted.Load() < 40 {
		t.Errorf("admitted only %d of a limit of 50 with 320 requests", admitted.Load())
	}
}

// Pools are per value of the quota's dimensions: one service's tokens
// never pay for another's requests.
func TestQuotaPoolPerDimension(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	q := newQuota(clock, 3, time.Hour)
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now, PrefetchMax: 5, PrefetchMaxAge: time.Hour})
	count := func(svc string) int {
		n := 0
		for i := 0; i < 10; i++ {
			if check(t, c, svcBag(svc, "/")).Allowed() {
				n++
			}
			mixerclient.WaitPrefetches(c)
		}
		return n
	}
	if n := count("web"); n != 3 {
		t.Errorf("web admitted %d, want 3", n)
	}
	if n := count("api"); n != 3 {
		t.Errorf("api admitted %d, want 3", n)
	}
}

// Pooled tokens live min(grant validity, PrefetchMaxAge): unused ones
// expire and are counted, and the next request asks the mixer.
func TestQuotaTokensExpire(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	q := newQuota(clock, 1000, time.Hour)
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	c, reg := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now, PrefetchMax: 10, PrefetchMaxAge: time.Second})
	for i := 0; i < 6; i++ {
		if d := check(t, c, svcBag("web", "/")); !d.Allowed() {
			t.Fatalf("request %d: %+v", i, d)
		}
		mixerclient.WaitPrefetches(c)
	}
	granted := q.Granted()
	pooled := granted - 6
	if pooled <= 0 {
		t.Fatalf("nothing pooled: granted %d for 6 requests", granted)
	}
	calls := m.CheckCalls()
	clock.Advance(1100 * time.Millisecond)
	if d := check(t, c, svcBag("web", "/")); !d.Allowed() || d.Cached {
		t.Fatalf("after expiry: %+v, want allowed by the mixer", d)
	}
	if m.CheckCalls() != calls+1 {
		t.Errorf("mixer saw %d checks after expiry, want 1", m.CheckCalls()-calls)
	}
	if got := metricValue(t, reg, "sidemix_proxy_quota_tokens_total", map[string]string{"result": "expired"}); got != float64(pooled) {
		t.Errorf("expired tokens = %v, want %d", got, pooled)
	}
}

// Without prefetch every request that draws on a quota asks the mixer for
// exactly its charge.
func TestQuotaNoPrefetch(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	q := newQuota(clock, 100, time.Hour)
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	c, reg := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now})
	for i := 0; i < 5; i++ {
		if d := check(t, c, svcBag("web", "/")); !d.Allowed() {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	reqs := m.Requests()
	if len(reqs) != 5 {
		t.Fatalf("mixer saw %d checks, want 5", len(reqs))
	}
	if len(reqs[0].GetQuotas()) != 0 {
		t.Errorf("first check named quotas %v: it cannot know them yet", reqs[0].GetQuotas())
	}
	for i, r := range reqs[1:] {
		qp := r.GetQuotas()["requestcount"]
		if len(r.GetQuotas()) != 1 || qp.GetAmount() != 1 || qp.GetBestEffort() {
			t.Errorf("check %d named %v, want requestcount: 1, not best effort", i+1, r.GetQuotas())
		}
	}
	if q.Granted() != 5 {
		t.Errorf("granted %d, want 5", q.Granted())
	}
	if n := metricValue(t, reg, "sidemix_proxy_checks_sent_total", map[string]string{"purpose": "quota"}); n != 4 {
		t.Errorf("quota checks sent = %v, want 4", n)
	}
	if n := metricValue(t, reg, "sidemix_proxy_quota_prefetch_total", nil); n != 0 {
		t.Errorf("prefetch counted %v with prefetch off", n)
	}
}

// An exhausted answer is remembered until its Retry-After (never past the
// window's reset): requests meanwhile are refused without asking.
func TestQuotaExhaustedRemembered(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 7, 0, time.UTC))
	q := newQuota(clock, 2, 10*time.Second)
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	c, reg := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now})
	for i := 0; i < 2; i++ {
		d := check(t, c, svcBag("web", "/"))
		if !d.Allowed() {
			t.Fatalf("request %d: %+v", i, d)
		}
		if want := (mixerclient.RateLimit{Limit: 2, Remaining: int64(1 - i), Reset: 3 * time.Second}); d.RateLimit != want {
			t.Errorf("request %d rate limit %+v, want %+v", i, d.RateLimit, want)
		}
	}
	d := check(t, c, svcBag("web", "/"))
	if d.Code != codes.ResourceExhausted || d.RetryAfter != 3*time.Second || d.RateLimit.Limit != 2 || d.RateLimit.Remaining != 0 {
		t.Fatalf("third = %+v, want exhausted, retry after 3s, limit 2, none left", d)
	}
	calls := m.CheckCalls()
	clock.Advance(time.Second)
	d = check(t, c, svcBag("web", "/"))
	if d.Code != codes.ResourceExhausted || d.RetryAfter != 2*time.Second {
		t.Fatalf("fourth = %+v, want refused locally, retry after 2s", d)
	}
	if m.CheckCalls() != calls {
		t.Fatal("mixer asked while the quota is known exhausted")
	}
	if n := metricValue(t, reg, "sidemix_proxy_check_denials_total", map[string]string{"code": "ResourceExhausted", "source": "local"}); n != 1 {
		t.Errorf("local denials = %v, want 1", n)
	}
	clock.Advance(2 * time.Second) // the next window
	if d := check(t, c, svcBag("web", "/")); !d.Allowed() {
		t.Fatalf("next window: %+v", d)
	}
}

// A refusal whose Retry-After outlasts the window's reset is remembered
// only until the reset.
func TestQuotaExhaustedNotPastReset(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	m := fakemixer.Start(t, "127.0.0.1:0")
	var mu sync.Mutex
	granted := int64(1)
	m.SetCheckRequest(func(b *attribute.Bag, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		r := fakemixer.Allow(time.Hour, 1000)
		if len(req.GetQuotas()) == 0 {
			fakemixer.WithCharges(r, "q", 1)
		}
		return fakemixer.WithQuotaResult(r, "q", fakemixer.QuotaResult{Granted: granted, Valid: time.Minute, Limit: 5, Reset: 2 * time.Second}), nil
	})
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now})
	check(t, c, svcBag("web", "/"))
	mu.Lock()
	granted = 0
	mu.Unlock()
	if d := check(t, c, svcBag("web", "/")); d.Code != codes.ResourceExhausted {
		t.Fatalf("%+v", d)
	}
	check(t, c, svcBag("web", "/"))
	if n := m.CheckCalls(); n != 2 {
		t.Fatalf("mixer saw %d checks, want 2", n)
	}
	clock.Advance(2 * time.Second)
	mu.Lock()
	granted = 1
	mu.Unlock()
	if d := check(t, c, svcBag("web", "/")); !d.Allowed() {
		t.Fatalf("after the reset: %+v", d)
	}
}

// A cached denial never charges quota; a denial by the mixer on the quota
// path drops the cached answer.
func TestQuotaCachedAnswerChanges(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	var mu sync.Mutex
	deny := false
	m.SetCheckRequest(func(b *attribute.Bag, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		if deny {
			return fakemixer.Answer(codes.PermissionDenied, "no longer", time.Hour, 1000), nil
		}
		r := fakemixer.Allow(time.Hour, 1000)
		if len(req.GetQuotas()) == 0 {
			fakemixer.WithCharges(r, "q", 1)
		}
		return fakemixer.WithQuota(r, "q", 1, time.Minute), nil
	})
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr()})
	check(t, c, svcBag("web", "/"))
	mu.Lock()
	deny = true
	mu.Unlock()
	if d := check(t, c, svcBag("web", "/")); d.Code != codes.PermissionDenied || d.Cached {
		t.Fatalf("%+v, want the mixer's new denial", d)
	}
	// Learned anew: the denial, quota-free.
	if d := check(t, c, svcBag("web", "/")); d.Code != codes.PermissionDenied {
		t.Fatalf("%+v", d)
	}
}

// Prefetch never pools more than the limit's PrefetchLimitShare: a limit
// under it is not prefetched at all (every Check asks exactly the charge),
// a larger one at most limit/PrefetchLimitShare ahead.
func TestQuotaPrefetchBoundedByLimit(t *testing.T) {
	for _, tc := range []struct {
		limit     int64
		wantAhead int64 // most asked beyond the charge
	}{
		{limit: mixerclient.PrefetchLimitShare - 1, wantAhead: 0},
		{limit: 10 * mixerclient.PrefetchLimitShare, wantAhead: 10},
	} {
		clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
		q := newQuota(clock, tc.limit, time.Hour)
		m := fakemixer.Start(t, "127.0.0.1:0")
		m.SetCheckRequest(q.Check)
		c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), Now: clock.Now, PrefetchMax: 1000, PrefetchMaxAge: time.Hour})
		admitted := int64(0)
		for i := int64(0); i < tc.limit+5; i++ {
			if check(t, c, svcBag("web", "/")).Allowed() {
				admitted++
			}
			mixerclient.WaitPrefetches(c)
			clock.Advance(10 * time.Millisecond) // a steady rate for the usage window
		}
		if admitted != tc.limit {
			t.Errorf("limit %d: admitted %d", tc.limit, admitted)
		}
		var most int64
		for _, r := range m.Requests() {
			if qp := r.GetQuotas()["requestcount"]; qp != nil {
				most = max(most, qp.GetAmount())
			}
		}
		// A refill asks for the tokens alone; a Check on the request path
		// for the charge (1) plus the tokens ahead.
		if most > tc.wantAhead+1 || (tc.wantAhead == 0 && most != 1) {
			t.Errorf("limit %d: a Check asked %d, want at most %d ahead", tc.limit, most, tc.wantAhead)
		}
		if tc.wantAhead > 0 && most < 2 {
			t.Errorf("limit %d: nothing was prefetched (most asked %d)", tc.limit, most)
		}
	}
}
