package mixer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestAdminEndpoints(t *testing.T) {
	dir := testdata(t, "deny.yaml")
	broken := `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: broken}
spec:
  adapter: failcreate
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: broken}
spec:
  match: request.path == "/broken"
  actions:
  - handler: broken
    instances: [nothing]
`
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	e := start(t, dir, Config{})
	e.check(pathBag("/admin"))

	if code, body := e.get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := e.get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	code, body := e.get("/metrics")
	for _, want := range []string{
		`sidemix_mixer_check_requests_total{code="PERMISSION_DENIED"} 1`,
		`sidemix_mixer_config_last_reload_success 1`,
		`sidemix_mixer_config_reloads_total{result="failure"} 0`,
		`sidemix_mixer_handler_create_failures_total{handler="broken"} 1`,
		`sidemix_denier_denials_total{handler="deny-admin"} 1`, // the handler's own metric
		`go_goroutines`,
		`process_`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}

	type page struct {
		Digest   string
		Counts   struct{ Handlers, Instances, Rules int }
		Handlers []struct {
			Name, Adapter, Error string
		}
		Config map[string]any
	}
	code, body = e.get("/debug/config")
	var js page
	if err := json.Unmarshal([]byte(body), &js); err != nil || code != 200 {
		t.Fatalf("/debug/config: %d %v\n%s", code, err, body)
	}
	if js.Digest != e.srv.Snapshot().Digest() || js.Counts.Handlers != 2 || js.Counts.Rules != 3 || js.Config == nil {
		t.Errorf("/debug/config: %+v", js)
	}
	var brokenErr string
	for _, h := range js.Handlers {
		if h.Name == "broken" {
			brokenErr = h.Error
		}
	}
	if !strings.Contains(brokenErr, "backend is down") {
		t.Errorf("/debug/config handlers: %+v", js.Handlers)
	}

	for _, variant := range [][]string{{"/debug/config?format=yaml"}, {"/debug/config", "Accept", "application/yaml"}} {
		code, body := e.get(variant[0], variant[1:]...)
		var y page
		if err := yaml.Unmarshal([]byte(body), &y); err != nil || code != 200 {
			t.Fatalf("%v: %d %v\n%s", variant, code, err, body)
		}
		if strings.HasPrefix(strings.TrimSpace(body), "{") || !strings.Contains(body, "digest: "+js.Digest) {
			t.Errorf("%v is not block YAML:\n%s", variant, body)
		}
		if y.Digest != js.Digest || y.Counts != js.Counts {
			t.Errorf("%v: %+v, want %+v", variant, y, js)
		}
	}
}
