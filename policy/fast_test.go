package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/sidemix/sidemix/attribute"
)

// fastExprs are expressions the fast path takes over; slowExprs stay on
// CEL. Both are evaluated, in any order, through one activation below.
var (
	fastExprs = []string{
		`destination.workload.name`,
		`request.path`,
		`request.method`,
		`response.code`,
		`request.size`,
		`source.ip`,
		`request.time`,
		`response.duration`,
		`connection.mtls`,
		`request.headers["x-user"]`,
		`request.headers["accept"]`,
		`request.headers["absent"]`,
		`request.headers[""]`,
		`destination.labels["app"]`,
		`default(destination.workload.name, "unknown")`,
		`default(response.code, 200)`,
		`default(request.size, -1)`,
		`default(request.headers["x-user"], "-")`,
		`default(request.headers["absent"], "")`,
		`default(destination.labels["app"], "none")`,
		`default(source.ip, b"\x00\x00\x00\x00")`,
		`default(connection.mtls, false)`,
		`"1"`,
		`1`,
		`-3`,
		`2.5`,
		`true`,
		`b"ab"`,
		`null`,
		`1u`,
		// compound expressions (fastTree)
		`default(default(request.path, "a"), "b")`,
		`default(request.path, request.method)`,
		`conditional(default(context.reporter.kind, "inbound") == "outbound", "source", "destination")`,
		`request.path + "x"`,
		`default(response.duration, duration("1s"))`,
		`conditional(default(context.reporter.kind, "inbound") == "outbound", "unknown", conditional(default(connection.mtls, false), "mutual_tls", "none"))`,
		`conditional(default(response.code, 200) >= 500, "error", "info")`,
		`default(request.method, "GET") + " " + default(request.path, "/")`,
		`!(default(context.reporter.kind, "http") in ["tcp", "otlp"]) && !match(default(request.method, "-"), "x-*")`,
		`context.reporter.kind == "outbound"`,
		`context.reporter.kind != "outbound"`,
		`response.code >= 500 || request.size > 10`,
		`response.code < 300 && request.path != "/a"`,
		`request.size <= 500 && response.code > 300 || connection.mtls`,
		`request.headers["x-user"] == "a" || connection.mtls`,
		`connection.mtls && request.headers["x-user"] == "a"`,
		`response.duration > duration("1s")`,
		`request.time <= request.time`,
		`!connection.mtls`,
		`conditional(connection.mtls, request.path, request.method)`,
		`conditional(connection.mtls, request.headers["x-user"], "none")`,
		`match(request.path, "/a*")`,
		`match(default(request.headers["accept"], ""), "*")`,
		`request.path in ["/a", "/web-v1"]`,
		`default(request.headers["x-user"], request.method) + "!"`,
		`request.path + request.method + "-" + default(request.headers["x-user"], "") + request.path`,
		`default(request.method + request.path + "/", "none")`,
		`default(request.size, default(response.code, 0))`,
		`default(response.duration, default(response.duration, duration("0s")))`,
		`default(request.time, request.time)`,
		`request.headers["x-user"] + default(request.path, "") + request.method`,
		`default(request.path + request.method, "none")`,
		`default(response.code == 200, false)`,
		`default(request.headers["absent"], default(request.headers["x-user"], "anon"))`,
		// default() over concatenations (fastNode.stringRaw)
		`default(destination.workload.name, default(request.method, "GET") + " " + default(request.path, "/"))`,
		`default(request.path + "x", request.method)`,
		`default(default(request.method, "") + request.path, default(destination.workload.name, "x") + "y")`,
		`default(destination.workload.name, default(request.path + "x", "/" + request.method))`,
		`default(request.headers["absent"], request.path + "x")`,
	}
	slowExprs = []string{
		`request.headers`,
		`destination.labels`,
		`request.headers.accept`,
		`has(request.headers.accept)`,
		`"x-user" in request.headers`,
		`default(source.ip, ip("0.0.0.0"))`,
		`default(request.headers, {"a": "b"})`,
		`size(request.headers)`,
		`request.headers[request.method]`,
		`[1, 2]`,
		`request.size + 1 > 2`,
		`response.code in [200, 201]`,
		`request.path.startsWith("/a")`,
		`conditional(connection.mtls, ip("1.2.3.4"), source.ip)`,
	}
)

