package mixerclient_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
	"github.com/sidemix/sidemix/proxy/mixerclient"
)

// Two mixers, one dead: every Check and Report still succeeds, and the
// dead one is ejected.
func TestSeveralMixersOneDead(t *testing.T) {
	live := fakemixer.Start(t, "127.0.0.1:0")
	dead := freeAddr(t)
	c, reg := newClient(t, mixerclient.Options{Addr: dead + "," + live.Addr(), CacheSize: -1, EjectTime: time.Minute,
		ReportInterval: 10 * time.Millisecond, ReportBatchSize: 2})
	for i := 0; i < 20; i++ {
		d, err := c.Check(context.Background(), pathBag("/"))
		if err != nil || !d.Allowed() {
			t.Fatalf("check %d: %+v, %v", i, d, err)
		}
		c.Report(reportBag(i))
	}
	if n := live.CheckCalls(); n != 20 {
		t.Errorf("live mixer saw %d checks, want 20", n)
	}
	live.WaitReported(t, 20, 5*time.Second)
	if n := metricValue(t, reg, "sidemix_proxy_mixer_ejections_total", map[string]string{"mixer": dead}); n != 1 {
		t.Errorf("dead mixer ejected %v times, want 1", n)
	}
	if n := metricValue(t, reg, "sidemix_proxy_mixer_up", map[string]string{"mixer": dead}); n != 0 {
		t.Errorf("dead mixer up = %v", n)
	}
	if n := metricValue(t, reg, "sidemix_proxy_mixer_up", map[string]string{"mixer": live.Addr()}); n != 1 {
		t.Errorf("live mixer up = %v", n)
	}
	if n := metricValue(t, reg, "sidemix_proxy_check_failures_total", nil); n != 0 {
		t.Errorf("check failures = %v, want 0", n)
	}
}

// A mixer that answers but fails N times in a row is ejected after N; the
// Checks it failed were retried on the other one.
func TestMixerEjectedAfterFailuresInARow(t *testing.T) {
	a := fakemixer.Start(t, "127.0.0.1:0")
	b := fakemixer.Start(t, "127.0.0.1:0")
	a.FailNext(1000, codes.Unavailable)
	c, reg := newClient(t, mixerclient.Options{Addr: a.Addr() + "," + b.Addr(), CacheSize: -1, EjectAfter: 3, EjectTime: time.Minute})
	for i := 0; i < 20; i++ {
		if d := check(t, c, pathBag("/")); !d.Allowed() {
			t.Fatalf("check %d: %+v", i, d)
		}
	}
	if n := a.CheckCalls(); n != 3 {
		t.Errorf("failing mixer saw %d checks, want 3 (then ejected)", n)
	}
	if n := metricValue(t, reg, "sidemix_proxy_mixer_ejections_total", map[string]string{"mixer": a.Addr()}); n != 1 {
		t.Errorf("ejections = %v, want 1", n)
	}
	if n := metricValue(t, reg, "sidemix_proxy_mixer_retries_total", map[string]string{"method": "check"}); n != 3 {
		t.Errorf("check retries = %v, want 3", n)
	}
}

// After its ejection a mixer gets calls again; one that works is back in
// the rotation.
func TestMixerBackAfterEjection(t *testing.T) {
	a := fakemixer.Start(t, "127.0.0.1:0")
	b := fakemixer.Start(t, "127.0.0.1:0")
	a.FailNext(1, codes.Unavailable)
	c, _ := newClient(t, mixerclient.Options{Addr: a.Addr() + "," + b.Addr(), CacheSize: -1, EjectAfter: 1, EjectTime: 50 * time.Millisecond})
	for a.CheckCalls() == 0 {
		check(t, c, pathBag("/"))
	}
	// Ejected for 50ms; wait it out, then a gets its share again.
	time.Sleep(100 * time.Millisecond)
	before := a.CheckCalls()
	for i := 0; i < 10; i++ {
		if d := check(t, c, pathBag("/")); !d.Allowed() {
			t.Fatalf("%+v", d)
		}
	}
	if a.CheckCalls()-before < 4 {
		t.Errorf("mixer back from ejection got %d of 10 checks", a.CheckCalls()-before)
	}
}

