package mixer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/policy"
)

// denyConfig denies the requests match selects with message; match is the
// rule's expression, on line 18.
func denyConfig(match, message string) string {
	return `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny}
spec:
  adapter: denier
  params: {status: PERMISSION_DENIED, message: "` + message + `"}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: nothing}
spec:
  template: checknothing
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: closed}
spec:
  match: ` + match + `
  actions:
  - handler: deny
    instances: [nothing]
`
}

// writeAtomically replaces path the way editors and config maps do: a new
// file renamed over the old one.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (e *env) denial(path string) (codes.Code, string) {
	e.t.Helper()
	st := e.check(pathBag(path)).GetPrecondition().GetStatus()
	return codes.Code(st.GetCode()), st.GetMessage()
}

func testConfigWatch(t *testing.T, cfg Config) {
	dir := writeConfig(t, map[string]string{"deny.yaml": denyConfig(`request.path.startsWith("/admin")`, "admin is closed")})
	cfg.ReloadDebounce = 50 * time.Millisecond
	e := start(t, dir, cfg)
	reg := e.srv.Registry()
	file := filepath.Join(dir, "deny.yaml")

	if _, msg := e.denial("/admin"); msg != "admin is closed" {
		t.Fatalf("/admin: %q", msg)
	}

	// A valid change, written in place, takes effect without a restart.
	if err := os.WriteFile(file, []byte(denyConfig(`request.path.startsWith("/admin")`, "admin moved")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the new message", func() bool {
		_, msg := e.denial("/admin")
		return msg == "admin moved"
	})
	if got := metric(t, reg, "sidemix_mixer_config_reloads_total", "result", "success"); got < 1 {
		t.Errorf("reloads{success} = %v", got)
	}

	// An invalid one is rejected: the old rules keep serving and the error
	// names file and line.
	writeAtomically(t, file, denyConfig(`request.pth.startsWith("/admin")`, "typo"))
	eventually(t, 10*time.Second, "the reload failure counted", func() bool {
		return metric(t, reg, "sidemix_mixer_config_reloads_total", "result", "failure") >= 1
	})
	if code, msg := e.denial("/admin"); code != codes.PermissionDenied || msg != "admin moved" {
		t.Errorf("after an invalid change /admin: %v %q, want the old rule", code, msg)
	}
	if got := metric(t, reg, "sidemix_mixer_config_last_reload_success"); got != 0 {
		t.Errorf("last_reload_success = %v, want 0", got)
	}
	err := e.srv.LastReloadError()
	var le *policy.LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "deny.yaml:18:") || !strings.Contains(err.Error(), "request.pth") {
		t.Errorf("LastReloadError: %v, want deny.yaml:18: ... request.pth", err)
	}
	code, body := e.get("/debug/config")
	var page struct {
		Digest     string
		LastReload struct {
			Success bool
			Errors  []string
		}
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil || code != 200 {
		t.Fatalf("/debug/config: %d %v\n%s", code, err, body)
	}
	if page.LastReload.Success || len(page.LastReload.Errors) == 0 || !strings.Contains(page.LastReload.Errors[0], "deny.yaml:18:") {
		t.Errorf("/debug/config lastReload: %+v", page.LastReload)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "deny.yaml:18:") {
		t.Errorf("the issue was not logged:\n%s", logs)
	}

	// Fixing it recovers; a new folder is watched too.
	writeAtomically(t, file, denyConfig(`request.path.startsWith("/admin") || request.path == "/secret"`, "fixed"))
	eventually(t, 10*time.Second, "the fixed config", func() bool {
		_, msg := e.denial("/secret")
		return msg == "fixed"
	})
	if e.srv.LastReloadError() != nil || metric(t, reg, "sidemix_mixer_config_last_reload_success") != 1 {
		t.Errorf("after the fix: %v, gauge %v", e.srv.LastReloadError(), metric(t, reg, "sidemix_mixer_config_last_reload_success"))
	}
	sub := filepath.Join(dir, "more", "rules")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	extra := strings.NewReplacer("name: deny}", "name: deny2}", "name: nothing}", "name: nothing2}",
		"name: closed}", "name: closed2}", "handler: deny\n", "handler: deny2\n", "[nothing]", "[nothing2]").
		Replace(denyConfig(`request.path == "/private"`, "private"))
	time.Sleep(100 * time.Millisecond) // let the watcher see the new folders first
	if err := os.WriteFile(filepath.Join(sub, "extra.yaml"), []byte(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the rule of the new folder", func() bool {
		_, msg := e.denial("/private")
		return msg == "private"
	})
}

func TestConfigWatch(t *testing.T) {
	testConfigWatch(t, Config{ConfigPollInterval: time.Hour})
}

func TestConfigWatchPollingFallback(t *testing.T) {
	testConfigWatch(t, Config{ConfigPollInterval: 100 * time.Millisecond, noFSNotify: true})
}

func TestReloadKeepsUnchangedHandlers(t *testing.T) {
	e := start(t, testdata(t, "quota.yaml"), Config{ConfigPollInterval: time.Hour})
	for range 7 {
		e.check(pathBag("/limited"))
	}
	if code, _ := e.denial("/limited"); code != codes.ResourceExhausted {
		t.Fatalf("8th request: %v", code)
	}
	digest := e.srv.Snapshot().Digest()
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _ := e.denial("/limited"); code != codes.ResourceExhausted || e.srv.Snapshot().Digest() != digest {
		t.Errorf("an unchanged reload reset the quota: %v", code)
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_config_reloads_total", "result", "success"); got != 0 {
		t.Errorf("reloads{success} = %v after an unchanged reload", got)
	}
}

func TestReloadRetiresOldState(t *testing.T) {
	name, sk := newSink(t)
	sk.gate = make(chan struct{})
	dir := reportConfig(t, name)
	e := start(t, dir, Config{ConfigPollInterval: time.Hour, ReportBatchSize: 1})

	e.report(requestBag("/1", 200), requestBag("/2", 200), requestBag("/3", 200))
	old := e.srv.Snapshot().Digest()
	f := filepath.Join(dir, "report.yaml")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, append(b, "# changed\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if e.srv.Snapshot().Digest() == old {
		t.Fatal("the reload did not swap the snapshot")
	}
	// The old handler is closed only once its queue is delivered.
	time.Sleep(50 * time.Millisecond)
	if _, closed, _ := sk.snapshot(); closed != 0 {
		t.Fatalf("old handler closed with its queue held")
	}
	close(sk.gate)
	eventually(t, 10*time.Second, "the old handler drained and closed", func() bool {
		_, closed, atClose := sk.snapshot()
		return closed == 1 && atClose == 3
	})
	// The new handler serves.
	e.report(requestBag("/4", 200))
	eventually(t, 5*time.Second, "the new handler's delivery", func() bool { return sk.count() == 4 })
}