// fastCase is one expression compiled twice: with the fast path and
// without it.
type fastCase struct {
	text      string
	fast, cel *program
}

func compileFastCases(t testing.TB) []fastCase {
	t.Helper()
	env, err := newEnv(attribute.DefaultManifest())
	if err != nil {
		t.Fatal(err)
	}
	c := &compiler{env: env, names: attribute.DefaultManifest().Names()}
	var out []fastCase
	for i, text := range append(append([]string(nil), fastExprs...), slowExprs...) {
		p, iss := c.compile(text, wantAny)
		if iss != nil {
			t.Fatalf("%s: %v", text, iss)
		}
		if wantFast := i < len(fastExprs); (p.fast != nil) != wantFast {
			t.Fatalf("%s: fast path = %v, want %v", text, p.fast != nil, wantFast)
		}
		slow := *p
		slow.fast = nil
		out = append(out, fastCase{text: text, fast: p, cel: &slow})
	}
	return out
}

// fastBags are bags with the attributes present, absent, and of another
// kind than the manifest declares.
func fastBags() map[string]*attribute.Bag {
	full := testBag().Builder().
		SetString(attribute.DestinationWorkloadName, "web-v1").
		SetInt64(attribute.RequestSize, 42).
		SetStringMap(attribute.DestinationLabels, map[string]string{"app": "web"}).
		Build()
	return map[string]*attribute.Bag{
		"full":  full,
		"empty": attribute.NewBuilder(0).Build(),
		"no keys": attribute.NewBuilder(2).
			SetStringMap(attribute.RequestHeaders, map[string]string{"accept": ""}).
			SetStringMap(attribute.DestinationLabels, nil).
			Build(),
		"wrong kinds": attribute.NewBuilder(4).
			SetString(attribute.RequestHeaders, "x-user: ann").
			SetString(attribute.ResponseCode, "200").
			SetStringMap(attribute.DestinationWorkloadName, map[string]string{"x-user": "ann"}).
			SetInt64(attribute.SourceIP, 7).
			Build(),
	}
}

// fastOutcome is what one evaluation produced, comparable across paths.
type fastOutcome struct {
	typ, err string
	val      any
}

func evalOutcome(p *program, a *activation) fastOutcome {
	a.absent = false
	v, err := p.eval(a)
	if err != nil {
		return fastOutcome{err: err.Error()}
	}
	return fastOutcome{typ: v.Type().TypeName(), val: native(v)}
}

// rawTypes are the CEL type names of the bag values evalRaw gives.
var rawTypes = map[attribute.Kind]string{attribute.KindString: "string", attribute.KindInt64: "int",
	attribute.KindDouble: "double", attribute.KindBool: "bool",
	attribute.KindTimestamp: "google.protobuf.Timestamp", attribute.KindDuration: "google.protobuf.Duration"}

// rawOutcome is evalOutcome through evalNative (so evalRaw, and for plain
// reads no CEL value at all), with the type the bag value stands for.
func rawOutcome(p *program, a *activation) (fastOutcome, bool) {
	a.absent = false
	raw, ok, err := p.evalRaw(a)
	if err != nil {
		return fastOutcome{err: err.Error()}, a.absent
	}
	nat, err := p.evalNative(a)
	if err != nil {
		return fastOutcome{err: "evalNative after evalRaw: " + err.Error()}, a.absent
	}
	absent := a.absent
	typ := rawTypes[raw.Kind()]
	if !ok {
		typ = p.typeName(a) // no bag value: the CEL value's
	}
	return fastOutcome{typ: typ, val: nat}, absent
}

