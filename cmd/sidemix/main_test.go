package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/attribute"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestTopLevelHelpListsCommands(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "help"} {
		stdout, _, code := runCmd(t, arg)
		if code != 0 {
			t.Errorf("sidemix %s: exit %d", arg, code)
		}
		for _, c := range commands {
			if !strings.Contains(stdout, "  "+c.name+" ") {
				t.Errorf("sidemix %s does not list %s:\n%s", arg, c.name, stdout)
			}
		}
	}
	if _, stderr, code := runCmd(t); code != 2 || !strings.Contains(stderr, "Commands:") {
		t.Errorf("sidemix with no command: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := runCmd(t, "frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, stderr)
	}
}

// Every sub-command's --help prints its usage with every flag.
func TestCommandHelpListsEveryFlag(t *testing.T) {
	want := map[string][]string{
		"mixer":    {"-config", "-grpc", "-admin", "-check-timeout", "-log-level", "-log-format", "-gc-percent", "-memory-limit"},
		"proxy":    {"-service", "-namespace", "-inbound", "-app", "-outbound", "-upstreams", "-mixer", "-check-fail-policy", "-check-timeout", "-report-batch-size", "-report-interval", "-cache-size", "-admin", "-log-level"},
		"validate": {"sidemix validate PATH..."},
		"check":    {"-mixer", "-a name=value", "-quota", "-timeout"},
		"report":   {"-mixer", "-a name=value", "-count"},
		"version":  {"sidemix version"},
	}
	for _, c := range commands {
		flags, ok := want[c.name]
		if !ok {
			t.Errorf("no expectations for command %s", c.name)
			continue
		}
		stdout, stderr, code := runCmd(t, c.name, "--help")
		if code != 0 || stderr != "" {
			t.Errorf("sidemix %s --help: exit %d, stderr %q", c.name, code, stderr)
		}
		if !strings.HasPrefix(stdout, "Usage:\n") {
			t.Errorf("sidemix %s --help does not start with Usage:\n%s", c.name, stdout)
		}
		for _, f := range flags {
			if !strings.Contains(stdout, f) {
				t.Errorf("sidemix %s --help lacks %q:\n%s", c.name, f, stdout)
			}
		}
		// `sidemix help CMD` is the same.
		if again, _, _ := runCmd(t, "help", c.name); again != stdout {
			t.Errorf("sidemix help %s differs from sidemix %s --help", c.name, c.name)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"mixer"}, "--config is required"},
		{[]string{"mixer", "--config", "x", "--log-level", "loud"}, "--log-level"},
		{[]string{"mixer", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"mixer", "--config", "x", "--gc-percent", "200", "--memory-limit", "lots"}, "--memory-limit"},
		{[]string{"proxy", "--app", "127.0.0.1:1"}, "--service is required"},
		{[]string{"proxy", "--service", "web"}, "--app is required"},
		{[]string{"proxy", "--service", "web", "--app", "127.0.0.1:1", "--check-fail-policy", "maybe"}, "--check-fail-policy"},
		{[]string{"proxy", "--service", "web", "--app", "127.0.0.1:1", "--outbound", "127.0.0.1:0", "--upstreams", "invoice"}, "not name=value"},
		{[]string{"proxy", "--service", "web", "--app", "127.0.0.1:1", "--labels", "version"}, "--labels: \"version\" is not name=value"},
		{[]string{"proxy", "--service", "web", "--app", "127.0.0.1:1", "--upstreams", "a=127.0.0.1:1"}, "--upstreams needs --outbound"},
		{[]string{"validate"}, "no PATH given"},
		{[]string{"check", "-a", "response.code=abc"}, "response.code"},
		{[]string{"check", "-a", "novalue"}, "want name=value"},
		{[]string{"check", "--quota", "q=zero", "-a", "request.path=/"}, "--quota"},
	}
	for _, c := range cases {
		_, stderr, code := runCmd(t, c.args...)
		if code != 2 {
			t.Errorf("sidemix %v: exit %d, want 2 (stderr %q)", c.args, code, stderr)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("sidemix %v: stderr %q does not contain %q", c.args, stderr, c.want)
		}
	}
}

