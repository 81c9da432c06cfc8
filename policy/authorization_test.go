package policy

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// authzConfig is the shipped authorization example plus a rule sending it
// to a handler.
func authzConfig(t *testing.T) map[string][]byte {
	t.Helper()
	example, err := os.ReadFile("../examples/policies/authorization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"authz.yaml": example,
		"rule.yaml": []byte(`
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: authz}
spec:
  actions: [{handler: sink, instances: [request-authz]}]
`),
	}
}

func authzBag() *attribute.Builder {
	return attribute.NewBuilder(12).
		SetString(attribute.SourcePrincipal, "spiffe://cluster.local/ns/shop/sa/web").
		SetString(attribute.SourceNamespace, "shop").
		SetStringMap(attribute.SourceLabels, map[string]string{"groups": "admins, ops,,"}).
		SetString(attribute.DestinationServiceName, "reviews").
		SetString(attribute.DestinationServiceNamespace, "books").
		SetStringMap(attribute.DestinationLabels, map[string]string{"version": "v2"}).
		SetString(attribute.RequestMethod, "GET").
		SetString(attribute.RequestPath, "/reviews/1")
}

func checkAuthz(t *testing.T, s *Snapshot, bag *attribute.Bag, refs *attribute.Referenced) *template.Authorization {
	t.Helper()
	res := s.Evaluate(bag, VarietyCheck, refs)
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %v", res.Errors)
	}
	if len(res.Actions) != 1 || len(res.Actions[0].Instances) != 1 {
		t.Fatalf("actions = %+v", res.Actions)
	}
	in, ok := res.Actions[0].Instances[0].(*template.Authorization)
	if !ok {
		t.Fatalf("instance = %#v", res.Actions[0].Instances[0])
	}
	return in
}

func TestAuthorizationInstance(t *testing.T) {
	s, err := LoadSources(authzConfig(t), Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	var refs attribute.Referenced
	got := checkAuthz(t, s, authzBag().Build(), &refs)
	want := &template.Authorization{
		Name: "request-authz",
		Subject: template.Subject{
			User:       "spiffe://cluster.local/ns/shop/sa/web",
			Groups:     []string{"admins", "ops"},
			Properties: map[string]any{"namespace": "shop"},
		},
		Action: template.Action{Namespace: "books", Service: "reviews", Method: "GET", Path: "/reviews/1",
			Properties: map[string]any{"version": "v2"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("instance = %+v\nwant %+v", got, want)
	}
	if !hasRef(refs.List(), attribute.SourcePrincipal, true) || !hasRef(refs.List(), attribute.RequestPath, true) {
		t.Errorf("referenced %v", refs.List())
	}

	// A caller without principal, labels or namespace: the fields are
	// empty, the action is not skipped, and the absences are recorded.
	refs.Reset()
	bag := attribute.NewBuilder(4).
		SetString(attribute.DestinationServiceName, "reviews").
		SetString(attribute.DestinationNamespace, "books2").
		SetString(attribute.RequestMethod, "GET").
		SetString(attribute.RequestPath, "/").Build()
	got = checkAuthz(t, s, bag, &refs)
	want = &template.Authorization{
		Name:    "request-authz",
		Subject: template.Subject{},
		Action: template.Action{Namespace: "books2", Service: "reviews", Method: "GET", Path: "/",
			Properties: map[string]any{"version": "unversioned"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("instance = %+v\nwant %+v", got, want)
	}
	for _, name := range []string{attribute.SourcePrincipal, attribute.SourceLabels, attribute.SourceNamespace} {
		if !hasRef(refs.List(), name, false) {
			t.Errorf("absent %s not recorded: %v", name, refs.List())
		}
	}
}

func hasRef(refs []attribute.Reference, name string, present bool) bool {
	for _, r := range refs {
		if r.Name == name && r.Present == present {
			return true
		}
	}
	return false
}

func TestAuthorizationGroupsList(t *testing.T) {
	files := authzConfig(t)
	files["authz.yaml"] = []byte(`
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: request-authz}
spec:
  template: authorization
  params:
    subject:
      user: source.principal
      groups: 'request.headers["x-groups"].split("|")'
      properties: {ip: source.ip}
`)
	s, err := LoadSources(files, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	bag := attribute.NewBuilder(3).
		SetString(attribute.SourcePrincipal, "ann").
		SetStringMap(attribute.RequestHeaders, map[string]string{"x-groups": "a|b||c"}).Build()
	got := checkAuthz(t, s, bag, nil)
	if got.Subject.User != "ann" || strings.Join(got.Subject.Groups, ",") != "a,b,c" || len(got.Subject.Properties) != 0 ||
		!reflect.DeepEqual(got.Action, template.Action{}) {
		t.Fatalf("instance = %+v", got)
	}
}

// TestAuthorizationEvalError: a failure other than absence still skips the
// action and is reported.
func TestAuthorizationEvalError(t *testing.T) {
	files := authzConfig(t)
	files["authz.yaml"] = []byte(`
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: request-authz}
spec:
  template: authorization
  params:
    subject: {user: source.principal}
    action:
      path: dnsName(request.path)
`)
	s, err := LoadSources(files, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	res := s.Evaluate(attribute.NewBuilder(1).SetString(attribute.RequestPath, "/not a name").Build(), VarietyCheck, nil)
	if len(res.Actions) != 0 || len(res.Errors) != 1 {
		t.Fatalf("result = %+v", res)
	}
	if e := res.Errors[0]; e.Rule != "authz" || e.Instance != "request-authz" || e.Field != "spec.params.action.path" {
		t.Fatalf("error = %v", e)
	}
}

func TestAuthorizationLoadErrors(t *testing.T) {
	src := `apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: bad}
spec:
  template: authorization
  params:
    subject:
      user: request.size
      groups: request.size
      properties: {h: request.headers}
      name: x
    action:
      method: 'request.headers["x"] == "GET"'
      path: 'request.path.split("/")'
      properties: {ok: request.size, l: '["a"]'}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: good}
spec:
  template: authorization
  params:
    subject: {groups: '["a", "b"]'}
---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny}
spec: {adapter: denier}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: r}
spec:
  actions: [{handler: deny, instances: [good]}]
`
	_, err := LoadSources(map[string][]byte{"a.yaml": []byte(src)}, Options{Adapters: testRegistry()})
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"a.yaml:8: Instance/bad: spec.params.subject.user: expression has type int, want string",
		"a.yaml:9: Instance/bad: spec.params.subject.groups: expression has type int, want string or list(string)",
		"a.yaml:10: Instance/bad: spec.params.subject.properties.h: expression has type map(string, string), want a scalar (not a map or list)",
		"a.yaml:11: Instance/bad: spec.params.subject.name: unknown field",
		"a.yaml:13: Instance/bad: spec.params.action.method: expression has type bool, want string",
		"a.yaml:14: Instance/bad: spec.params.action.path: expression has type list(string), want string",
		"a.yaml:15: Instance/bad: spec.params.action.properties.l: expression has type list(string), want a scalar (not a map or list)",
		`a.yaml:34: Rule/r: spec.actions[0].instances[0]: handler "deny" (adapter denier) does not accept template "authorization" (accepts checknothing, listentry)`,
	}
	if got := le.Error(); got != strings.Join(want, "\n") {
		t.Fatalf("issues:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