// compareSequence evaluates the cases in order through one activation per
// path (CEL, the fast path, the fast path's bag values) and fails on any
// difference in results, absence or references.
func compareSequence(t *testing.T, name string, bag *attribute.Bag, seq []fastCase) {
	t.Helper()
	var fastRefs, celRefs, rawRefs attribute.Referenced
	fa := getActivation(bag, &fastRefs, 0)
	defer putActivation(fa)
	ca := getActivation(bag, &celRefs, 0)
	defer putActivation(ca)
	ra := getActivation(bag, &rawRefs, 0)
	defer putActivation(ra)
	for _, c := range seq {
		got, want := evalOutcome(c.fast, fa), evalOutcome(c.cel, ca)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %s: fast path = %+v, CEL = %+v", name, c.text, got, want)
		}
		if fa.absent != ca.absent {
			t.Fatalf("%s: %s: absent = %v, CEL: %v", name, c.text, fa.absent, ca.absent)
		}
		if g, w := fastRefs.List(), celRefs.List(); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: %s: refs = %+v, CEL: %+v", name, c.text, g, w)
		}
		raw, absent := rawOutcome(c.fast, ra)
		if !reflect.DeepEqual(raw, want) {
			t.Fatalf("%s: %s: bag value = %+v, CEL = %+v", name, c.text, raw, want)
		}
		if absent != ca.absent {
			t.Fatalf("%s: %s: absent (bag value) = %v, CEL: %v", name, c.text, absent, ca.absent)
		}
		if g, w := rawRefs.List(), celRefs.List(); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: %s: refs (bag value) = %+v, CEL: %+v", name, c.text, g, w)
		}
	}
}

func TestFastPathMatchesCEL(t *testing.T) {
	cases := compileFastCases(t)
	for name, bag := range fastBags() {
		for _, c := range cases {
			// Alone, and after every other expression (the activation's
			// caches then hold the attribute already).
			compareSequence(t, name, bag, []fastCase{c})
			for _, before := range cases {
				compareSequence(t, name, bag, []fastCase{before, c})
			}
		}
	}
}

func TestFastPathErrors(t *testing.T) {
	cases := map[string]string{
		`destination.workload.name`:          "no such attribute(s): destination.workload.name",
		`request.headers["x-user"]`:          "no such attribute(s): request.headers",
		`default(request.headers["x"], "-")`: "",
	}
	env, err := newEnv(attribute.DefaultManifest())
	if err != nil {
		t.Fatal(err)
	}
	c := &compiler{env: env, names: attribute.DefaultManifest().Names()}
	for text, want := range cases {
		p, iss := c.compile(text, wantAny)
		if iss != nil || p.fast == nil {
			t.Fatalf("%s: %v, fast = %v", text, iss, p.fast)
		}
		a := getActivation(attribute.NewBuilder(0).Build(), nil, 0)
		_, err := p.eval(a)
		putActivation(a)
		if got := fmt.Sprint(err); want != "" && got != want || want == "" && err != nil {
			t.Errorf("%s: error %v, want %q", text, err, want)
		}
	}
}

