package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/adapters/memquota"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// denyExample is the documented deny rule exactly as shipped, so the unit
// tests load the file users copy.
var denyExample = func() string {
	b, err := os.ReadFile("../examples/policies/deny-admin.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func pathBag(path string) *attribute.Bag {
	return attribute.NewBuilder(1).SetString(attribute.RequestPath, path).Build()
}

func TestDenyExample(t *testing.T) {
	s, err := LoadSources(map[string][]byte{"deny.yaml": []byte(denyExample)}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	var refs attribute.Referenced
	res := s.Evaluate(pathBag("/admin/users"), VarietyCheck, &refs)
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %v", res.Errors)
	}
	if len(res.Actions) != 1 {
		t.Fatalf("actions = %+v, want one", res.Actions)
	}
	a := res.Actions[0]
	if a.Rule != "no-admin" || a.Handler != "deny-admin" || len(a.Instances) != 1 {
		t.Fatalf("action = %+v", a)
	}
	if in, ok := a.Instances[0].(*template.CheckNothing); !ok || in.Name != "nothing" {
		t.Fatalf("instance = %#v", a.Instances[0])
	}
	if got := refs.List(); len(got) != 1 || got[0] != (attribute.Reference{Name: attribute.RequestPath, Present: true}) {
		t.Fatalf("referenced = %+v, want exactly request.path", got)
	}

	refs.Reset()
	res = s.Evaluate(pathBag("/hello"), VarietyCheck, &refs)
	if len(res.Actions) != 0 || len(res.Errors) != 0 {
		t.Fatalf("/hello: %+v", res)
	}
	// Report and quota evaluations have nothing to do with this rule and
	// look at nothing.
	refs.Reset()
	for _, v := range []Variety{VarietyReport, VarietyQuota} {
		if res := s.Evaluate(pathBag("/admin"), v, &refs); len(res.Actions) != 0 {
			t.Fatalf("variety %d: %+v", v, res)
		}
	}
	if refs.Len() != 0 {
		t.Fatalf("referenced %v for other varieties", refs.List())
	}

	hs := s.Handlers()
	if len(hs) != 1 || hs[0].Name != "deny-admin" || hs[0].Adapter != "denier" ||
		strings.Join(hs[0].Templates, ",") != "checknothing" {
		t.Fatalf("handlers = %+v", hs)
	}
	cfg, ok := hs[0].Params.(*denier.Config)
	if !ok || cfg.Message != "admin is closed" || cfg.Status != "PERMISSION_DENIED" {
		t.Fatalf("params = %#v", hs[0].Params)
	}
	if h, i, r := s.Counts(); h != 1 || i != 1 || r != 1 {
		t.Fatalf("counts = %d %d %d", h, i, r)
	}
}

func TestLoadFolder(t *testing.T) {
	s, err := Load([]string{"testdata/good"}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if h, i, r := s.Counts(); h != 2 || i != 3 || r != 3 {
		t.Fatalf("counts = %d %d %d", h, i, r)
	}
	if k, ok := s.Manifest().Kind("request.auth.claims.group"); !ok || k != attribute.KindString {
		t.Fatalf("manifest lacks the extension: %v %v", k, ok)
	}
	if _, ok := attribute.DefaultManifest().Kind("request.auth.claims.group"); ok {
		t.Fatal("the default manifest was changed")
	}
	var names []string
	for _, h := range s.Handlers() {
		names = append(names, h.Name+":"+strings.Join(h.Templates, "+"))
	}
	if got := strings.Join(names, " "); got != "deny-admin:checknothing sink:logentry+metric" {
		t.Fatalf("handlers = %s", got)
	}
	cfg := s.Handlers()[1].Params.(*testConfig)
	if cfg.Prefix != "mesh" || cfg.Timeout.String() != "2s" || len(cfg.Quotas) != 1 {
		t.Fatalf("sink params = %+v", cfg)
	}

	// The same content loaded again has the same digest; a change changes it.
	s2, err := Load([]string{"testdata/good/attributes.yaml", "testdata/good/policy.yaml", "testdata/good/telemetry"}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest() != s2.Digest() || len(s.Digest()) != 64 {
		t.Fatalf("digests %s %s", s.Digest(), s2.Digest())
	}
	files := readDir(t, "testdata/good")
	files["testdata/good/policy.yaml"] = append(files["testdata/good/policy.yaml"], '\n')
	s3, err := LoadSources(files, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if s3.Digest() == s.Digest() {
		t.Fatal("digest did not change")
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestLoadErrors pins every issue of each bad file, exactly: all issues of
// a load are reported at once, sorted by file and line.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"syntax.yaml", []string{
			"syntax.yaml:6: did not find expected node content",
		}},
		{"unknown-key.yaml", []string{
			"unknown-key.yaml:6: Handler/h: spec.params.sttus: unknown field",
			"unknown-key.yaml:10: Instance/i: metadata.owner: unknown field",
			"unknown-key.yaml:15: Instance/i: spec.params.values: unknown field",
			`unknown-key.yaml:23: Handler/s: spec.params.timeout: cannot decode a string ("soon") into time.Duration`,
			"unknown-key.yaml:26: Handler/s: spec.params.quotas[1].burst: unknown field",
		}},
		{"validate.yaml", []string{
			"validate.yaml:7: Handler/s: spec.params.quotas[0].maxAmount: 0 is not positive",
			"validate.yaml:7: Handler/s: spec.params: timeout is negative", // no key path: the params' line
			"validate.yaml:8: Handler/s: spec.params.quotas[2].maxAmount: -1 is not positive",
			"validate.yaml:10: Handler/s: spec.params.sttus: unknown field",
			`validate.yaml:17: Handler/d: spec.params.status: "OK" would allow, not deny`,
		}},
		{"cel.yaml", []string{
			"cel.yaml:5: Rule/r: spec.match: ERROR: <input>:1:14: found no matching overload for '_==_' applied to '(string, int)'",
			`cel.yaml:7: Rule/r: spec.actions[0].handler: handler "deny" not found`,
			`cel.yaml:7: Rule/r: spec.actions[0].instances[0]: instance "nothing" not found`,
			"cel.yaml:13: Rule/no-admin: spec.match: ERROR: <input>:1:8: undeclared reference to 'request.pth' (did you mean 'request.path'?)",
			`cel.yaml:15: Rule/no-admin: spec.actions[0].handler: handler "deny" not found`,
			`cel.yaml:15: Rule/no-admin: spec.actions[0].instances[0]: instance "nothing" not found`,
			"cel.yaml:23: Instance/m: spec.params.value: expression has type string, want int, double or duration",
			"cel.yaml:25: Instance/m: spec.params.dimensions.headers: expression has type map(string, string), want a scalar (not a map or list)",
			"cel.yaml:26: Instance/m: spec.params.dimensions.ok: ERROR: <input>:1:8: found no matching overload for 'default' applied to '(int, string)'",
			"cel.yaml:34: Rule/multi: spec.match: ERROR: <input>:2:14: found no matching overload for '_>_' applied to '(int, string)'",
			"cel.yaml:36: Rule/multi: spec.requestHeaderOperations[0].values[0]: expression has type int, want string",
		}},
		{"refs.yaml", []string{
			`refs.yaml:24: Rule/r: spec.actions[0].handler: handler "nope" not found`,
			`refs.yaml:27: Rule/r: spec.actions[1].instances[1]: instance "missing" not found`,
			`refs.yaml:27: Rule/r: spec.actions[1].instances[2]: handler "deny" (adapter denier) does not accept template "metric" (accepts checknothing, listentry)`,
			"refs.yaml:28: Rule/r: spec.actions[2].instances: required: the instances to send to the handler",
		}},
		{"kinds.yaml", []string{
			`kinds.yaml:1: Rule/empty: apiVersion: unknown apiVersion "sidemix.dev/v2" (want sidemix.dev/v1)`,
			"kinds.yaml:4: Rule/empty: spec.actions: a rule needs at least one action or header operation",
			`kinds.yaml:7: Widget/w: kind: unknown kind "Widget" (want one of AttributeManifest, Handler, Instance, Rule, QuotaSpec, QuotaSpecBinding)`,
			"kinds.yaml:12: Instance/: metadata.name: required",
			`kinds.yaml:22: Instance/nothing: metadata.name: Instance "nothing" already defined at kinds.yaml:17`,
			`kinds.yaml:28: Handler/fancy: spec.adapter: unknown adapter "redis" (registered: denier, sink)`,
			`kinds.yaml:33: Instance/t: spec.template: unknown template "tracing" (want one of checknothing, listentry, authorization, quota, metric, logentry, tracespan, otlp)`,
			`kinds.yaml:40: AttributeManifest/clash: spec.attributes.request.path: attribute "request.path" is already declared as STRING, not INT64`,
			`kinds.yaml:41: AttributeManifest/clash: spec.attributes.x.y.valueType: unknown attribute type "NUMBER" (want one of STRING, INT64, DOUBLE, BOOL, TIMESTAMP, DURATION, BYTES, STRING_MAP, IP_ADDRESS)`,
			"kinds.yaml:43: a document must be a mapping with apiVersion, kind, metadata and spec",
		}},
		{"rule-fields.yaml", []string{
			`rule-fields.yaml:15: Rule/sometimes: spec.failPolicy: unknown fail policy "sometimes" (want open or closed)`,
			`rule-fields.yaml:22: Rule/maybe: spec.shadow: want a boolean, got a string ("maybe")`,
			`rule-fields.yaml:23: Rule/maybe: spec.failPolicy: want a name (a string)`,
		}},
		{"quotaspec.yaml", []string{
			`quotaspec.yaml:34: QuotaSpec/bad: spec.rules[0].match[0].clause.request.path.regex: invalid RE2 regex: missing closing ): "/api/(v1"`,
			`quotaspec.yaml:35: QuotaSpec/bad: spec.rules[0].match[0].clause.request.pth: unknown attribute "request.pth" (did you mean "request.path"?)`,
			`quotaspec.yaml:36: QuotaSpec/bad: spec.rules[0].match[0].clause.request.headers: attribute "request.headers" is STRING_MAP: match one key, as request.headers[key]`,
			`quotaspec.yaml:37: QuotaSpec/bad: spec.rules[0].match[0].clause.request.headers[x-user]: want exactly one of exact, prefix or regex`,
			`quotaspec.yaml:38: QuotaSpec/bad: spec.rules[0].match[0].clause.response.code: attribute "response.code" is INT64: clauses match STRING attributes and keys of STRING_MAP ones`,
			`quotaspec.yaml:39: QuotaSpec/bad: spec.rules[0].match[0].clause.source.labels[app].suffix: unknown field`,
			`quotaspec.yaml:39: QuotaSpec/bad: spec.rules[0].match[0].clause.source.labels[app]: want exactly one of exact, prefix or regex`,
			`quotaspec.yaml:41: QuotaSpec/bad: spec.rules[0].quotas[0].charge: must be positive, got 0`,
			`quotaspec.yaml:42: QuotaSpec/bad: spec.rules[0].quotas[1].quota: quota instance "missing" not found`,
			`quotaspec.yaml:43: QuotaSpec/bad: spec.rules[0].quotas[2].quota: instance "nothing" is of template "checknothing", not quota`,
			`quotaspec.yaml:44: QuotaSpec/bad: spec.rules[0].quotas[3].quota: quota instance "unsent" is sent to a handler by no rule`,
			`quotaspec.yaml:45: QuotaSpec/bad: spec.rules[0].quotas[4].quota: required: the name of a quota instance`,
			`quotaspec.yaml:46: QuotaSpec/bad: spec.rules[1].quotas: required: the quotas the matching requests draw on`,
			`quotaspec.yaml:47: QuotaSpec/bad: spec.rules[2].quotas[0].amount: unknown field`,
			`quotaspec.yaml:53: QuotaSpecBinding/missing-spec: spec.services[1].name: required: a destination.service.name`,
			`quotaspec.yaml:56: QuotaSpecBinding/missing-spec: spec.quotaSpecs[1].name: QuotaSpec "request-count" not found`,
			`quotaspec.yaml:57: QuotaSpecBinding/missing-spec: spec.quotaSpecs[2].namespace: QuotaSpec "bad" is in namespace "default", not "other"`,
			`quotaspec.yaml:62: QuotaSpecBinding/empty: spec.services: required: the services whose requests draw on the specs`,
			`quotaspec.yaml:62: QuotaSpecBinding/empty: spec.quotaSpecs: required: the QuotaSpecs the services draw on`,
		}},
		{"tracespan.yaml", []string{
			"tracespan.yaml:7: Instance/bad: spec.params.spanName: required",
			"tracespan.yaml:7: Instance/bad: spec.params.traceId: expression has type int, want string",
			"tracespan.yaml:9: Instance/bad: spec.params.startTime: expression has type string, want timestamp",
			"tracespan.yaml:10: Instance/bad: spec.params.endTime: expression has type duration, want timestamp",
			"tracespan.yaml:11: Instance/bad: spec.params.spanKind: expression has type bool, want string",
			"tracespan.yaml:12: Instance/bad: spec.params.httpStatusCode: expression has type string, want int",
			"tracespan.yaml:13: Instance/bad: spec.params.sampled: unknown field",
			"tracespan.yaml:15: Instance/bad: spec.params.spanTags.headers: expression has type map(string, string), want a scalar (not a map or list)",
			"tracespan.yaml:21: Instance/no-params: spec.params.traceId: required",
			"tracespan.yaml:21: Instance/no-params: spec.params.spanId: required",
			"tracespan.yaml:21: Instance/no-params: spec.params.spanName: required",
			"tracespan.yaml:21: Instance/no-params: spec.params.startTime: required",
			"tracespan.yaml:21: Instance/no-params: spec.params.endTime: required",
			`tracespan.yaml:34: Instance/literals: spec.params.spanKind: "sever" is not one of server, client, producer, consumer, internal`,
		}},
		{"otlp.yaml", []string{
			"otlp.yaml:17: Instance/with-params: spec.params.spanName: unknown field",
			`otlp.yaml:23: Rule/per-span: spec.match: reads span.name, but the rule sends otlp instance "raw": it decides once per resource of an OTLP export, before any span or log record is decoded, and may read only context.protocol, source.workload.name, source.workload.namespace`,
			`otlp.yaml:33: Rule/defaulted: spec.match: reads request.path, but the rule sends otlp instance "raw": it decides once per resource of an OTLP export, before any span or log record is decoded, and may read only context.protocol, source.workload.name, source.workload.namespace`,
			`otlp.yaml:50: Instance/metrics: spec.params.signal: unknown signal "metrics" (want traces or logs; empty takes both)`,
		}},
		{"shapes.yaml", []string{
			`shapes.yaml:4: Rule/r: spec.actions: want a list, got a string ("deny")`,
			`shapes.yaml:9: Instance/m: spec.params.dimensions.a: want a CEL expression (a string)`,
			`shapes.yaml:15: Rule/h: spec.requestHeaderOperations[0].operation: unknown operation "DELETE" (want REPLACE, REMOVE or APPEND)`,
			`shapes.yaml:16: Rule/h: spec.requestHeaderOperations[1].values: required for APPEND`,
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata/errors", c.file))
			if err != nil {
				t.Fatal(err)
			}
			s, err := LoadSources(map[string][]byte{c.file: b}, Options{Adapters: testRegistry()})
			if s != nil {
				t.Fatal("a failed load returned a snapshot")
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want *LoadError", err)
			}
			got := strings.Split(le.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("issues:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			for _, is := range le.Issues {
				if is.File != c.file || is.Line == 0 {
					t.Errorf("issue without file:line: %+v", is)
				}
			}
		})
	}
}

// TestLoadErrorsAcrossFiles checks that one load reports the issues of all
// its files, sorted by file then line, and that Load names missing paths.
func TestLoadErrorsAcrossFiles(t *testing.T) {
	_, err := Load([]string{"testdata/errors/refs.yaml", "testdata/errors/cel.yaml", "testdata/nope"}, Options{Adapters: testRegistry()})
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v", err)
	}
	var files []string
	for _, is := range le.Issues {
		if len(files) == 0 || files[len(files)-1] != is.File {
			files = append(files, is.File)
		}
	}
	if got := strings.Join(files, " "); got != "testdata/errors/cel.yaml testdata/errors/refs.yaml testdata/nope" {
		t.Fatalf("files in order: %s\n%v", got, err)
	}
	if !strings.Contains(err.Error(), "testdata/nope: stat testdata/nope: no such file or directory") {
		t.Fatalf("missing path not reported:\n%v", err)
	}
}

func TestEmptyAndCommentDocuments(t *testing.T) {
	src := "# nothing here\n---\n---\n" + denyExample + "---\n# trailing\n"
	s, err := LoadSources(map[string][]byte{"a.yaml": []byte(src), "empty.yaml": nil}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, r := s.Counts(); r != 1 {
		t.Fatalf("rules = %d", r)
	}
}

func TestView(t *testing.T) {
	s, err := Load([]string{"testdata/good"}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	v := s.View().(*ConfigView)
	if v.Digest != s.Digest() || len(v.Handlers) != 2 || len(v.Instances) != 3 || len(v.Rules) != 3 {
		t.Fatalf("view = %+v", v)
	}
	if v.Attributes["request.auth.level"] != "INT64" {
		t.Fatalf("attributes = %v", v.Attributes)
	}
	h := v.Handlers[0]
	if h.Name != "deny-admin" || h.Namespace != "shop" || h.Source != "testdata/good/policy.yaml:3" ||
		h.Params.(map[string]any)["message"] != "admin is closed" {
		t.Fatalf("handler view = %+v", h)
	}
	r := v.Rules[0]
	if r.Name != "no-admin" || !strings.HasPrefix(r.Match, "request.path.startsWith") ||
		len(r.Actions) != 1 || r.Actions[0].Handler != "deny-admin" || r.Actions[0].Instances[0] != "nothing" {
		t.Fatalf("rule view = %+v", r)
	}
	if ops := v.Rules[1].RequestHeaderOperations; len(ops) != 2 || ops[1].Operation != "REMOVE" {
		t.Fatalf("header ops view = %+v", ops)
	}
	if _, err := json.Marshal(v); err != nil {
		t.Fatal(err)
	}
	if _, err := yaml.Marshal(v); err != nil {
		t.Fatal(err)
	}
}

// TestAttributeManifest checks that declared attributes are variables of
// their type in every expression.
func TestAttributeManifest(t *testing.T) {
	s, err := Load([]string{"testdata/good"}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	admin := pathBag("/admin/x").Builder().SetString("request.auth.claims.group", "admins").SetInt64("request.auth.level", 3).Build()
	var refs attribute.Referenced
	res := s.Evaluate(admin, VarietyCheck, &refs)
	if len(res.Actions) != 0 || len(res.Errors) != 0 {
		t.Fatalf("admins were denied: %+v", res)
	}
	if got := fmt.Sprint(res.ResponseHeaderOperations); got != "[{x-level 3 APPEND}]" {
		t.Fatalf("response ops = %s", got)
	}
	if got := fmt.Sprint(refs.List()); got != "[{request.auth.claims.group  false true} {request.auth.level  false true} {request.path  false true}]" {
		t.Fatalf("referenced = %s", got)
	}
	res = s.Evaluate(pathBag("/admin/x"), VarietyCheck, nil)
	if len(res.Actions) != 1 || fmt.Sprint(res.ResponseHeaderOperations) != "[{x-level 0 APPEND}]" {
		t.Fatalf("others: %+v", res)
	}

	// Without the manifest the same rule does not compile.
	files := readDir(t, "testdata/good")
	delete(files, "testdata/good/attributes.yaml")
	_, err = LoadSources(files, Options{Adapters: testRegistry()})
	want := "testdata/good/policy.yaml:20: Rule/no-admin: spec.match: ERROR: <input>:1:53: undeclared reference to 'request.auth'"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v\nwant prefix %s", err, want)
	}

	// A base manifest passed in Options is the starting vocabulary.
	base := attribute.NewManifest(map[string]attribute.Kind{attribute.RequestPath: attribute.KindString})
	_, err = LoadSources(map[string][]byte{"d.yaml": []byte(denyExample)}, Options{Adapters: testRegistry(), Manifest: base})
	if err != nil {
		t.Fatal(err)
	}
}

// TestQuotaInstanceWithoutLimit: a rule that sends a quota instance to a
// quota handler with no quota of that name is an error at the rule, not an
// allocation failure at run time.
func TestQuotaInstanceWithoutLimit(t *testing.T) {
	const src = `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: limits}
spec:
  adapter: memquota
  params:
    quotas:
    - {name: requestcount, maxAmount: 10, validDuration: 1s}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: request-quota}
spec:
  template: quota
  params:
    dimensions: {destination: destination.service.name}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: limit}
spec:
  actions:
  - handler: limits
    instances: [request-quota]
`
	reg, err := adapters.NewRegistry(memquota.Factory())
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadSources(map[string][]byte{"quota.yaml": []byte(src)}, Options{Adapters: reg})
	want := `quota.yaml:24: Rule/limit: spec.actions[0].instances[0]: handler "limits" has no quota named "request-quota" (its quotas: requestcount)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("load error = %v\nwant it to contain %s", err, want)
	}
}
