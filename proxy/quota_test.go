package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
)

// 429 answers carry Retry-After and the RateLimit-* headers; allowed ones
// carry the RateLimit-* headers when the mixer told them.
func TestQuotaHeaders(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 7, 0, time.UTC)
	q := &fakemixer.Quota{Name: "requestcount", Charge: 1, Limit: 2, Window: 10 * time.Second,
		Dims: []string{attribute.DestinationServiceName}, Now: func() time.Time { return now }}
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), Admin: "127.0.0.1:0"})
	url := "http://" + p.InboundAddr() + "/"

	for i, want := range []string{"1", "0"} {
		resp, _ := do(t, "GET", url, nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		h := resp.Header
		if h.Get("RateLimit-Limit") != "2" || h.Get("RateLimit-Remaining") != want || h.Get("RateLimit-Reset") != "3" || h.Get("Retry-After") != "" {
			t.Errorf("request %d headers %v, want limit 2, remaining %s, reset 3", i, h, want)
		}
	}
	for i := 0; i < 2; i++ { // from the mixer, then remembered locally
		resp, body := do(t, "GET", url, nil, nil)
		h := resp.Header
		if resp.StatusCode != 429 || body != "quota exhausted\n" {
			t.Fatalf("over the limit: %d %q", resp.StatusCode, body)
		}
		if h.Get("Retry-After") != "3" || h.Get("RateLimit-Limit") != "2" || h.Get("RateLimit-Remaining") != "0" || h.Get("RateLimit-Reset") != "3" {
			t.Errorf("429 %d headers %v, want Retry-After 3, limit 2, remaining 0, reset 3", i, h)
		}
	}
	if n := m.CheckCalls(); n != 3 {
		t.Errorf("mixer saw %d checks, want 3 (the second 429 answered locally)", n)
	}
	if a.hits.Load() != 2 {
		t.Errorf("app saw %d requests, want 2", a.hits.Load())
	}
	metrics := scrape(t, p)
	for _, want := range []string{
		`sidemix_proxy_check_denials_total{code="ResourceExhausted",source="mixer"} 1`,
		`sidemix_proxy_check_denials_total{code="ResourceExhausted",source="local"} 1`,
		`sidemix_proxy_checks_sent_total{purpose="quota"} 2`,
		`sidemix_proxy_checks_sent_total{purpose="precondition"} 1`,
		`sidemix_proxy_requests_total{code="429",direction="inbound"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// With prefetch on, the proxy answers from its pool and still admits no
// more than the limit.
func TestQuotaPrefetchThroughProxy(t *testing.T) {
	q := &fakemixer.Quota{Name: "requestcount", Charge: 1, Limit: 30, Window: time.Hour,
		Dims: []string{attribute.DestinationServiceName}}
	m := fakemixer.Start(t, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: m.Addr(), Admin: "127.0.0.1:0",
		QuotaPrefetchMax: 5, QuotaPrefetchMaxAge: time.Hour})
	ok := 0
	for i := 0; i < 60; i++ {
		resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/", nil, nil)
		if resp.StatusCode == 200 {
			ok++
		}
	}
	if int64(ok) > q.Granted() || ok > 30 {
		t.Fatalf("admitted %d, granted %d, limit 30", ok, q.Granted())
	}
	if int(a.hits.Load()) != ok {
		t.Errorf("app saw %d, proxy answered 200 %d times", a.hits.Load(), ok)
	}
	if !strings.Contains(scrape(t, p), `sidemix_proxy_quota_prefetch_total{result="hit"}`) {
		t.Error("no prefetch hits counted")
	}
}

// The check fail policy is per service: inbound and each upstream may say
// open or closed, the rest follows the default.
func TestFailPolicyPerService(t *testing.T) {
	app := startApp(t, "reviews")
	ratings := startApp(t, "ratings")
	details := startApp(t, "details")
	p := startProxy(t, proxy.Config{
		App: app.hostPort(), Outbound: "127.0.0.1:0",
		Upstreams:        map[string]string{"ratings": ratings.hostPort(), "details": details.hostPort()},
		Mixer:            deadAddr(t),
		CheckTimeout:     300 * time.Millisecond,
		CheckFailOpen:    false,
		CheckFailOpenFor: map[string]bool{"inbound": true, "Details": true},
	})
	if resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/", nil, nil); resp.StatusCode != 200 {
		t.Errorf("inbound (open): %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", "http://"+p.OutboundAddr()+"/", map[string]string{"host": "details"}, nil); resp.StatusCode != 200 {
		t.Errorf("details (open): %d", resp.StatusCode)
	}
	if resp, body := do(t, "GET", "http://"+p.OutboundAddr()+"/", map[string]string{"host": "ratings"}, nil); resp.StatusCode != 503 || body != "mixer unavailable\n" {
		t.Errorf("ratings (default closed): %d %q", resp.StatusCode, body)
	}
	if ratings.hits.Load() != 0 {
		t.Error("ratings reached with its policy closed")
	}

	_, err := proxy.New(proxy.Config{Service: "x", Outbound: "127.0.0.1:0", Mixer: "127.0.0.1:1",
		Upstreams: map[string]string{"ratings": "127.0.0.1:2"}, CheckFailOpenFor: map[string]bool{"inbound": true, "nope": false}})
	if err == nil {
		t.Fatal("no error for unknown fail policy keys")
	}
	for _, want := range []string{"check_fail_open_for.inbound: the inbound side is disabled", "check_fail_open_for.nope: no such upstream"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// Two mixers, one dead: requests still succeed.
func TestSeveralMixers(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	a := startApp(t, "reviews")
	p := startProxy(t, proxy.Config{App: a.hostPort(), Mixer: deadAddr(t) + "," + m.Addr(), Admin: "127.0.0.1:0", CacheSize: -1})
	for i := 0; i < 10; i++ {
		if resp, _ := do(t, "GET", "http://"+p.InboundAddr()+"/", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	m.WaitReported(t, 10, 5*time.Second)
	if !strings.Contains(scrape(t, p), "sidemix_proxy_mixer_ejections_total{mixer=") {
		t.Error("no ejection counted")
	}
	if _, err := proxy.New(proxy.Config{Service: "x", Inbound: "127.0.0.1:0", App: "127.0.0.1:1", Mixer: "127.0.0.1:1,nope"}); err == nil ||
		!strings.Contains(err.Error(), `mixer: "nope" is not host:port`) {
		t.Errorf("bad mixer list: %v", err)
	}
}
