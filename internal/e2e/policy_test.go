package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

const listPolicy = `
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: members}
spec:
  adapter: list
  params:
    overrides: [alice, bob]      # a whitelist: everybody else is denied
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: user}
spec:
  template: listentry
  params:
    value: default(request.headers["x-user"], "")
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: members-only}
spec:
  match: request.path.startsWith("/members")
  actions:
  - handler: members
    instances: [user]
---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: bots}
spec:
  adapter: list
  params:
    blacklist: true
    entryType: REGEX
    overrides: ['(?i).*badbot.*']
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: useragent}
spec:
  template: listentry
  params:
    value: default(request.useragent, "")
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: no-bots}
spec:
  actions:
  - handler: bots
    instances: [useragent]
`

// TestListWhitelistAndBlacklist: a whitelist of users on /members and a
// blacklist of user agents everywhere, through a sidecar.
func TestListWhitelistAndBlacklist(t *testing.T) {
	cfg := newConfig(t, map[string]string{"list.yaml": listPolicy})
	m := startMixer(t, cfg, "", "")
	a := newApp(t)
	px := startProxy(t, m.grpc, a.addr())

	cases := []struct {
		name    string
		path    string
		headers []string
		want    int
	}{
		{"whitelisted user", "/members/home", []string{"x-user", "alice"}, 200},
		{"other whitelisted user", "/members/home", []string{"x-user", "bob"}, 200},
		{"user not on the whitelist", "/members/home", []string{"x-user", "mallory"}, 403},
		{"no user", "/members/home", nil, 403},
		{"whitelist only on /members", "/public", []string{"x-user", "mallory"}, 200},
		{"blacklisted agent", "/public", []string{"User-Agent", "BadBot/1.0"}, 403},
		{"blacklisted agent, other case", "/members/home", []string{"User-Agent", "xBADBOTx", "x-user", "alice"}, 403},
		{"ordinary agent", "/public", []string{"User-Agent", "curl/8.0"}, 200},
	}
	for _, c := range cases {
		before := a.hits.Load()
		r := get(t, px.url(c.path), c.headers...)
		if r.code != c.want {
			t.Errorf("%s: GET %s %v = %d %q, want %d", c.name, c.path, c.headers, r.code, r.body, c.want)
		}
		reached := a.hits.Load() > before
		if reached != (c.want == 200) {
			t.Errorf("%s: app reached = %v, want %v", c.name, reached, c.want == 200)
		}
	}
}

// TestMemquotaExactUnderConcurrency: a limit of 10 per 30s window gives
// exactly 10 successes out of 40 concurrent requests, the rest 429 with
// Retry-After.
func TestMemquotaExactUnderConcurrency(t *testing.T) {
	const limit, total = 10, 40
	quota := fmt.Sprintf(`
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: ratelimit}
spec:
  adapter: memquota
  params:
    quotas:
    - name: requests
      maxAmount: %d
      validDuration: 30s
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: requests}
spec:
  template: quota
  params:
    dimensions:
      destination: default(destination.workload.name, "unknown")
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: limit}
spec:
  match: request.path.startsWith("/limited")
  actions:
  - handler: ratelimit
    instances: [requests]
`, limit)
	cfg := newConfig(t, map[string]string{"quota.yaml": quota})
	m := startMixer(t, cfg, "", "")
	a := newApp(t)
	px := startProxy(t, m.grpc, a.addr())

	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]response, total)
	errs := make([]error, total)
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = tryGet(px.url(fmt.Sprintf("/limited/%d", i)))
		}()
	}
	close(start)
	wg.Wait()

	codes := map[int]int{}
	badRetry := map[string]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		codes[r.code]++
		if r.code == http.StatusTooManyRequests {
			ra := r.header.Get("Retry-After")
			if n, err := strconv.Atoi(ra); err != nil || n < 1 || n > 33 {
				badRetry[ra]++
			}
		}
	}
	if len(badRetry) > 0 {
		t.Errorf("429s with a bad Retry-After (value → count) %v; want whole seconds in 1..33 (the 30s window, plus memquota's 1.5s bucket, rounded up)", badRetry)
	}
	if codes[200] != limit || codes[429] != total-limit || len(codes) != 2 {
		t.Errorf("codes %v, want exactly %d×200 and %d×429", codes, limit, total-limit)
	}
	if got := a.hits.Load(); got != limit {
		t.Errorf("app got %d requests, want %d", got, limit)
	}
	// Other paths are not limited.
	if r := get(t, px.url("/free")); r.code != 200 {
		t.Errorf("GET /free = %d, want 200", r.code)
	}
}