// A Check that fails with UNAVAILABLE is retried on the other mixer with
// the same deduplication id, so a quota the mixers share charges once.
func TestRetriedCheckKeepsDedupID(t *testing.T) {
	q := &fakemixer.Quota{Name: "requestcount", Charge: 1, Limit: 100, Window: time.Hour}
	a := fakemixer.Start(t, "127.0.0.1:0")
	b := fakemixer.Start(t, "127.0.0.1:0")
	a.SetCheckRequest(q.Check)
	b.SetCheckRequest(q.Check)
	a.FailNext(1, codes.Unavailable)
	c, reg := newClient(t, mixerclient.Options{Addr: a.Addr() + "," + b.Addr(), CacheSize: -1})
	n := 0
	for a.CheckCalls() == 0 {
		if d := check(t, c, pathBag("/")); !d.Allowed() {
			t.Fatalf("%+v", d)
		}
		n++
	}
	failed := a.DedupIDs()[0]
	found := false
	for _, id := range b.DedupIDs() {
		found = found || id == failed
	}
	if !found {
		t.Fatalf("the retry of %q did not reach the other mixer with the same id (it saw %v)", failed, b.DedupIDs())
	}
	if got := q.Allocations(); got != n {
		t.Errorf("%d allocations for %d checks", got, n)
	}
	if r := metricValue(t, reg, "sidemix_proxy_mixer_retries_total", map[string]string{"method": "check"}); r != 1 {
		t.Errorf("retries = %v, want 1", r)
	}
}

// A mixer too slow for the first attempt's half of the timeout: the retry
// goes to the other with the same id, within the check timeout.
func TestRetryAfterDeadline(t *testing.T) {
	a := fakemixer.Start(t, "127.0.0.1:0")
	b := fakemixer.Start(t, "127.0.0.1:0")
	b.SetDelay(10 * time.Second)
	a.SetDelay(10 * time.Second)
	c, _ := newClient(t, mixerclient.Options{Addr: a.Addr() + "," + b.Addr(), CacheSize: -1, CheckTimeout: 400 * time.Millisecond})
	// Both slow: the Check fails within its timeout after two attempts
	// that carried one id.
	d, err := c.Check(context.Background(), pathBag("/"))
	if err == nil || d.Code != codes.Unavailable {
		t.Fatalf("%+v, %v", d, err)
	}
	ia, ib := a.DedupIDs(), b.DedupIDs()
	if len(ia) != 1 || len(ib) != 1 || ia[0] != ib[0] {
		t.Fatalf("ids %v and %v, want one each, the same", ia, ib)
	}
	// Now one answers in time: the Check succeeds whichever goes first.
	b.SetDelay(0)
	if d, err := c.Check(context.Background(), pathBag("/")); err != nil || !d.Allowed() {
		t.Fatalf("%+v, %v", d, err)
	}
}

// Per-call fail policy.
func TestCheckWithPolicy(t *testing.T) {
	c, _ := newClient(t, mixerclient.Options{Addr: freeAddr(t), CheckTimeout: 200 * time.Millisecond})
	bag := attribute.NewBuilder(1).SetString(attribute.RequestPath, "/").Build()
	for _, tc := range []struct {
		p    mixerclient.FailPolicy
		want codes.Code
	}{
		{mixerclient.FailPolicyDefault, codes.Unavailable},
		{mixerclient.FailPolicyOpen, codes.OK},
		{mixerclient.FailPolicyClosed, codes.Unavailable},
	} {
		d, err := c.CheckWithPolicy(context.Background(), bag, tc.p)
		if err == nil || d.Code != tc.want {
			t.Errorf("policy %d: %+v, %v; want %v", tc.p, d, err, tc.want)
		}
	}
}
