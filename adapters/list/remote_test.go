package list

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/template"
)

// provider is a list server whose answer the test changes.
type provider struct {
	mu          sync.Mutex
	status      int
	contentType string
	body        string
	etag        string
	requests    int
	conditional int // requests that carried If-None-Match
}

func (p *provider) set(status int, contentType, body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.contentType, p.body = status, contentType, body
}

func (p *provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		p.conditional++
		if p.etag != "" && inm == p.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if p.contentType != "" {
		w.Header().Set("Content-Type", p.contentType)
	}
	if p.etag != "" {
		w.Header().Set("ETag", p.etag)
	}
	w.WriteHeader(p.status)
	fmt.Fprint(w, p.body)
}

// clock is a settable time for ttl expiry.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// syncBuffer is a log destination the refresher and the test may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	t     *testing.T
	p     *provider
	srv   *httptest.Server
	clock *clock
	reg   *prometheus.Registry
	logs  *syncBuffer
	h     *handler
}

// newFixture starts a provider answering status/contentType/body and a
// handler on it; edit tweaks the params first.
func newFixture(t *testing.T, status int, contentType, body string, edit func(*Config)) *fixture {
	t.Helper()
	p := &provider{status: status, contentType: contentType, body: body}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	f := &fixture{t: t, p: p, srv: srv, clock: newClock(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	cfg := NewConfig()
	cfg.ProviderURL = srv.URL + "/list"
	cfg.RefreshInterval = time.Minute // of real time: the test fetches with fetchNow
	cfg.TTL = 5 * time.Minute
	if edit != nil {
		edit(cfg)
	}
	set := adapters.Settings{
		Name:       "remote",
		Logger:     slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: f.reg,
		Now:        f.clock.now,
	}
	h, err := newHandler(context.Background(), set, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	f.h = h
	return f
}

// check returns "allowed", "denied" or the error of looking v up.
func (f *fixture) check(v string) string {
	f.t.Helper()
	res, err := f.h.Check(context.Background(), &template.ListEntry{Value: v})
	switch {
	case err != nil:
		return err.Error()
	case res.ValidDuration != 5*time.Second || res.ValidUseCount != 1000:
		f.t.Errorf("Check(%q) caching = %v/%d, want 5s/1000", v, res.ValidDuration, res.ValidUseCount)
	}
	if res.OK() {
		return "allowed"
	}
	if res.Code != codes.PermissionDenied {
		f.t.Errorf("Check(%q) code = %v", v, res.Code)
	}
	return "denied"
}

func (f *fixture) expect(want map[string]string) {
	f.t.Helper()
	for v, w := range want {
		if got := f.check(v); got != w {
			f.t.Errorf("Check(%q) = %s, want %s", v, got, w)
		}
	}
}

func (f *fixture) fetchErrors() float64 {
	return metrictest.Value(f.t, f.reg, "sidemix_list_fetch_errors_total", map[string]string{"handler": "remote"})
}

func TestRemoteRefreshPicksUpChanges(t *testing.T) {
	f := newFixture(t, 200, "text/plain", "# banned\nalice\n\n  bob  \r\n", func(c *Config) {
		c.Overrides = []string{"carol"}
	})
	f.expect(map[string]string{"alice": "allowed", "bob": "allowed", "carol": "allowed", "# banned": "denied", "dave": "denied"})
	if n := metrictest.Value(t, f.reg, "sidemix_list_entries", map[string]string{"handler": "remote"}); n != 3 {
		t.Errorf("sidemix_list_entries = %v, want 3", n)
	}
	if ts := metrictest.Value(t, f.reg, "sidemix_list_last_fetch_timestamp_seconds", map[string]string{"handler": "remote"}); ts != float64(f.clock.now().Unix()) {
		t.Errorf("sidemix_list_last_fetch_timestamp_seconds = %v, want %v", ts, f.clock.now().Unix())
	}

	f.p.set(200, "text/plain; charset=utf-8", "dave\n")
	f.h.remote.fetchNow()
	f.expect(map[string]string{"alice": "denied", "dave": "allowed", "carol": "allowed"})

	// A JSON array, by content type.
	f.p.set(200, "application/json", `["erin", "frank"]`)
	f.h.remote.fetchNow()
	f.expect(map[string]string{"erin": "allowed", "frank": "allowed", "dave": "denied"})

	// An empty list leaves the overrides.
	f.p.set(200, "text/plain", "")
	f.h.remote.fetchNow()
	f.expect(map[string]string{"erin": "denied", "carol": "allowed"})
	if n := f.fetchErrors(); n != 0 {
		t.Errorf("fetch errors = %v, want 0", n)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `msg="list fetched" url=`+f.srv.URL+"/list entries=2") {
		t.Errorf("logs lack the first fetch:\n%s", logs)
	}
}

func TestRemoteProviderDownKeepsListForTTL(t *testing.T) {
	f := newFixture(t, 200, "", "alice\n", nil)
	f.expect(map[string]string{"alice": "allowed", "bob": "denied"})

	// The provider fails: the list stays for the ttl after the last fetch.
	f.p.set(503, "", "down for maintenance")
	for range 3 {
		f.clock.advance(time.Minute)
		f.h.remote.fetchNow()
		f.expect(map[string]string{"alice": "allowed", "bob": "denied"})
	}
	if n := f.fetchErrors(); n != 3 {
		t.Errorf("fetch errors = %v, want 3", n)
	}
	logs := f.logs.String()
	if n := strings.Count(logs, "list fetch failed"); n != 1 {
		t.Errorf("the same failure was logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "503 Service Unavailable") {
		t.Errorf("logs lack the status:\n%s", logs)
	}

	// Past the ttl, checks fail and the rule's fail policy decides.
	f.clock.advance(2*time.Minute + time.Second)
	want := "list unavailable: its provider has not answered for 5m1s (ttl 5m0s)"
	f.expect(map[string]string{"alice": want, "bob": want})
	f.h.remote.fetchNow()
	if !strings.Contains(f.logs.String(), "list expired") {
		t.Errorf("logs lack the expiry:\n%s", f.logs.String())
	}
	if n := metrictest.Value(t, f.reg, "sidemix_list_checks_total", map[string]string{"handler": "remote", "result": "unavailable"}); n != 2 {
		t.Errorf("unavailable checks = %v, want 2", n)
	}

	// The provider is back.
	f.p.set(200, "", "bob\n")
	f.h.remote.fetchNow()
	f.expect(map[string]string{"alice": "denied", "bob": "allowed"})
	if !strings.Contains(f.logs.String(), `msg="list provider answers again"`) {
		t.Errorf("logs lack the recovery:\n%s", f.logs.String())
	}

	// Unreachable is a failure like any other.
	f.srv.Close()
	f.h.remote.fetchNow()
	f.expect(map[string]string{"bob": "allowed"})
	if n := f.fetchErrors(); n != 5 {
		t.Errorf("fetch errors = %v, want 5", n)
	}
}

func TestRemoteFirstFetchFails(t *testing.T) {
	f := newFixture(t, 500, "", "", func(c *Config) { c.Overrides = []string{"alice"} })
	// Create succeeded; with no list yet, checks fail even for overrides.
	f.expect(map[string]string{"alice": "list unavailable: its provider has not answered yet"})
	if n := f.fetchErrors(); n != 1 {
		t.Errorf("fetch errors = %v, want 1", n)
	}
	f.p.set(200, "", "bob")
	f.h.remote.fetchNow()
	f.expect(map[string]string{"alice": "allowed", "bob": "allowed", "carol": "denied"})
}

func TestRemoteBadBody(t *testing.T) {
	f := newFixture(t, 200, "", `10.0.0.0/8`, func(c *Config) { c.EntryType = IPAddresses })
	f.expect(map[string]string{"10.1.1.1": "allowed"})
	for _, tt := range []struct{ contentType, body, log string }{
		{"application/json", `{"not": "a list"}`, "body is not a JSON array of strings"},
		{"application/json", `["10.0.0.1", 7]`, "body is not a JSON array of strings"},
		{"text/plain", "192.168.0.0/16\n# ok\nexample.com\n300.0.0.1\n", `line 3: \"example.com\" is neither an IP address nor a CIDR prefix (and 1 more bad entries)`},
		{"application/problem+json", `["::1", "nope"]`, `entry [1]: \"nope\" is neither an IP address nor a CIDR prefix`},
	} {
		f.p.set(200, tt.contentType, tt.body)
		f.h.remote.fetchNow()
		f.expect(map[string]string{"10.1.1.1": "allowed", "192.168.1.1": "denied"})
		if !strings.Contains(f.logs.String(), tt.log) {
			t.Errorf("%s: logs lack %q:\n%s", tt.body, tt.log, f.logs.String())
		}
	}
	if n := f.fetchErrors(); n != 4 {
		t.Errorf("fetch errors = %v, want 4", n)
	}
}

func TestRemoteBodyTooLarge(t *testing.T) {
	f := newFixture(t, 200, "", strings.Repeat("x\n", maxBody/2+1), nil)
	f.expect(map[string]string{"x": "list unavailable: its provider has not answered yet"})
	if !strings.Contains(f.logs.String(), "body exceeds 16 MiB") {
		t.Errorf("logs:\n%s", f.logs.String())
	}
}

func TestRemoteNotModifiedRenewsTheList(t *testing.T) {
	f := newFixture(t, 200, "", "alice", nil)
	f.p.mu.Lock()
	f.p.etag = `"v1"`
	f.p.mu.Unlock()
	f.h.remote.fetchNow() // now with an ETag
	for range 3 {
		f.clock.advance(4 * time.Minute)
		f.h.remote.fetchNow() // 304: the list is current, so its ttl starts again
		f.expect(map[string]string{"alice": "allowed", "bob": "denied"})
	}
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if f.p.conditional != 3 {
		t.Errorf("conditional requests = %d, want 3", f.p.conditional)
	}
}

func TestRemoteHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "alice")
	}))
	defer srv.Close()
	cfg := NewConfig()
	cfg.ProviderURL = srv.URL
	h, err := newHandler(context.Background(), adapters.Settings{Name: "tls"}, cfg, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	res, err := h.Check(context.Background(), &template.ListEntry{Value: "alice"})
	if err != nil || !res.OK() {
		t.Errorf("Check = %+v, %v", res, err)
	}
}