func TestParseAttributes(t *testing.T) {
	bag, err := parseAttributes(attribute.DefaultManifest(), []string{
		"request.path=/a=b",
		"response.code=404",
		"response.duration=1.5s",
		"connection.mtls=true",
		"source.ip=10.1.2.3",
		"request.time=2025-01-02T03:04:05Z",
		"request.headers=x-user:alice;accept:*/*",
		"request.headers[x-trace]=t1",
		"my.custom=thing",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := bag.String("request.path"); s != "/a=b" {
		t.Errorf("request.path = %q", s)
	}
	if n, _ := bag.Int64("response.code"); n != 404 {
		t.Errorf("response.code = %d", n)
	}
	if d, _ := bag.Duration("response.duration"); d != 1500*time.Millisecond {
		t.Errorf("response.duration = %v", d)
	}
	if b, ok := bag.Bool("connection.mtls"); !ok || !b {
		t.Errorf("connection.mtls = %v, %v", b, ok)
	}
	if ip, _ := bag.IP("source.ip"); ip.String() != "10.1.2.3" {
		t.Errorf("source.ip = %v", ip)
	}
	if tm, _ := bag.Time("request.time"); !tm.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("request.time = %v", tm)
	}
	h, _ := bag.StringMap("request.headers")
	if h["x-user"] != "alice" || h["accept"] != "*/*" || h["x-trace"] != "t1" {
		t.Errorf("request.headers = %v", h)
	}
	if s, _ := bag.String("my.custom"); s != "thing" {
		t.Errorf("undeclared attribute = %q, want a string", s)
	}
	if _, err := parseAttributes(attribute.DefaultManifest(), []string{"response.code[x]=1"}); err == nil {
		t.Error("map key on an INT64 attribute accepted")
	}
}

func TestVersion(t *testing.T) {
	stdout, _, code := runCmd(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "sidemix ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
	old := version
	version = "v1.2.3"
	defer func() { version = old }()
	if stdout, _, _ := runCmd(t, "--version"); !strings.HasPrefix(stdout, "sidemix v1.2.3 (") {
		t.Errorf("--version with an ldflags version: %q", stdout)
	}
}

// The shipped examples load with the shipped adapters.
func TestValidateExamples(t *testing.T) {
	root := filepath.Join("..", "..", "examples")
	stdout, stderr, code := runCmd(t, "validate",
		filepath.Join(root, "default"), filepath.Join(root, "policies"), filepath.Join(root, "demo", "policy"))
	if code != 0 {
		t.Fatalf("validate examples: exit %d\n%s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "ok: ") || !strings.Contains(stdout, "handlers") || !strings.Contains(stdout, "rules") {
		t.Errorf("validate summary %q", stdout)
	}
}

func TestValidateReportsEveryIssue(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "apiVersion: sidemix.dev/v1\nkind: Handler\nmetadata: {name: h}\nspec:\n  adapter: denier\n  params: {sttus: X}\n")
	write("b.yaml", "apiVersion: sidemix.dev/v1\nkind: Rule\nmetadata: {name: r}\nspec:\n  match: request.pth == \"/\"\n")
	_, stderr, code := runCmd(t, "validate", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var issues []string
	for _, l := range lines {
		if strings.Contains(l, ".yaml:") {
			issues = append(issues, l)
		}
	}
	if len(issues) < 2 {
		t.Fatalf("want an issue per file, got:\n%s", stderr)
	}
	if !strings.Contains(stderr, "a.yaml:6: Handler/h: spec.params.sttus") {
		t.Errorf("no a.yaml:6 issue for the unknown key:\n%s", stderr)
	}
	if !strings.Contains(stderr, "b.yaml:5: Rule/r: spec.match") {
		t.Errorf("no b.yaml:5 issue for the undeclared attribute:\n%s", stderr)
	}
}
