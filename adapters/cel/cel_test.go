package cel_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/cel"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/template"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, cel.Factory(), []configtest.Case{
		{File: "default.yaml"},
		{File: "full.yaml"},
		{File: "conditions.bad.yaml", Want: lines(
			`rules[0].condition: ERROR: <input>:1:7: undefined field 'pth'`,
			`rules[1].condition: expression has type string, want bool`,
			`rules[2].condition: missing`,
			`rules[3].condition: ERROR: <input>:1:1: undeclared reference to 'request'`)},
		{File: "effects.bad.yaml", Want: lines(
			`rules[0].effect: unknown effect "allow" (want ALLOW or DENY)`,
			`rules[1].message: an ALLOW rule has no message`,
			`rules[1].status: an ALLOW rule has no status`,
			`rules[2].status: "OK" would allow, not deny`,
			`rules[3].status: unknown gRPC code "PermissionDenied"`,
			`rules[4].effect: missing (ALLOW or DENY)`,
			`default: unknown effect "MAYBE" (want ALLOW or DENY)`,
			`cachingInterval: -1s is negative`,
			`cachingUseCount: -1 is negative`)},
		{File: "misspelled.bad.yaml", Want: "yaml: unmarshal errors:\n  line 2: field when not found in type cel.Rule"},
	})
}

func lines(l ...string) string { return strings.Join(l, "\n") }

func create(t *testing.T, set adapters.Settings, params string) adapters.Checker {
	t.Helper()
	return configtest.Create(t, cel.Factory(), set, []byte(params)).(adapters.Checker)
}

func TestCheck(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := create(t, adapters.Settings{Name: "books", Registerer: reg}, `
rules:
- condition: action.method == 'DELETE' && subject.properties[?'namespace'].orValue('') != action.namespace
  effect: DENY
  message: deletes only from inside the namespace
- condition: action.path.startsWith('/beta') && action.properties['version'] != 'v2'
  effect: DENY
  status: FAILED_PRECONDITION
  message: /beta needs a v2 client
- condition: "'admins' in subject.groups"
  effect: ALLOW
- condition: action.path.startsWith('/admin')
  effect: DENY
- condition: subject.user == ''
  effect: DENY
  status: UNAUTHENTICATED
default: ALLOW
cachingInterval: 1m
cachingUseCount: 9
`)
	type want struct {
		code codes.Code
		msg  string
	}
	ok := want{codes.OK, ""}
	tests := []struct {
		name  string
		user  string
		ns    string
		group string
		meth  string
		path  string
		ver   string
		want  want
	}{
		{"plain read", "alice", "shop", "", "GET", "/books", "", ok},
		{"delete in namespace", "alice", "shop", "", "DELETE", "/books/1", "", ok},
		{"delete from outside", "alice", "news", "", "DELETE", "/books/1", "", want{codes.PermissionDenied, "deletes only from inside the namespace"}},
		{"delete without namespace", "alice", "", "admins", "DELETE", "/books/1", "", want{codes.PermissionDenied, "deletes only from inside the namespace"}},
		{"beta v1", "alice", "shop", "", "GET", "/beta/x", "v1", want{codes.FailedPrecondition, "/beta needs a v2 client"}},
		{"beta v2", "alice", "shop", "", "GET", "/beta/x", "v2", ok},
		// No version: the condition errors, so it does not hold.
		{"beta unversioned", "alice", "shop", "", "GET", "/beta/x", "", ok},
		{"admin path, admin", "root", "shop", "admins", "GET", "/admin", "", ok},
		{"admin path, first deny wins", "root", "news", "admins", "DELETE", "/admin", "", want{codes.PermissionDenied, "deletes only from inside the namespace"}},
		{"admin path, not admin", "alice", "shop", "", "GET", "/admin", "", want{codes.PermissionDenied, "denied by handler books (rules[3])"}},
		{"anonymous", "", "shop", "", "GET", "/books", "", want{codes.Unauthenticated, "denied by handler books (rules[4])"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &template.Authorization{
				Subject: template.Subject{User: tt.user},
				Action:  template.Action{Namespace: "shop", Service: "books", Method: tt.meth, Path: tt.path},
			}
			if tt.ns != "" {
				a.Subject.Properties = map[string]any{"namespace": tt.ns}
			}
			if tt.group != "" {
				a.Subject.Groups = []string{tt.group}
			}
			if tt.ver != "" {
				a.Action.Properties = map[string]any{"version": tt.ver}
			}
			got, err := h.Check(context.Background(), a)
			if err != nil {
				t.Fatal(err)
			}
			w := adapters.CheckResult{Code: tt.want.code, Message: tt.want.msg, ValidDuration: time.Minute, ValidUseCount: 9}
			if got != w {
				t.Errorf("Check = %+v, want %+v", got, w)
			}
		})
	}
	for result, want := range map[string]float64{"allowed": 5, "denied": 6} {
		got := metrictest.Value(t, reg, "sidemix_cel_checks_total", map[string]string{"handler": "books", "result": result})
		if got != want {
			t.Errorf("sidemix_cel_checks_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	// Only "beta unversioned" indexes a missing property: the && stops
	// the others before the index.
	if n := metrictest.Value(t, reg, "sidemix_cel_eval_errors_total", map[string]string{"handler": "books"}); n != 1 {
		t.Errorf("sidemix_cel_eval_errors_total = %v, want 1", n)
	}
}

func TestDefaultDeny(t *testing.T) {
	h := create(t, adapters.Settings{Name: "allow-list"}, `
rules:
- condition: action.service == 'web' && action.method in ['GET', 'HEAD']
  effect: ALLOW
`)
	for _, tt := range []struct {
		service, method string
		allow           bool
	}{{"web", "GET", true}, {"web", "HEAD", true}, {"web", "POST", false}, {"db", "GET", false}} {
		res, err := h.Check(context.Background(), &template.Authorization{Action: template.Action{Service: tt.service, Method: tt.method}})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() != tt.allow {
			t.Errorf("%s %s: %+v, want allowed %v", tt.method, tt.service, res, tt.allow)
		}
		if !res.OK() && (res.Code != codes.PermissionDenied || res.Message != "denied by handler allow-list: no rule allows the request") {
			t.Errorf("%s %s: %+v", tt.method, tt.service, res)
		}
	}
}

func TestCheckRejectsOtherTemplates(t *testing.T) {
	h := create(t, adapters.Settings{}, "")
	if _, err := h.Check(context.Background(), &template.ListEntry{}); err == nil {
		t.Error("Check(listentry) succeeded")
	}
}

func TestCreateRejectsInvalidParams(t *testing.T) {
	cfg := cel.NewConfig()
	cfg.Rules = []cel.Rule{{Condition: "action.pth == ''", Effect: cel.Deny}}
	if _, err := cel.Factory().Create(context.Background(), adapters.Settings{}, cfg); err == nil {
		t.Error("Create accepted an invalid condition")
	}
}

func ExampleFactory() {
	f := cel.Factory()
	cfg, _ := configtest.Decode(f, []byte(`
rules:
- condition: action.method == 'DELETE' && !('admins' in subject.groups)
  effect: DENY
  message: only admins delete
default: ALLOW
`))
	h, err := f.Create(context.Background(), adapters.Settings{Name: "no-delete"}, cfg)
	if err != nil {
		panic(err)
	}
	defer h.Close(context.Background())
	for _, m := range []string{"GET", "DELETE"} {
		res, _ := h.(adapters.Checker).Check(context.Background(), &template.Authorization{
			Subject: template.Subject{User: "alice", Groups: []string{"dev"}},
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
	// DELETE PermissionDenied only admins delete
}
