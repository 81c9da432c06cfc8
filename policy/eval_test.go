package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// evalExpr compiles one expression against the default manifest and runs
// it over bag, returning the native result and what it referenced.
func evalExpr(t *testing.T, text string, bag *attribute.Bag) (any, []attribute.Reference, error) {
	t.Helper()
	env, err := newEnv(attribute.DefaultManifest())
	if err != nil {
		t.Fatal(err)
	}
	c := &compiler{env: env, names: attribute.DefaultManifest().Names()}
	p, iss := c.compile(text, wantAny)
	if iss != nil {
		t.Fatalf("%s: %v", text, iss)
	}
	var refs attribute.Referenced
	a := getActivation(bag, &refs, 0)
	defer putActivation(a)
	v, err := p.eval(a)
	if err != nil {
		return nil, refs.List(), err
	}
	return native(v), refs.List(), nil
}

func testBag() *attribute.Bag {
	return attribute.NewBuilder(8).
		SetString(attribute.RequestPath, "/admin/users").
		SetString(attribute.RequestMethod, "GET").
		SetInt64(attribute.ResponseCode, 503).
		SetIP(attribute.SourceIP, netip.MustParseAddr("10.1.2.3")).
		SetStringMap(attribute.RequestHeaders, map[string]string{"x-user": "ann", "accept": "*/*"}).
		SetDuration(attribute.ResponseDuration, 1500*time.Millisecond).
		SetTime(attribute.RequestTime, time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)).
		SetBool(attribute.ConnectionMTLS, true).
		Build()
}

func TestHelpers(t *testing.T) {
	bag := testBag()
	cases := []struct {
		expr string
		want any
		err  string // substring of the evaluation error
	}{
		// match: Istio globs.
		{`match(request.path, "/admin*")`, true, ""},
		{`match(request.path, "*users")`, true, ""},
		{`match(request.path, "*")`, true, ""},
		{`match(request.path, "/admin")`, false, ""},
		{`match(request.path, "/admin/users")`, true, ""},
		{`match(request.path, "*admin")`, false, ""},
		// conditional: typed by its branches; the branch not taken may fail.
		{`conditional(request.method == "GET", "read", "write")`, "read", ""},
		{`conditional(response.code >= 500, 1, 0)`, int64(1), ""},
		{`conditional(true, "x", destination.name)`, "x", ""},
		{`conditional(false, "x", destination.name)`, nil, "no such attribute"},
		{`conditional(destination.port == 1, "x", "y")`, nil, "no such attribute"},
		// default: the fallback when the attribute (or key) is absent.
		{`default(destination.workload.name, "unknown")`, "unknown", ""},
		{`default(request.method, "unknown")`, "GET", ""},
		{`default(response.code, 200)`, int64(503), ""},
		{`default(destination.port, 80)`, int64(80), ""},
		{`default(request.headers["x-user"], "-")`, "ann", ""},
		{`default(request.headers["x-none"], "-")`, "-", ""},
		{`default(source.ip, ip("0.0.0.0")) == ip("10.1.2.3")`, true, ""},
		{`default(destination.ip, ip("0.0.0.0"))`, []byte{0, 0, 0, 0}, ""},
		{`default(default(destination.name, source.name), "none")`, "none", ""},
		// ip
		{`source.ip == ip("10.1.2.3")`, true, ""},
		{`ip("::ffff:10.1.2.3") == ip("10.1.2.3")`, true, ""},
		{`ip("fe80::1")`, netip.MustParseAddr("fe80::1").AsSlice(), ""},
		{`ip("10.1.2")`, nil, `ip("10.1.2"): not an IP address`},
		// validators return their argument.
		{`dnsName("reviews.default.svc.cluster.local")`, "reviews.default.svc.cluster.local", ""},
		{`dnsName("bad_name..local")`, nil, "invalid dnsName"},
		{`email("ann@example.com")`, "ann@example.com", ""},
		{`email("Ann <ann@example.com>")`, nil, "invalid email"},
		{`uri("https://example.com/a?b=c")`, "https://example.com/a?b=c", ""},
		{`uri("")`, nil, "invalid uri"},
		// CEL's own timestamp, durations.
		{`request.time == timestamp("2024-05-01T12:00:00Z")`, true, ""},
		{`response.duration > duration("1s")`, true, ""},
		{`response.duration`, 1500 * time.Millisecond, ""},
		{`request.time`, time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), ""},
		{`connection.mtls`, true, ""},
		{`request.headers`, map[string]string{"x-user": "ann", "accept": "*/*"}, ""},
		// ext strings
		{`request.path.lowerAscii().split("/")[1]`, "admin", ""},
	}
	for _, c := range cases {
		got, _, err := evalExpr(t, c.expr, bag)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err = %v, want %q", c.expr, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", c.want, c.want) {
			t.Errorf("%s = %T %v, want %T %v", c.expr, got, got, c.want, c.want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		s, p string
		want bool
	}{
		{"abc", "*", true}, {"", "*", true}, {"abc", "ab*", true}, {"abc", "*bc", true},
		{"abc", "abc", true}, {"abc", "b*", false}, {"abc", "*b", false}, {"abc", "a*c", false},
		{"a*c", "a*c", true}, // a "*" inside is a literal character
	} {
		if got := globMatch(c.s, c.p); got != c.want {
			t.Errorf("match(%q, %q) = %v", c.s, c.p, got)
		}
	}
}