// TestFastPathRandom evaluates random sequences of expressions over random
// bags, both ways.
func TestFastPathRandom(t *testing.T) {
	cases := compileFastCases(t)
	r := rand.New(rand.NewPCG(4, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		bag := randomBag(r)
		seq := make([]fastCase, 1+r.IntN(8))
		for j := range seq {
			seq[j] = cases[r.IntN(len(cases))]
		}
		compareSequence(t, fmt.Sprintf("round %d", i), bag, seq)
	}
}

// randomBag sets each attribute the expressions read with probability
// 1/2, usually of its declared kind, sometimes of another.
func randomBag(r *rand.Rand) *attribute.Bag {
	b := attribute.NewBuilder(16)
	str := func() string { return []string{"", "a", "web-v1", "unknown"}[r.IntN(4)] }
	hdrs := func() map[string]string {
		m := map[string]string{}
		for _, k := range []string{"x-user", "accept", "absent", "", "app"} {
			if r.IntN(2) == 0 {
				m[k] = str()
			}
		}
		return m
	}
	wrong := func(name string) {
		switch r.IntN(4) {
		case 0:
			b.SetString(name, str())
		case 1:
			b.SetInt64(name, r.Int64N(10))
		case 2:
			b.SetStringMap(name, hdrs())
		default:
			b.SetBool(name, r.IntN(2) == 0)
		}
	}
	set := map[string]func(string){
		attribute.DestinationWorkloadName: func(n string) { b.SetString(n, str()) },
		attribute.RequestPath:             func(n string) { b.SetString(n, "/"+str()) },
		attribute.RequestMethod:           func(n string) { b.SetString(n, "x-user") },
		attribute.ContextReporterKind:     func(n string) { b.SetString(n, []string{"inbound", "outbound"}[r.IntN(2)]) },
		attribute.ResponseCode:            func(n string) { b.SetInt64(n, 200+r.Int64N(400)) },
		attribute.RequestSize:             func(n string) { b.SetInt64(n, r.Int64N(1000)) },
		attribute.SourceIP:                func(n string) { b.SetIP(n, netip.MustParseAddr("10.0.0.1")) },
		attribute.RequestTime:             func(n string) { b.SetTime(n, time.Unix(r.Int64N(1e9), 0)) },
		attribute.ResponseDuration:        func(n string) { b.SetDuration(n, time.Duration(r.Int64N(1e9))) },
		attribute.ConnectionMTLS:          func(n string) { b.SetBool(n, r.IntN(2) == 0) },
		attribute.RequestHeaders:          func(n string) { b.SetStringMap(n, hdrs()) },
		attribute.DestinationLabels:       func(n string) { b.SetStringMap(n, hdrs()) },
	}
	for name, f := range set {
		switch r.IntN(8) {
		case 0, 1, 2, 3:
		case 4:
			wrong(name)
		default:
			f(name)
		}
	}
	return b.Build()
}

// TestStringRawMakesNoCELValue checks that a span name's shape, default()
// over a concatenation, is read as a bag value (fastNode.stringRaw) and
// never evaluated to a CEL value, when its attributes are there.
func TestStringRawMakesNoCELValue(t *testing.T) {
	env, err := newEnv(attribute.DefaultManifest())
	if err != nil {
		t.Fatal(err)
	}
	c := &compiler{env: env, names: attribute.DefaultManifest().Names()}
	p, iss := c.compile(`default(span.name, default(request.method, "GET") + " " + default(request.url_path, "/"))`, wantAny)
	if iss != nil || p.fast == nil || p.fast.tree == nil || !p.fast.tree.strRaw {
		t.Fatalf("issues %v, fast %+v: want a strRaw tree", iss, p.fast)
	}
	for _, tc := range []struct {
		bag  *attribute.Bag
		want string
	}{
		{attribute.NewBuilder(2).SetString(attribute.RequestMethod, "PUT").SetString(attribute.RequestURLPath, "/a").Build(), "PUT /a"},
		{attribute.NewBuilder(1).SetString(attribute.SpanName, "op").Build(), "op"},
		{attribute.NewBuilder(0).Build(), "GET /"},
	} {
		a := getActivation(tc.bag, nil, 0)
		v, ok, err := p.evalRaw(a)
		done := a.memoOf(p.id).done
		putActivation(a)
		if err != nil || !ok || v.Kind() != attribute.KindString || v.Str() != tc.want {
			t.Errorf("evalRaw = %v, %v, %v; want %q", v, ok, err, tc.want)
		}
		if done {
			t.Errorf("%q: a CEL value was made", tc.want)
		}
	}
}
