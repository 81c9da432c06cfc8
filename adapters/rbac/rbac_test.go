package rbac_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/rbac"
	"github.com/sidemix/sidemix/adapters/template"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, rbac.Factory(), []configtest.Case{
		{File: "default.yaml"},
		{File: "full.yaml"},
		{File: "bad-constraint.bad.yaml", Want: lines(
			`roles[0].rules[1].constraints[1]: ERROR: <input>:1:7: undefined field 'pth'`,
			`roles[0].rules[1].constraints[2]: expression has type string, want bool`)},
		{File: "bindings.bad.yaml", Want: lines(
			`bindings[0].role: unknown role "writer"`,
			`bindings[0].subjects: a binding needs at least one subject`,
			`bindings[1].name: duplicate binding "readers" (also bindings[0])`,
			`bindings[1].role: missing`,
			`bindings[1].subjects[0]: names none of user, group, namespace, properties (user: "*" is anyone)`,
			`bindings[1].subjects[1].user: "a*b": '*' may only stand alone, or begin or end a pattern`,
			`bindings[1].subjects[1].group: "**": '*' may only stand alone, or begin or end a pattern`,
			`bindings[1].subjects[1].properties: version: "*v*": '*' may only stand alone, or begin or end a pattern`,
			`bindings[2].name: missing`)},
		{File: "roles.bad.yaml", Want: lines(
			`roles[0].rules[0].services: a rule needs at least one service ("*" for all)`,
			`roles[0].rules[0].paths[0]: "/a*/b": '*' may only stand alone, or begin or end a pattern`,
			`roles[1].name: duplicate role "reader" (also roles[0])`,
			`roles[1].rules: a role needs at least one rule`,
			`roles[2].name: missing`,
			`roles[2].rules[0].services[0]: "*web*": '*' may only stand alone, or begin or end a pattern`,
			`roles[2].rules[0].methods[0]: empty pattern ("*" matches anything)`,
			`cachingInterval: -1s is negative`,
			`cachingUseCount: -2 is negative`)},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 4: field service not found in type rbac.Rule"},
	})
}

func lines(l ...string) string { return strings.Join(l, "\n") }

func create(t *testing.T, set adapters.Settings, params string) adapters.Checker {
	t.Helper()
	return configtest.Create(t, rbac.Factory(), set, []byte(params)).(adapters.Checker)
}

// bookshop is a policy: readers may read books, writers may also change
// them, ops may do anything anywhere, and the status service is open.
const bookshop = `
roles:
- name: book-reader
  rules:
  - services: [books]
    methods: [GET, HEAD]
    paths: ["/books", "/books/*"]
- name: book-writer
  rules:
  - services: [books]
    methods: [GET, HEAD]
    paths: ["/books*"]
  - services: [books]
    methods: [POST, PUT, DELETE]
    paths: ["/books/*"]
    constraints:
    - "action.properties[?'version'].orValue('') == 'v2'"
- name: catalog
  rules:
  - services: ["*-api"]
    paths: ["*/info"]
- name: ops
  rules:
  - services: ["*"]
    constraints: ["'oncall' in subject.groups"]
bindings:
- name: frontend-reads
  role: book-reader
  subjects:
  - user: cluster.local/ns/default/sa/frontend
  - namespace: shop
- name: editors-write
  role: book-writer
  subjects:
  - user: "*/sa/editor"
  - properties: {source.version: v7, team: books}
- name: anyone-catalog
  role: catalog
  subjects: [{user: "*"}]
- name: ops
  role: ops
  subjects: [{group: "sre-*"}]
`

const (
	frontend = "cluster.local/ns/default/sa/frontend"
	editor   = "cluster.local/ns/news/sa/editor"
	stranger = "cluster.local/ns/default/sa/crawler"
)