func TestRemoteFirstFetchIsBounded(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := NewConfig()
	cfg.ProviderURL = srv.URL
	cfg.FetchTimeout = 50 * time.Millisecond
	reg := prometheus.NewRegistry()
	h, err := newHandler(context.Background(), adapters.Settings{Name: "slow", Registerer: reg}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	if _, err := h.Check(context.Background(), &template.ListEntry{Value: "x"}); err == nil {
		t.Error("Check succeeded without a list")
	}
	if n := metrictest.Value(t, reg, "sidemix_list_fetch_errors_total", map[string]string{"handler": "slow"}); n != 1 {
		t.Errorf("fetch errors = %v, want 1", n)
	}
	// Close twice is harmless.
	if err := h.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestRedacted(t *testing.T) {
	cfg := NewConfig()
	cfg.ProviderURL = "https://user:pw@lists.example.com/l.txt?list=banned&access_token=abc&apiKey=k"
	got := cfg.Redacted().(*Config).ProviderURL
	want := "https://user:xxxxx@lists.example.com/l.txt?access_token=xxxxx&apiKey=xxxxx&list=banned"
	if got != want {
		t.Errorf("Redacted().ProviderURL = %s, want %s", got, want)
	}
	if cfg.ProviderURL == got {
		t.Error("Redacted changed the params themselves")
	}
}
