package list_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/list"
	"github.com/sidemix/sidemix/adapters/template"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, list.Factory(), []configtest.Case{
		{File: "default.yaml"},
		{File: "strings.yaml"},
		{File: "regex.yaml"},
		{File: "ips.yaml"},
		{File: "bad-regex.bad.yaml", Want: `overrides[2]: invalid regex "(abc": missing closing )` + "\n" +
			`overrides[3]: invalid regex "*x": missing argument to repetition operator`},
		{File: "bad-ip.bad.yaml", Want: `overrides[1]: "10.0.0.0/33" is neither an IP address nor a CIDR prefix` + "\n" +
			`overrides[2]: "example.com" is neither an IP address nor a CIDR prefix` + "\n" +
			`overrides[3]: "300.1.2.3" is neither an IP address nor a CIDR prefix`},
		{File: "bad-type.bad.yaml", Want: `entryType: unknown entry type "strings" (want STRINGS, CASE_INSENSITIVE_STRINGS, REGEX or IP_ADDRESSES)` + "\n" +
			`cachingInterval: -5s is negative` + "\n" +
			`cachingUseCount: -1 is negative`},
		{File: "remote.yaml"},
		{File: "bad-provider.bad.yaml", Want: `providerUrl: "ftp://user:xxxxx@lists.example.com/list.txt" is not an http or https URL` + "\n" +
			`refreshInterval: 100ms is less than 1s` + "\n" +
			`fetchTimeout: 0s is not positive`},
		{File: "bad-ttl.bad.yaml", Want: `providerUrl: "http:" has no host` + "\n" +
			`ttl: 1m0s is less than refreshInterval (2m0s): the list would expire between fetches`},
		{File: "bad-url.bad.yaml", Want: `providerUrl: missing ']' in host`},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 1: field blackList not found in type list.Config"},
	})
}

