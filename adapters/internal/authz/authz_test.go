package authz_test

import (
	"strings"
	"testing"

	"github.com/sidemix/sidemix/adapters/internal/authz"
	"github.com/sidemix/sidemix/adapters/template"
)

var inst = &template.Authorization{
	Name: "authz",
	Subject: template.Subject{
		User:       "cluster.local/ns/default/sa/frontend",
		Groups:     []string{"admins", "dev"},
		Properties: map[string]any{"namespace": "default", "version": "v1", "replicas": int64(3)},
	},
	Action: template.Action{
		Namespace:  "default",
		Service:    "web",
		Method:     "GET",
		Path:       "/api/books",
		Properties: map[string]any{"version": "v1"},
	},
}

func TestEval(t *testing.T) {
	bare := &template.Authorization{}
	tests := []struct {
		expr string
		in   *template.Authorization
		want bool
		err  bool
	}{
		{expr: "action.path.startsWith('/api')", in: inst, want: true},
		{expr: "action.path.startsWith('/admin')", in: inst, want: false},
		{expr: "'admins' in subject.groups", in: inst, want: true},
		{expr: "'root' in subject.groups", in: inst, want: false},
		{expr: "action.properties['version'] == 'v1'", in: inst, want: true},
		{expr: "subject.properties['replicas'] > 2", in: inst, want: true},
		{expr: "subject.user.endsWith('/sa/frontend') && action.method in ['GET', 'HEAD']", in: inst, want: true},
		{expr: "action.service == 'web' && action.namespace == 'default'", in: inst, want: true},
		{expr: "has(subject.user)", in: inst, want: true},
		{expr: "has(subject.user)", in: bare, want: false},
		{expr: "size(subject.groups) == 0", in: bare, want: true},
		{expr: "'admins' in subject.groups", in: bare, want: false},
		{expr: "'version' in action.properties", in: bare, want: false},
		{expr: "subject.properties[?'namespace'].orValue('') == 'default'", in: inst, want: true},
		{expr: "subject.properties[?'namespace'].orValue('none') == 'none'", in: bare, want: true},
		{expr: "action.path.split('/').size() == 3", in: inst, want: true},
		{expr: "action.properties['missing'] == 'x'", in: inst, err: true},
	}
	for _, tt := range tests {
		p, err := authz.Compile(tt.expr)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.expr, err)
			continue
		}
		got, err := p.Eval(authz.NewVars(tt.in))
		if (err != nil) != tt.err {
			t.Errorf("Eval(%q) error = %v, want error %v", tt.expr, err, tt.err)
			continue
		}
		if got != tt.want {
			t.Errorf("Eval(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ expr, want string }{ // want: the message's start
		{"", "empty expression"},
		{"action.pth == '/'", "ERROR: <input>:1:7: undefined field 'pth'"},
		{"request.path == '/'", "ERROR: <input>:1:1: undeclared reference to 'request'"},
		{"action.path", "expression has type string, want bool"},
		{"action.path == 1", "ERROR: <input>:1:13: found no matching overload for '_==_' applied to '(string, int)'"},
		{"action.path ==", "ERROR: <input>:1:15: Syntax error: mismatched input '<EOF>' expecting "},
	}
	for _, tt := range tests {
		_, err := authz.Compile(tt.expr)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, tt.want) || tt.want == "" {
			t.Errorf("Compile(%q) error\n got: %s\nwant: %s", tt.expr, got, tt.want)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "web", true},
		{"web", "web", true},
		{"web", "web2", false},
		{"*-api", "books-api", true},
		{"*-api", "books-web", false},
		{"/books/*", "/books/1", true},
		{"/books/*", "/book", false},
		{"*/info", "/books/info", true},
	}
	for _, tt := range tests {
		if got := authz.Glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
	for _, p := range []string{"*", "a*", "*a", "abc"} {
		if err := authz.CheckGlob(p); err != nil {
			t.Errorf("CheckGlob(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "**", "*a*", "a*b", "a**"} {
		if err := authz.CheckGlob(p); err == nil {
			t.Errorf("CheckGlob(%q) accepted it", p)
		}
	}
}

func BenchmarkEval(b *testing.B) {
	p := authz.MustCompile("action.path.startsWith('/api') && 'admins' in subject.groups && action.properties['version'] == 'v1'")
	b.ReportAllocs()
	for b.Loop() {
		ok, err := p.Eval(authz.NewVars(inst))
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