func whole(name string, present bool) attribute.Reference {
	return attribute.Reference{Name: name, Present: present}
}

func key(name, k string, present bool) attribute.Reference {
	return attribute.Reference{Name: name, MapKey: k, HasKey: true, Present: present}
}

func TestReferencedAttributes(t *testing.T) {
	bag := testBag()
	h := attribute.RequestHeaders
	cases := []struct {
		expr string
		want []attribute.Reference
	}{
		{`request.path == "/x"`, []attribute.Reference{whole(attribute.RequestPath, true)}},
		{`request.headers["x-user"] == "ann"`, []attribute.Reference{key(h, "x-user", true)}},
		{`default(request.headers["x-other"], "") == ""`, []attribute.Reference{key(h, "x-other", false)}},
		{`"x-user" in request.headers`, []attribute.Reference{key(h, "x-user", true)}},
		{`"nope" in request.headers`, []attribute.Reference{key(h, "nope", false)}},
		{`has(request.headers.accept)`, []attribute.Reference{key(h, "accept", true)}},
		{`size(request.headers) > 1`, []attribute.Reference{whole(h, true)}},
		{`request.headers.exists(k, k == "accept")`, []attribute.Reference{whole(h, true)}},
		{`default(destination.name, "") == ""`, []attribute.Reference{whole(attribute.DestinationName, false)}},
		{`default(response.headers["a"], "") == ""`, []attribute.Reference{whole(attribute.ResponseHeaders, false)}},
		// && short-circuits: the right side is not looked at.
		{`request.method == "POST" && request.path == "/"`, []attribute.Reference{whole(attribute.RequestMethod, true)}},
	}
	for _, c := range cases {
		_, refs, _ := evalExpr(t, c.expr, bag)
		if fmt.Sprint(refs) != fmt.Sprint(c.want) {
			t.Errorf("%s: referenced %v, want %v", c.expr, refs, c.want)
		}
	}
}

const evalConfig = `
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny}
spec: {adapter: denier}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: user}
spec:
  template: listentry
  params: {value: 'request.headers["x-user"]'}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: srcip}
spec:
  template: listentry
  params: {value: source.ip}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: perpath}
spec:
  template: quota
  params:
    dimensions: {path: request.path, code: 'default(response.code, 0)'}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: latency}
spec:
  template: metric
  params:
    value: response.duration
    dimensions: {method: request.method}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: log}
spec:
  template: logentry
  params:
    severity: 'response.code >= 500 ? "error" : "info"'
    variables: {path: request.path, headers: request.headers, ip: source.ip}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: stamped}
spec:
  template: logentry
  params:
    timestamp: request.time
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: a-lists}
spec:
  match: request.path.startsWith("/admin")
  actions:
  - {handler: deny, instances: [user]}
  - {handler: sink, instances: [user, srcip]}
  requestHeaderOperations:
  - {name: x-user, values: ['request.headers["x-user"]', '"+"'], operation: REPLACE}
  - {name: cookie, operation: REMOVE}
  responseHeaderOperations:
  - {name: x-code, values: ['string(response.code)'], operation: APPEND}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: b-telemetry}
spec:
  actions:
  - {handler: sink, instances: [perpath, latency, log, stamped]}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: c-absent}
spec:
  match: destination.name == "x"
  actions:
  - {handler: deny, instances: [user]}
`