func TestCheck(t *testing.T) {
	type req struct {
		user        string
		groups      []string
		props       map[string]any
		service     string
		method      string
		path        string
		actionProps map[string]any
	}
	const allow = ""
	deny := func(r req) string {
		return fmt.Sprintf("RBAC: access denied: user %q may not %s %s on service %q", r.user, r.method, r.path, r.service)
	}
	tests := []struct {
		name string
		req  req
		want string
	}{
		// The frontend reads books, by principal.
		{"frontend lists", req{user: frontend, service: "books", method: "GET", path: "/books"}, allow},
		{"frontend reads", req{user: frontend, service: "books", method: "GET", path: "/books/42"}, allow},
		{"frontend heads", req{user: frontend, service: "books", method: "HEAD", path: "/books/42"}, allow},
		{"frontend may not delete", req{user: frontend, service: "books", method: "DELETE", path: "/books/42"}, "deny"},
		{"frontend path outside role", req{user: frontend, service: "books", method: "GET", path: "/bookshelf"}, "deny"},
		{"frontend admin path", req{user: frontend, service: "books", method: "GET", path: "/admin"}, "deny"},
		// Any caller in namespace shop reads books.
		{"shop namespace reads", req{user: stranger, props: map[string]any{"namespace": "shop"}, service: "books", method: "GET", path: "/books/1"}, allow},
		{"other namespace denied", req{user: stranger, props: map[string]any{"namespace": "default"}, service: "books", method: "GET", path: "/books/1"}, "deny"},
		// Deny by default: no binding for this caller.
		{"stranger denied", req{user: stranger, service: "books", method: "GET", path: "/books"}, "deny"},
		{"anonymous denied", req{service: "books", method: "GET", path: "/books"}, "deny"},
		// Editors write, if the request is v2 (a constraint).
		{"editor reads by prefix", req{user: editor, service: "books", method: "GET", path: "/books-archive"}, allow},
		{"editor writes v2", req{user: editor, service: "books", method: "PUT", path: "/books/1", actionProps: map[string]any{"version": "v2"}}, allow},
		{"editor writes v1", req{user: editor, service: "books", method: "PUT", path: "/books/1", actionProps: map[string]any{"version": "v1"}}, "deny"},
		{"editor writes unversioned", req{user: editor, service: "books", method: "DELETE", path: "/books/1"}, "deny"},
		{"editor may not PATCH", req{user: editor, service: "books", method: "PATCH", path: "/books/1", actionProps: map[string]any{"version": "v2"}}, "deny"},
		// Properties: all listed must match, compared as text.
		{"properties match", req{user: stranger, props: map[string]any{"source.version": "v7", "team": "books"}, service: "books", method: "POST", path: "/books/9", actionProps: map[string]any{"version": "v2"}}, allow},
		{"properties partly match", req{user: stranger, props: map[string]any{"source.version": "v7"}, service: "books", method: "GET", path: "/books"}, "deny"},
		// Catalog: anyone, any method, on *-api services' */info paths.
		{"anyone reads info", req{service: "pricing-api", method: "POST", path: "/v1/info"}, allow},
		{"info only", req{user: frontend, service: "pricing-api", method: "GET", path: "/v1/prices"}, "deny"},
		// Ops: "*" services, so every service is enforced; group glob and a
		// constraint over groups.
		{"sre oncall anywhere", req{user: stranger, groups: []string{"sre-eu", "oncall"}, service: "billing", method: "DELETE", path: "/x"}, allow},
		{"sre off duty", req{user: stranger, groups: []string{"sre-eu"}, service: "billing", method: "GET", path: "/x"}, "deny"},
		{"oncall but not sre", req{user: stranger, groups: []string{"oncall"}, service: "billing", method: "GET", path: "/x"}, "deny"},
		{"frontend on other service", req{user: frontend, service: "billing", method: "GET", path: "/books"}, "deny"},
	}
	h := create(t, adapters.Settings{Name: "rbac"}, bookshop)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req
			got, err := h.Check(context.Background(), &template.Authorization{
				Name:    "authz",
				Subject: template.Subject{User: r.user, Groups: r.groups, Properties: r.props},
				Action:  template.Action{Namespace: "default", Service: r.service, Method: r.method, Path: r.path, Properties: r.actionProps},
			})
			if err != nil {
				t.Fatal(err)
			}
			want := adapters.CheckResult{Code: codes.OK, ValidDuration: 5 * time.Second, ValidUseCount: 1000}
			if tt.want != allow {
				want.Code, want.Message = codes.PermissionDenied, deny(r)
			}
			if got != want {
				t.Errorf("Check = %+v\n          want %+v", got, want)
			}
		})
	}
}

