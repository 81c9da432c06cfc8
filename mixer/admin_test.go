package mixer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/policy"
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

func TestDebugConfigHidesSecrets(t *testing.T) {
	cfg := `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: shared}
spec:
  adapter: testquota
  params:
    server: redis://app:hunter2@127.0.0.1:16379/0
    password: sesame
    extra:
      authToken: tok-123
      client_secret: [sec-one, sec-two]
      backends: ["rediss://:pw9@10.0.0.1:6380", "127.0.0.1:6379"]
      timeout: 1s
---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: down}
spec:
  adapter: testquota
  params:
    createError: "dial redis://:pw7@10.1.1.1:6379: connection refused"
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: requestcount}
spec:
  template: quota
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: limit}
spec:
  match: request.path == "/down"
  actions:
  - {handler: shared, instances: [requestcount]}
  - {handler: down, instances: [requestcount]}
`
	e := start(t, writeConfig(t, map[string]string{"q.yaml": cfg}), Config{})
	msg := e.check(pathBag("/down")).GetPrecondition().GetStatus().GetMessage()
	for _, path := range []string{"/debug/config", "/debug/config?format=yaml"} {
		code, body := e.get(path)
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		for _, secret := range []string{"hunter2", "sesame", "tok-123", "sec-one", "sec-two", "pw9", "pw7"} {
			if strings.Contains(body, secret) {
				t.Errorf("%s shows %q:\n%s", path, secret, body)
			}
		}
		for _, kept := range []string{"redis://app:xxxxx@127.0.0.1:16379/0", "rediss://:xxxxx@10.0.0.1:6380",
			"127.0.0.1:6379", "1s", "dial redis://:xxxxx@10.1.1.1:6379: connection refused"} {
			if !strings.Contains(body, kept) {
				t.Errorf("%s lacks %q:\n%s", path, kept, body)
			}
		}
	}
	if strings.Contains(msg, "pw7") || !strings.Contains(msg, "redis://:xxxxx@") {
		t.Errorf("the denial shows the URL's password: %q", msg)
	}
	if strings.Contains(e.logs.String(), "pw7") {
		t.Errorf("the log shows the URL's password:\n%s", e.logs)
	}
	// The snapshot's own view is untouched.
	if v := e.srv.Snapshot().View().(*policy.ConfigView); !strings.Contains(fmt.Sprint(v.Handlers), "hunter2") {
		t.Errorf("redaction changed the snapshot's view: %v", v.Handlers)
	}
}

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:pw@host:6379":           "redis://:xxxxx@host:6379",
		"redis://user:pw@host":            "redis://user:xxxxx@host",
		"redis://pw@host":                 "redis://xxxxx@host",
		"http://host/path?q=a@b":          "http://host/path?q=a@b",
		"a redis://:p@h and http://u:v@w": "a redis://:xxxxx@h and http://u:xxxxx@w",
		"user@example.com":                "user@example.com",
		"127.0.0.1:6379":                  "127.0.0.1:6379",
	} {
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}

// secretConfig holds a secret under a key no name rule would catch: only
// its Redacted method knows.
type secretConfig struct {
	Endpoint string        `yaml:"endpoint"`
	Key      string        `yaml:"key"`
	Timeout  time.Duration `yaml:"timeout"`
}

func (c *secretConfig) Validate() error { return nil }

func (c *secretConfig) Redacted() any {
	r := *c
	r.Key = "hidden-by-adapter"
	return &r
}

var _ adapters.Redactor = (*secretConfig)(nil)

func TestDebugConfigUsesRedactor(t *testing.T) {
	f := adapters.Factory{
		Name:      "testsecret",
		Templates: []string{template.QuotaName},
		NewConfig: func() adapters.Config { return &secretConfig{Timeout: 3 * time.Second} },
		Create: func(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
			return &testQuota{}, nil
		},
	}
	cfg := `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: vault}
spec:
  adapter: testsecret
  params: {endpoint: "https://u:pw5@vault:8200", key: open-sesame}
`
	e := start(t, writeConfig(t, map[string]string{"s.yaml": cfg}), Config{Adapters: testRegistry(t, f)})
	_, body := e.get("/debug/config")
	var page struct {
		Config struct {
			Handlers []struct {
				Name   string
				Params map[string]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil || len(page.Config.Handlers) != 1 {
		t.Fatalf("%v\n%s", err, body)
	}
	got := page.Config.Handlers[0].Params
	want := map[string]any{"endpoint": "https://u:xxxxx@vault:8200", "key": "hidden-by-adapter", "timeout": "3s"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("params shown %v, want %v", got, want)
	}
	if strings.Contains(body, "open-sesame") || strings.Contains(body, "pw5") {
		t.Errorf("secret shown:\n%s", body)
	}
}