// TestConfigWatch: an invalid change to the watched folder is logged with
// its file and line while the old rules keep serving; a valid change takes
// effect without a restart.
func TestConfigWatch(t *testing.T) {
	cfg := newConfig(t, map[string]string{"deny.yaml": denyPath("/blocked")})
	// Allowed answers may be cached by the sidecar only briefly, so that the
	// test sees a changed rule at once.
	m := startMixer(t, cfg, "", "", "--default-valid-duration", "10ms", "--default-valid-use-count", "1")
	a := newApp(t)
	px := startProxy(t, m.grpc, a.addr())

	if r := get(t, px.url("/blocked")); r.code != 403 || !strings.Contains(r.body, "/blocked is closed") {
		t.Fatalf("GET /blocked = %d %q, want 403 \"/blocked is closed\"", r.code, r.body)
	}

	// An invalid change: an undeclared attribute on line 22 of the file.
	broken := strings.Replace(denyPath("/other"), `match: request.path == "/other"`, `match: request.pth == "/other"`, 1)
	if !strings.Contains(broken, "request.pth") {
		t.Fatal("test bug: replacement failed")
	}
	line := 1 + strings.Count(broken[:strings.Index(broken, "request.pth")], "\n")
	cfg.write(t, "deny.yaml", broken)
	where := regexp.MustCompile(`deny\.yaml:` + strconv.Itoa(line) + `\b`)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return where.MatchString(m.Output()), "mixer log does not name deny.yaml:" + strconv.Itoa(line)
	})
	if !strings.Contains(m.Output(), "request.pth") {
		t.Errorf("mixer log does not show the undeclared reference request.pth")
	}
	// The old rules keep serving.
	for range 3 {
		if r := get(t, px.url("/blocked")); r.code != 403 {
			t.Fatalf("after an invalid change GET /blocked = %d, want the old rule's 403", r.code)
		}
		if r := get(t, px.url("/other")); r.code != 200 {
			t.Fatalf("after an invalid change GET /other = %d, want 200", r.code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The admin page shows the failed reload, and still the old config.
	page := get(t, "http://"+m.admin+"/debug/config")
	if !where.MatchString(page.body) {
		t.Errorf("/debug/config does not name deny.yaml:%d:\n%s", line, page.body)
	}
	if !strings.Contains(page.body, "/blocked") {
		t.Errorf("/debug/config does not show the old rule (request.path == \"/blocked\")")
	}
	// The failed reload shows in the mixer's own metrics.
	self, err := scrape(m.admin)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(self, "sidemix_mixer_config_last_reload_success 0") {
		t.Errorf("sidemix_mixer_config_last_reload_success is not 0 after an invalid change:\n%s",
			grepLines(self, "sidemix_mixer_config"))
	}

	// A valid change takes effect without restart.
	cfg.write(t, "deny.yaml", denyPath("/other"))
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		r1 := get(t, px.url("/other"))
		r2 := get(t, px.url("/blocked"))
		return r1.code == 403 && r2.code == 200, fmt.Sprintf("GET /other = %d (want 403), GET /blocked = %d (want 200)", r1.code, r2.code)
	})
	if m.Exited() {
		t.Fatalf("mixer exited: %v", m.Err())
	}
}

// TestCheckCache: a rule that looks only at request.path lets the sidecar
// answer repeats of a path from its cache; another path asks the mixer
// again; a validUseCount of 3 forces a new Check on the 4th use.
func TestCheckCache(t *testing.T) {
	policy := strings.Replace(example(t, "policies/deny-admin.yaml"),
		"    message: admin is closed\n", "    message: admin is closed\n    validUseCount: 3\n    validDuration: 1m\n", 1)
	if !strings.Contains(policy, "validUseCount: 3") {
		t.Fatal("test bug: replacement failed")
	}
	cfg := newConfig(t, map[string]string{"deny-admin.yaml": policy})
	m := startMixer(t, cfg, "", "", "--default-valid-duration", "1m")
	a := newApp(t)
	px := startProxy(t, m.grpc, a.addr())

	checks := func() float64 {
		text, err := scrape(m.admin)
		if err != nil {
			t.Fatal(err)
		}
		return sample(text, "sidemix_mixer_check_requests_total", nil)
	}
	base := checks()
	for range 5 {
		if r := get(t, px.url("/hello")); r.code != 200 {
			t.Fatalf("GET /hello = %d", r.code)
		}
	}
	if got := checks() - base; got != 1 {
		t.Errorf("5 × GET /hello made %v Checks, want 1 (the rest from the cache)", got)
	}
	if r := get(t, px.url("/world")); r.code != 200 {
		t.Fatalf("GET /world = %d", r.code)
	}
	if got := checks() - base; got != 2 {
		t.Errorf("after GET /world: %v Checks, want 2 (another path is another cache key)", got)
	}
	// A different header does not matter to the policy: still cached.
	if r := get(t, px.url("/hello"), "x-user", "someone"); r.code != 200 {
		t.Fatalf("GET /hello = %d", r.code)
	}
	if got := checks() - base; got != 2 {
		t.Errorf("GET /hello with another header made a Check (%v in all, want 2): the cache key is not just request.path", got)
	}

	// The denial may be used 3 times: 4 requests need 2 Checks.
	before := checks()
	for range 4 {
		if r := get(t, px.url("/admin/users")); r.code != 403 {
			t.Fatalf("GET /admin/users = %d, want 403", r.code)
		}
	}
	if got := checks() - before; got != 2 {
		t.Errorf("4 × GET /admin/users with validUseCount 3 made %v Checks, want 2", got)
	}
	if a.hits.Load() != 7 {
		t.Errorf("app hits = %d, want 7 (no denied request)", a.hits.Load())
	}
}

// denyPath is a config whose one Check rule denies requests for path
// (briefly cacheable answers, so a changed rule shows at once).
func denyPath(path string) string {
	return strings.ReplaceAll(`
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny}
spec:
  adapter: denier
  params:
    message: PATH is closed
    validDuration: 10ms
    validUseCount: 1
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: nothing}
spec:
  template: checknothing
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: deny-path}
spec:
  match: request.path == "PATH"
  actions:
  - handler: deny
    instances: [nothing]
`, "PATH", path)
}
