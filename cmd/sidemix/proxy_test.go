package main

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/sidemix/sidemix/proxy"
)

func TestParseFailPolicy(t *testing.T) {
	cases := []struct {
		in        string
		open      bool
		overrides map[string]bool
		err       string
	}{
		{in: "closed"},
		{in: "OPEN", open: true},
		{in: "closed,inbound=open,ratings=open", overrides: map[string]bool{"inbound": true, "ratings": true}},
		{in: "ratings=closed, open", open: true, overrides: map[string]bool{"ratings": false}},
		{in: "inbound=open", overrides: map[string]bool{"inbound": true}}, // default stays closed
		{in: "maybe", err: `"maybe" is not open or closed`},
		{in: "open,closed", err: "more than one default"},
		{in: "a=open,a=closed", err: `"a" given twice`},
		{in: "=open", err: "not name=open|closed"},
		{in: "a=half", err: `"half" is not open or closed`},
	}
	for _, c := range cases {
		open, overrides, err := parseFailPolicy(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || open != c.open || !maps.Equal(overrides, c.overrides) {
			t.Errorf("%q: %v %v %v, want %v %v", c.in, open, overrides, err, c.open, c.overrides)
		}
	}
}

func TestProxyFlagsReachConfig(t *testing.T) {
	// A fail policy naming an upstream that is not routed is the config's
	// error, naming the key.
	_, stderr, code := runCmd(t, "proxy", "--service", "web", "--app", "127.0.0.1:1", "--inbound", "127.0.0.1:0",
		"--admin", "", "--mixer", "127.0.0.1:1,127.0.0.1:2", "--check-fail-policy", "closed,ratings=open")
	if code != 1 || !strings.Contains(stderr, "check_fail_open_for.ratings: no such upstream") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runCmd(t, "proxy", "--service", "web", "--app", "127.0.0.1:1", "--inbound", "127.0.0.1:0",
		"--admin", "", "--quota-prefetch-max", "-1")
	if code != 1 || !strings.Contains(stderr, "quota_prefetch_max: negative") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runCmd(t, "proxy", "--service", "web", "--app", "127.0.0.1:1", "--inbound", "127.0.0.1:0",
		"--admin", "", "--trace-sampling", "1.5", "--max-request-header-bytes", "-1")
	if code != 1 || !strings.Contains(stderr, "trace_sampling: 1.5 is not between 0 and 1") ||
		!strings.Contains(stderr, "max_request_header_bytes: negative") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestTCPListenerFlags(t *testing.T) {
	got, err := parseTCPListeners([]string{"127.0.0.1:15010=127.0.0.1:5432"}, []string{"127.0.0.1:15011=db", "127.0.0.1:15012=db.data:5432"})
	if err != nil {
		t.Fatal(err)
	}
	want := []proxy.TCPListener{{Listen: "127.0.0.1:15010", Upstream: "127.0.0.1:5432", Inbound: true},
		{Listen: "127.0.0.1:15011", Upstream: "db"}, {Listen: "127.0.0.1:15012", Upstream: "db.data:5432"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range [][2][]string{{{"127.0.0.1:1"}, nil}, {nil, {"=db"}}, {{"127.0.0.1:1=a:1"}, {"127.0.0.1:1=b:1"}}} {
		if _, err := parseTCPListeners(bad[0], bad[1]); err == nil {
			t.Errorf("parseTCPListeners(%q, %q): no error", bad[0], bad[1])
		}
	}
	// A TCP-only sidecar is valid; an outbound upstream that is neither
	// host:port nor an --upstreams name is the config's error.
	_, stderr, code := runCmd(t, "proxy", "--service", "web", "--inbound", "", "--admin", "",
		"--tcp-outbound", "127.0.0.1:0=db")
	if code != 1 || !strings.Contains(stderr, `tcp[0].upstream: "db" is not host:port`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runCmd(t, "proxy", "--service", "web", "--inbound", "", "--admin", "", "--tcp-inbound", "nope")
	if code != 2 || !strings.Contains(stderr, `--tcp-inbound: "nope" is not listen=upstream`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