func newChecker(t *testing.T, set adapters.Settings, cfg *list.Config) adapters.Checker {
	t.Helper()
	h, err := list.Factory().Create(context.Background(), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h.(adapters.Checker)
}

func TestCheck(t *testing.T) {
	const allow = ""
	tests := []struct {
		name      string
		entryType string
		blacklist bool
		entries   []string
		value     string
		want      string // denial message, or allow
	}{
		{"whitelisted", list.Strings, false, []string{"a", "b"}, "b", allow},
		{"not whitelisted", list.Strings, false, []string{"a", "b"}, "c", `"c" is not whitelisted`},
		{"empty whitelist", list.Strings, false, nil, "a", `"a" is not whitelisted`},
		{"blacklisted", list.Strings, true, []string{"a", "b"}, "a", `"a" is blacklisted`},
		{"not blacklisted", list.Strings, true, []string{"a", "b"}, "c", allow},
		{"case matters", list.Strings, false, []string{"Alice"}, "alice", `"alice" is not whitelisted`},
		{"case ignored", list.CaseInsensitiveStrings, false, []string{"Alice"}, "aLICE", allow},
		{"case ignored blacklist", list.CaseInsensitiveStrings, true, []string{"ADMIN"}, "admin", `"admin" is blacklisted`},
		{"regex whole value", list.Regex, false, []string{`[a-z]+`}, "abc", allow},
		{"regex anchored start", list.Regex, false, []string{`[a-z]+`}, "1abc", `"1abc" is not whitelisted`},
		{"regex anchored end", list.Regex, false, []string{`[a-z]+`}, "abc1", `"abc1" is not whitelisted`},
		{"regex alternation anchored", list.Regex, false, []string{`admin|root`}, "rootkit", `"rootkit" is not whitelisted`},
		{"regex second entry", list.Regex, true, []string{`x`, `.*\.internal`}, "db.internal", `"db.internal" is blacklisted`},
		{"regex empty list", list.Regex, false, nil, "x", `"x" is not whitelisted`},
		{"ip in cidr", list.IPAddresses, false, []string{"10.0.0.0/8"}, "10.1.2.3", allow},
		{"ip outside cidr", list.IPAddresses, false, []string{"10.0.0.0/8"}, "11.1.2.3", `"11.1.2.3" is not whitelisted`},
		{"bare ip", list.IPAddresses, false, []string{"192.168.1.7"}, "192.168.1.7", allow},
		{"bare ip is /32", list.IPAddresses, false, []string{"192.168.1.7"}, "192.168.1.8", `"192.168.1.8" is not whitelisted`},
		{"ipv6", list.IPAddresses, true, []string{"fd00::/8"}, "fd12::1", `"fd12::1" is blacklisted`},
		{"mapped value", list.IPAddresses, false, []string{"10.0.0.0/8"}, "::ffff:10.0.0.1", allow},
		{"mapped entry", list.IPAddresses, false, []string{"::ffff:172.16.0.1"}, "172.16.0.1", allow},
		{"unmasked cidr", list.IPAddresses, false, []string{"10.1.2.3/16"}, "10.1.200.1", allow},
		{"not an ip, whitelist", list.IPAddresses, false, []string{"10.0.0.0/8"}, "web-1", `"web-1" is not an IP address`},
		{"not an ip, blacklist", list.IPAddresses, true, []string{"10.0.0.0/8"}, "", `"" is not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := list.NewConfig()
			cfg.EntryType, cfg.Blacklist, cfg.Overrides = tt.entryType, tt.blacklist, tt.entries
			h := newChecker(t, adapters.Settings{Name: "l"}, cfg)
			got, err := h.Check(context.Background(), &template.ListEntry{Name: "v", Value: tt.value})
			if err != nil {
				t.Fatal(err)
			}
			want := adapters.CheckResult{Code: codes.OK, ValidDuration: 5 * time.Second, ValidUseCount: 1000}
			if tt.want != allow {
				want.Code, want.Message = codes.PermissionDenied, tt.want
			}
			if got != want {
				t.Errorf("Check(%q) = %+v, want %+v", tt.value, got, want)
			}
		})
	}
}

func TestCachingBoundsAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg, err := configtest.Load(list.Factory(), "testdata/strings.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Created twice, as on a config reload: both share the self metrics.
	for range 2 {
		h := newChecker(t, adapters.Settings{Name: "banned", Registerer: reg}, cfg.(*list.Config))
		for _, v := range []string{"alice", "carol"} {
			got, err := h.Check(context.Background(), &template.ListEntry{Value: v})
			if err != nil {
				t.Fatal(err)
			}
			if got.ValidDuration != 30*time.Second || got.ValidUseCount != 50 {
				t.Errorf("Check(%q) caching = %v/%d, want 30s/50", v, got.ValidDuration, got.ValidUseCount)
			}
		}
	}
	for result, want := range map[string]float64{"allowed": 2, "denied": 2} {
		got := metrictest.Value(t, reg, "sidemix_list_checks_total", map[string]string{"handler": "banned", "result": result})
		if got != want {
			t.Errorf("sidemix_list_checks_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestCheckRejectsOtherTemplates(t *testing.T) {
	h := newChecker(t, adapters.Settings{}, list.NewConfig())
	if _, err := h.Check(context.Background(), &template.CheckNothing{}); err == nil {
		t.Error("Check(checknothing) succeeded")
	}
}

func TestCreateRejectsInvalidParams(t *testing.T) {
	cfg := list.NewConfig()
	cfg.EntryType, cfg.Overrides = list.Regex, []string{"("}
	if _, err := list.Factory().Create(context.Background(), adapters.Settings{}, cfg); err == nil {
		t.Error("Create accepted an invalid regex")
	}
}

// TestRemoteRefreshesInBackground waits for the refresher's own timer,
// about one second.
func TestRemoteRefreshesInBackground(t *testing.T) {
	var body atomic.Value
	body.Store("alice\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body.Load())
	}))
	defer srv.Close()
	cfg, err := configtest.Decode(list.Factory(), []byte("providerUrl: "+srv.URL+"\nrefreshInterval: 1s\nttl: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := newChecker(t, adapters.Settings{Name: "bg"}, cfg.(*list.Config))
	allowed := func(v string) bool {
		res, err := h.Check(context.Background(), &template.ListEntry{Value: v})
		if err != nil {
			t.Fatal(err)
		}
		return res.OK()
	}
	if !allowed("alice") || allowed("bob") {
		t.Fatal("the first fetch did not install the list")
	}
	body.Store("bob\n")
	for deadline := time.Now().Add(30 * time.Second); !allowed("bob"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the list was not refreshed")
		}
	}
	if allowed("alice") {
		t.Error("alice is still listed")
	}
}

func ExampleFactory() {
	f := list.Factory()
	cfg, _ := configtest.Decode(f, []byte(`
entryType: IP_ADDRESSES
overrides: [10.0.0.0/8]
`))
	h, err := f.Create(context.Background(), adapters.Settings{Name: "internal-only"}, cfg)
	if err != nil {
		panic(err)
	}
	defer h.Close(context.Background())
	for _, ip := range []string{"10.4.0.9", "8.8.8.8"} {
		res, _ := h.(adapters.Checker).Check(context.Background(), &template.ListEntry{Value: ip})
		if res.OK() {
			fmt.Println(ip, "allowed")
		} else {
			fmt.Println(ip, res.Code, res.Message)
		}
	}
	// Output:
	// 10.4.0.9 allowed
	// 8.8.8.8 PermissionDenied "8.8.8.8" is not whitelisted
}