func loadEval(t testing.TB, now time.Time) *Snapshot {
	t.Helper()
	s, err := LoadSources(map[string][]byte{"eval.yaml": []byte(evalConfig)},
		Options{Adapters: testRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEvaluateCheck(t *testing.T) {
	s := loadEval(t, time.Time{})
	var refs attribute.Referenced
	res := s.Evaluate(testBag(), VarietyCheck, &refs)

	var got []string
	for _, a := range res.Actions {
		var ins []string
		for _, in := range a.Instances {
			le := in.(*template.ListEntry)
			ins = append(ins, le.Name+"="+le.Value)
		}
		got = append(got, a.Rule+"/"+a.Handler+"("+strings.Join(ins, ",")+")")
	}
	want := "a-lists/deny(user=ann) a-lists/sink(user=ann,srcip=10.1.2.3)"
	if strings.Join(got, " ") != want {
		t.Errorf("actions = %s, want %s", strings.Join(got, " "), want)
	}
	// The instance shared by two actions is built once.
	if res.Actions[0].Instances[0] != res.Actions[1].Instances[0] {
		t.Error("shared instance built twice")
	}
	ops := fmt.Sprint(res.RequestHeaderOperations, res.ResponseHeaderOperations)
	if wantOps := "[{x-user ann REPLACE} {x-user + APPEND} {cookie  REMOVE}] [{x-code 503 APPEND}]"; ops != wantOps {
		t.Errorf("header ops = %s, want %s", ops, wantOps)
	}
	// c-absent's match fails: no action, one error naming the rule.
	if len(res.Errors) != 1 {
		t.Fatalf("errors = %v", res.Errors)
	}
	e := res.Errors[0]
	if e.Rule != "c-absent" || e.Instance != "" || e.Field != "spec.match" || !strings.Contains(e.Error(), "no such attribute") {
		t.Errorf("error = %v", e)
	}
	var ee *EvalError
	if !errors.As(error(e), &ee) || errors.Unwrap(e) == nil {
		t.Error("EvalError does not unwrap")
	}
	wantRefs := []attribute.Reference{
		whole(attribute.DestinationName, false),
		key(attribute.RequestHeaders, "x-user", true),
		whole(attribute.RequestPath, true),
		whole(attribute.ResponseCode, true),
		whole(attribute.SourceIP, true),
	}
	if fmt.Sprint(refs.List()) != fmt.Sprint(wantRefs) {
		t.Errorf("referenced = %v\nwant %v", refs.List(), wantRefs)
	}

	// Without the header the listentry fails: both actions using it are
	// skipped with one error; the rule's header op on it is skipped too.
	bag := testBag().Builder().SetStringMap(attribute.RequestHeaders, map[string]string{}).Build()
	res = s.Evaluate(bag, VarietyCheck, nil)
	if len(res.Actions) != 0 {
		t.Errorf("actions = %+v", res.Actions)
	}
	var msgs []string
	for _, e := range res.Errors {
		msgs = append(msgs, e.Error())
	}
	wantMsgs := []string{
		`rule a-lists: instance user: spec.params.value: no such key: x-user`,
		`rule a-lists: spec.requestHeaderOperations[0].values[0]: no such key: x-user`,
		`rule c-absent: spec.match: no such attribute(s): destination.name`,
	}
	if strings.Join(msgs, "\n") != strings.Join(wantMsgs, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(wantMsgs, "\n"))
	}
	if fmt.Sprint(res.RequestHeaderOperations) != "[{cookie  REMOVE}]" {
		t.Errorf("request header ops = %v", res.RequestHeaderOperations)
	}
}

func TestEvaluateReportAndQuota(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := loadEval(t, now)
	bag := testBag()

	res := s.Evaluate(bag, VarietyQuota, nil)
	if len(res.Actions) != 1 || len(res.Actions[0].Instances) != 1 {
		t.Fatalf("quota actions = %+v", res.Actions)
	}
	q := res.Actions[0].Instances[0].(*template.Quota)
	if fmt.Sprint(q.Dimensions) != "map[code:503 path:/admin/users]" || q.Dimensions["code"] != int64(503) {
		t.Errorf("quota = %+v", q)
	}

	res = s.Evaluate(bag, VarietyReport, nil)
	if len(res.Errors) != 0 || len(res.Actions) != 1 {
		t.Fatalf("report = %+v", res)
	}
	ins := res.Actions[0].Instances
	if len(ins) != 3 {
		t.Fatalf("report instances = %d", len(ins))
	}
	m := ins[0].(*template.Metric)
	if m.Value != 1500*time.Millisecond || m.Dimensions.Map()["method"] != "GET" {
		t.Errorf("metric = %+v", m)
	}
	le := ins[1].(*template.LogEntry)
	if le.Severity != "error" || le.Variables.Map()["path"] != "/admin/users" ||
		le.Variables.Map()["headers"].(map[string]string)["x-user"] != "ann" ||
		template.FormatValue(le.Variables.Map()["ip"]) != "10.1.2.3" || !le.Timestamp.Equal(now) {
		t.Errorf("logentry = %+v", le)
	}
	st := ins[2].(*template.LogEntry)
	if st.Severity != "info" || !st.Timestamp.Equal(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("stamped = %+v", st)
	}
	// context.time is the default timestamp when present.
	ct := time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)
	res = s.Evaluate(bag.Builder().SetTime(attribute.ContextTime, ct).Build(), VarietyReport, nil)
	if le := res.Actions[0].Instances[1].(*template.LogEntry); !le.Timestamp.Equal(ct) {
		t.Errorf("timestamp = %v, want context.time", le.Timestamp)
	}

	// A metric whose value is absent is skipped, and so is its action.
	res = s.Evaluate(bag.Builder().Delete(attribute.ResponseDuration).Build(), VarietyReport, nil)
	if len(res.Actions) != 0 || len(res.Errors) != 1 || res.Errors[0].Instance != "latency" {
		t.Errorf("report without duration = %+v", res)
	}
}

func TestEvaluateConcurrent(t *testing.T) {
	s := loadEval(t, time.Unix(0, 0))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				path := fmt.Sprintf("/admin/%d/%d", g, i)
				bag := testBag().Builder().SetString(attribute.RequestPath, path).Build()
				var refs attribute.Referenced
				res := s.Evaluate(bag, Variety(i%3), &refs)
				if i%3 == int(VarietyCheck) && len(res.Actions) != 2 {
					t.Errorf("actions = %d", len(res.Actions))
					return
				}
				if i%3 == int(VarietyQuota) && res.Actions[0].Instances[0].(*template.Quota).Dimensions["path"] != path {
					t.Error("quota built from another bag")
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestEvaluateNilAndBadVariety(t *testing.T) {
	var s *Snapshot
	if res := s.Evaluate(testBag(), VarietyCheck, nil); len(res.Actions) != 0 {
		t.Fatal("nil snapshot matched")
	}
	s = loadEval(t, time.Time{})
	if res := s.Evaluate(nil, Variety(9), nil); len(res.Actions) != 0 {
		t.Fatal("bad variety matched")
	}
	// A nil bag is empty: every match over an attribute fails.
	res := s.Evaluate(nil, VarietyCheck, nil)
	if len(res.Actions) != 0 || len(res.Errors) != 2 {
		t.Fatalf("nil bag: %+v", res)
	}
}

// Instances whose map fields have the same entries share one map per
// evaluation (adapters only read it); the tracespan's conversion of bytes
// and durations to text happens on a copy, never on a map another
// instance holds.
func TestSharedMapsStayIntact(t *testing.T) {
	const cfg = `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: m1}
spec:
  template: metric
  params: {value: "1", dimensions: {ip: source.ip, code: response.code}}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: m2}
spec:
  template: metric
  params: {value: "2", dimensions: {ip: source.ip, code: response.code}}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: sp}
spec:
  template: tracespan
  params:
    traceId: '"0af7651916cd43dd8448eb211c80319c"'
    spanId: '"b7ad6b7169203331"'
    spanName: '"GET"'
    startTime: request.time
    endTime: request.time
    spanTags: {ip: source.ip, code: response.code}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: r}
spec:
  actions:
  - {handler: sink, instances: [m1, sp, m2]}
`
	s, err := LoadSources(map[string][]byte{"shared.yaml": []byte(cfg)}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	bag := testBag().Builder().SetTime(attribute.RequestTime, time.Unix(1, 0)).Build()
	res := s.Evaluate(bag, VarietyReport, nil)
	if len(res.Errors) != 0 || len(res.Actions) != 1 || len(res.Actions[0].Instances) != 3 {
		t.Fatalf("result %+v", res)
	}
	insts := res.Actions[0].Instances
	m1, m2, sp := insts[0].(*template.Metric), insts[2].(*template.Metric), insts[1].(*template.TraceSpan)
	wantDims := map[string]any{"ip": []byte{10, 1, 2, 3}, "code": int64(503)}
	for _, m := range []*template.Metric{m1, m2} {
		if !reflect.DeepEqual(m.Dimensions.Map(), wantDims) {
			t.Errorf("%s dimensions %v, want %v", m.Name, m.Dimensions, wantDims)
		}
	}
	if want := []template.SpanTag{{Key: "code", Value: int64(503)}, {Key: "ip", Value: "10.1.2.3"}}; !reflect.DeepEqual(sp.SpanTags, want) {
		t.Errorf("span tags %v, want %v", sp.SpanTags, want)
	}
	if m1.Value != int64(1) || m2.Value != int64(2) {
		t.Errorf("values %v %v", m1.Value, m2.Value)
	}
}

// TestMapKeptAcrossEvaluations: a map field whose values all repeat those
// of the last bag it was built for gets that bag's map again (adapters
// only read maps); a bag with any other value, or after a bag whose
// value was absent and failed the field midway, gets a map of its own (a
// copy of the last with the changed values set, when few changed), and no
// map handed out changes.
func TestMapKeptAcrossEvaluations(t *testing.T) {
	const cfg = `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: m}
spec:
  template: metric
  params: {value: "1", dimensions: {code: response.code, path: request.path, at: request.time, k1: '"x"', k2: '"y"'}}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: r}
spec:
  actions:
  - {handler: sink, instances: [m]}
`
	s, err := LoadSources(map[string][]byte{"kept.yaml": []byte(cfg)}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1, 0).UTC()
	bag := func(code int64, path string, t time.Time) *attribute.Bag {
		b := attribute.NewBuilder(3).SetInt64(attribute.ResponseCode, code).SetTime(attribute.RequestTime, t)
		if path != "" {
			b.SetString(attribute.RequestPath, path)
		}
		return b.Build()
	}
	type step struct {
		bag  *attribute.Bag
		want map[string]any // nil: the field fails
		same int            // the step whose map this one must be, -1: a new one
	}
	steps := []step{
		{bag(200, "/a", at), map[string]any{"code": int64(200), "path": "/a", "at": at}, -1},
		{bag(200, "/a", at), map[string]any{"code": int64(200), "path": "/a", "at": at}, 0},
		{bag(503, "/a", at), map[string]any{"code": int64(503), "path": "/a", "at": at}, -1},
		{bag(200, "/a", at), map[string]any{"code": int64(200), "path": "/a", "at": at}, -1},
		// request.path absent: the field fails after code took 503, so
		// the values recorded are 503 and the last bag's path, which the
		// next bag has: the map of step 3 (code 200) must not come back.
		{bag(503, "", at), nil, -1},
		{bag(503, "/a", at), map[string]any{"code": int64(503), "path": "/a", "at": at}, -1},
		{bag(503, "/a", at), map[string]any{"code": int64(503), "path": "/a", "at": at}, 5},
		{bag(503, "/a", at.Add(1)), map[string]any{"code": int64(503), "path": "/a", "at": at.Add(1)}, -1},
	}
	// A Sequence holds its activation (Evaluate's comes from a sync.Pool,
	// which may drop it between calls: always so, now and then, under the
	// race detector). Told that every attribute changed, it evaluates
	// each bag anew, as Evaluate does.
	q := s.NewSequence(VarietyReport)
	defer q.Close()
	all := []string{attribute.ResponseCode, attribute.RequestPath, attribute.RequestTime}
	var maps []template.Fields
	for i, st := range steps {
		res := q.Evaluate(st.bag, all)
		if st.want == nil {
			if len(res.Errors) == 0 {
				t.Fatalf("step %d: no error", i)
			}
			maps = append(maps, template.Fields{})
			continue
		}
		if len(res.Errors) != 0 || len(res.Actions) != 1 {
			t.Fatalf("step %d: result %+v", i, res)
		}
		m := res.Actions[0].Instances[0].(*template.Metric).Dimensions
		st.want["k1"], st.want["k2"] = "x", "y"
		if !reflect.DeepEqual(m.Map(), st.want) {
			t.Errorf("step %d: dimensions %v, want %v", i, m, st.want)
		}
		for j, prev := range maps {
			if prev.Len() == 0 {
				continue
			}
			same := prev.Same(m)
			if same != (j == st.same) {
				t.Errorf("step %d: map of step %d reused = %v", i, j, same)
			}
		}
		maps = append(maps, m)
	}
	// Maps handed out before are intact.
	for i, st := range steps {
		if st.want != nil && !reflect.DeepEqual(maps[i].Map(), st.want) {
			t.Errorf("step %d's map changed to %v", i, maps[i])
		}
	}
}
