package policy

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// TestSequenceDeltaPlan: a Sequence brings the bag before's result up to
// date through its plan, and evaluates a bag anew when a match decides
// otherwise or a field fails, and after such a bag; every result is
// Evaluate's.
func TestSequenceDeltaPlan(t *testing.T) {
	const cfg = `
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: m}
spec:
  template: metric
  params:
    value: default(response.size, 0)
    dimensions: {code: 'default(response.code, 200)', path: request.path}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: n}
spec:
  template: metric
  params:
    value: "1"
    dimensions: {code: 'default(response.code, 200)', path: request.path}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: l}
spec:
  template: logentry
  params:
    severity: 'default(response.code, 200) >= 500 ? "error" : "info"'
    variables: {id: request.id, path: request.path, size: 'default(response.size, 0)', code: 'default(response.code, 200)',
      method: 'default(request.method, "GET")', trace: request.trace.id, a: '"x"', b: '"y"'}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: s}
spec:
  template: tracespan
  params:
    traceId: request.trace.id
    spanId: request.trace.span_id
    spanName: default(span.name, default(request.method, "GET") + " " + request.path)
    startTime: request.time
    endTime: request.time
    status: default(span.status, conditional(default(response.code, 200) >= 500, "error", "unset"))
    spanTags: {path: request.path, size: 'default(response.size, 0)'}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: all}
spec:
  actions:
  - {handler: sink, instances: [m, n, l]}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: traced}
spec:
  match: default(request.trace.sampled, false)
  actions:
  - {handler: sink, instances: [s, l]}
`
	clock := time.Unix(1_800_000_000, 0).UTC()
	s, err := LoadSources(map[string][]byte{"plan.yaml": []byte(cfg)}, Options{Adapters: testRegistry(),
		Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		set     func(*attribute.Builder)
		changed []string
		delta   bool // brought up to date, not evaluated anew
		errs    int
	}
	k := 0
	next := func(b *attribute.Builder) {
		k++
		b.SetString(attribute.RequestID, "id-"+string(rune('a'+k))).
			SetTime(attribute.RequestTime, t0.Add(time.Duration(k)*time.Millisecond)).
			SetTime(attribute.ContextTime, t0.Add(time.Duration(k)*time.Millisecond)).
			SetInt64(attribute.ResponseSize, int64(1000+k)).
			SetString(attribute.RequestSpanID, "span-"+string(rune('a'+k)))
	}
	perRequest := []string{attribute.RequestID, attribute.RequestTime, attribute.ContextTime, attribute.ResponseSize, attribute.RequestSpanID}
	with := func(names ...string) []string { return append(append([]string(nil), perRequest...), names...) }
	steps := []step{
		{set: next},
		{set: next, changed: with(), delta: true},
		{set: func(b *attribute.Builder) { next(b); b.SetInt64(attribute.ResponseCode, 503) }, changed: with(attribute.ResponseCode), delta: true},
		{set: func(b *attribute.Builder) { next(b); b.SetBool(attribute.RequestTraceSampled, false) }, changed: with(attribute.RequestTraceSampled)},
		{set: next, changed: with(), delta: true},
		{set: func(b *attribute.Builder) { next(b); b.SetBool(attribute.RequestTraceSampled, true) }, changed: with(attribute.RequestTraceSampled)},
		{set: func(b *attribute.Builder) { next(b); b.Delete(attribute.RequestPath) }, changed: with(attribute.RequestPath), errs: 2},
		{set: func(b *attribute.Builder) { next(b); b.SetString(attribute.RequestPath, "/b") }, changed: with(attribute.RequestPath)},
		{set: next, changed: with(), delta: true},
		{set: func(b *attribute.Builder) { next(b); b.SetString(attribute.RequestMethod, "PUT") }, changed: with(attribute.RequestMethod), delta: true},
		// A log entry's timestamp is the clock's while context.time is
		// absent or not a timestamp.
		{set: func(b *attribute.Builder) { next(b); b.Delete(attribute.ContextTime) }, changed: with(), delta: true},
		{set: func(b *attribute.Builder) { next(b); b.SetString(attribute.ContextTime, "now") }, changed: with(), delta: true},
		{set: next, changed: with(), delta: true},
	}
	b := attribute.NewBuilder(16).SetString(attribute.RequestPath, "/a").SetString(attribute.RequestTraceID, "trace").
		SetBool(attribute.RequestTraceSampled, true).SetInt64(attribute.ResponseCode, 200)
	q := s.NewSequence(VarietyReport)
	defer q.Close()
	patched := 0
	for i, st := range steps {
		st.set(b)
		bag := b.Build()
		b = bag.Builder()
		deltas := 0
		if q.d != nil {
			deltas = q.d.deltas
		}
		clock = clock.Add(time.Second)
		got := q.Evaluate(bag, st.changed)
		if did := q.d.deltas > deltas; did != st.delta {
			t.Errorf("step %d: brought up to date %v, want %v", i, did, st.delta)
		}
		want := s.Evaluate(bag, VarietyReport, nil)
		if len(got.Errors) != st.errs || len(want.Errors) != st.errs {
			t.Fatalf("step %d: errors %v, Evaluate's %v, want %d", i, got.Errors, want.Errors, st.errs)
		}
		for j := range got.Errors {
			if got.Errors[j].Error() != want.Errors[j].Error() {
				t.Errorf("step %d: error %v, Evaluate's %v", i, got.Errors[j], want.Errors[j])
			}
		}
		got.Errors, want.Errors = nil, nil
		if !reflect.DeepEqual(flatResult(got), flatResult(want)) {
			t.Errorf("step %d:\n got %+v\nwant %+v", i, got, want)
		}
		for _, act := range got.Actions {
			for _, in := range act.Instances {
				if l, ok := in.(*template.LogEntry); ok && l.Variables.Patched() != 0 {
					patched++
				}
			}
		}
	}
	// The access log's variables of a request are the previous request's
	// with the few that differ patched (template.Patch).
	if patched == 0 {
		t.Error("no log entry's variables patched")
	}
}

// TestPlannedPatch: a map field brought up to date is patched from the
// previous one's base, keeping the values patched before, and copied flat
// when most of its values are patched or it has more than 64.
func TestPlannedPatch(t *testing.T) {
	fields := func(n int) template.Fields {
		names := make([]string, n)
		vals := make([]any, n)
		for i := range names {
			names[i], vals[i] = fmt.Sprintf("f%02d", i), int64(i)
		}
		l, err := template.NewLayout(names...)
		if err != nil {
			t.Fatal(err)
		}
		return template.MakeFields(l, vals)
	}
	a := &activation{}
	d := &planned{}
	bring := func(prev template.Fields, vals map[int32]any) template.Fields {
		d.pos, d.vals = d.pos[:0], d.vals[:0]
		for i := range int32(prev.Len()) {
			if v, ok := vals[i]; ok {
				d.pos, d.vals = append(d.pos, i), append(d.vals, v)
			}
		}
		f := d.patch(a, prev)
		if f.Len() != prev.Len() || f.Layout() != prev.Layout() {
			t.Fatalf("patch of %d fields has %d", prev.Len(), f.Len())
		}
		for i := range f.Len() {
			want := prev.At(i)
			if v, ok := vals[int32(i)]; ok {
				want = v
			}
			if f.At(i) != want {
				t.Errorf("field %d = %v, want %v", i, f.At(i), want)
			}
		}
		return f
	}
	base := fields(10)
	f1 := bring(base, map[int32]any{2: "two"})
	f2 := bring(f1, map[int32]any{5: "five"})
	if f1.Patched() != 1<<2 || f2.Patched() != 1<<2|1<<5 || !f2.Base().Same(base) {
		t.Errorf("patched %b then %b, base kept %v", f1.Patched(), f2.Patched(), f2.Base().Same(base))
	}
	if f3 := bring(f2, map[int32]any{0: "a", 1: "b", 3: "c", 4: "d"}); f3.Patched() != 0 || f3.Base().Same(base) {
		t.Errorf("most patched: patched %b, base kept %v; want a flat copy", f3.Patched(), f3.Base().Same(base))
	}
	if wide := bring(fields(70), map[int32]any{1: "x", 66: "y"}); wide.Patched() != 0 {
		t.Errorf("70 fields patched %b, want a flat copy", wide.Patched())
	}
}