func TestNotEnforcedService(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := create(t, adapters.Settings{Name: "shop", Registerer: reg}, `
roles:
- name: reader
  rules: [{services: [books, "*-api"], methods: [GET]}]
bindings:
- name: frontend
  role: reader
  subjects: [{user: frontend}]
cachingInterval: 1m
cachingUseCount: 7
`)
	check := func(user, service, method string) adapters.CheckResult {
		t.Helper()
		res, err := h.Check(context.Background(), &template.Authorization{
			Subject: template.Subject{User: user},
			Action:  template.Action{Service: service, Method: method, Path: "/"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.ValidDuration != time.Minute || res.ValidUseCount != 7 {
			t.Errorf("caching = %v/%d, want 1m/7", res.ValidDuration, res.ValidUseCount)
		}
		return res
	}
	// No role names "reviews": anyone may do anything there.
	for _, m := range []string{"GET", "DELETE"} {
		if res := check("", "reviews", m); !res.OK() {
			t.Errorf("%s on a service no role names: %+v", m, res)
		}
	}
	// A suffix glob enforces every matching service.
	if res := check("", "prices-api", "GET"); res.Code != codes.PermissionDenied ||
		res.Message != `RBAC: access denied: user "" may not GET / on service "prices-api"` {
		t.Errorf("anonymous GET on an enforced service: %+v", res)
	}
	if res := check("frontend", "prices-api", "GET"); !res.OK() {
		t.Errorf("frontend GET: %+v", res)
	}
	for result, want := range map[string]float64{"allowed": 1, "denied": 1, "not_enforced": 2} {
		got := metrictest.Value(t, reg, "sidemix_rbac_checks_total", map[string]string{"handler": "shop", "result": result})
		if got != want {
			t.Errorf("sidemix_rbac_checks_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestConstraintErrorsDoNotHold(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := create(t, adapters.Settings{Name: "v1-only", Registerer: reg}, `
roles:
- name: v1
  rules: [{services: ["*"], constraints: ["action.properties['version'] == 'v1'"]}]
bindings:
- name: all
  role: v1
  subjects: [{user: "*"}]
`)
	for props, wantOK := range map[string]bool{"v1": true, "v2": false, "": false} {
		a := &template.Authorization{Action: template.Action{Service: "web", Method: "GET", Path: "/"}}
		if props != "" {
			a.Action.Properties = map[string]any{"version": props}
		}
		res, err := h.Check(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() != wantOK {
			t.Errorf("version %q: %+v, want allowed %v", props, res, wantOK)
		}
	}
	if n := metrictest.Value(t, reg, "sidemix_rbac_constraint_errors_total", map[string]string{"handler": "v1-only"}); n != 1 {
		t.Errorf("sidemix_rbac_constraint_errors_total = %v, want 1", n)
	}
}

func TestCheckRejectsOtherTemplates(t *testing.T) {
	h := create(t, adapters.Settings{}, "")
	if _, err := h.Check(context.Background(), &template.CheckNothing{}); err == nil {
		t.Error("Check(checknothing) succeeded")
	}
}

func TestCreateRejectsInvalidParams(t *testing.T) {
	cfg := rbac.NewConfig()
	cfg.Bindings = []rbac.Binding{{Name: "b", Role: "missing", Subjects: []rbac.Subject{{User: "*"}}}}
	if _, err := rbac.Factory().Create(context.Background(), adapters.Settings{}, cfg); err == nil {
		t.Error("Create accepted a binding to an unknown role")
	}
}

func BenchmarkCheck(b *testing.B) {
	f := rbac.Factory()
	cfg, err := configtest.Decode(f, []byte(bookshop))
	if err != nil {
		b.Fatal(err)
	}
	h, err := f.Create(context.Background(), adapters.Settings{Name: "rbac"}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	c := h.(adapters.Checker)
	a := &template.Authorization{
		Subject: template.Subject{User: editor},
		Action:  template.Action{Service: "books", Method: "PUT", Path: "/books/1", Properties: map[string]any{"version": "v2"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if res, _ := c.Check(context.Background(), a); !res.OK() {
			b.Fatal(res)
		}
	}
}

func ExampleFactory() {
	f := rbac.Factory()
	cfg, _ := configtest.Decode(f, []byte(`
roles:
- name: reader
  rules: [{services: [web], methods: [GET]}]
bindings:
- name: frontend-reads
  role: reader
  subjects: [{user: "*/sa/frontend"}]
`))
	h, err := f.Create(context.Background(), adapters.Settings{Name: "rbac"}, cfg)
	if err != nil {
		panic(err)
	}
	defer h.Close(context.Background())
	for _, m := range []string{"GET", "DELETE"} {
		res, _ := h.(adapters.Checker).Check(context.Background(), &template.Authorization{
			Subject: template.Subject{User: "cluster.local/ns/default/sa/frontend"},
			Action:  template.Action{Service: "web", Method: m, Path: "/books/1"},
		})
		if res.OK() {
			fmt.Println(m, "allowed")
		} else {
			fmt.Println(m, res.Code, res.Message)
		}
	}
	// Output:
	// GET allowed
	// DELETE PermissionDenied RBAC: access denied: user "cluster.local/ns/default/sa/frontend" may not DELETE /books/1 on service "web"
}
