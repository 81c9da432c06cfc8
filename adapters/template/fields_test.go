package template_test

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
)

func TestLayout(t *testing.T) {
	l, err := template.NewLayout("path", "code", "method")
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 3 || l.Name(0) != "code" || l.Name(1) != "method" || l.Name(2) != "path" {
		t.Errorf("layout %d names: %q %q %q", l.Len(), l.Name(0), l.Name(1), l.Name(2))
	}
	for name, want := range map[string]int{"code": 0, "method": 1, "path": 2, "host": -1, "": -1} {
		if got := l.Index(name); got != want {
			t.Errorf("Index(%q) = %d, want %d", name, got, want)
		}
	}
	if _, err := template.NewLayout("a", "b", "a"); err == nil || err.Error() != `field "a" given twice` {
		t.Errorf("duplicate: err %v", err)
	}
	var none *template.Layout
	if none.Len() != 0 || none.Index("a") != -1 {
		t.Error("nil layout is not empty")
	}
}

func TestFields(t *testing.T) {
	l, err := template.NewLayout("path", "code")
	if err != nil {
		t.Fatal(err)
	}
	f := template.MakeFields(l, []any{int64(200), "/a"})
	if f.Len() != 2 || f.Layout() != l || f.Name(0) != "code" || f.At(0) != int64(200) || f.Name(1) != "path" || f.At(1) != "/a" {
		t.Errorf("fields %v", f.Map())
	}
	if v, ok := f.Get("path"); !ok || v != "/a" {
		t.Errorf("Get(path) = %v, %v", v, ok)
	}
	if v, ok := f.Get("host"); ok || v != nil {
		t.Errorf("Get(host) = %v, %v", v, ok)
	}
	if got, want := maps.Collect(f.All()), map[string]any{"code": int64(200), "path": "/a"}; !reflect.DeepEqual(got, want) || !reflect.DeepEqual(f.Map(), want) {
		t.Errorf("All %v, Map %v, want %v", got, f.Map(), want)
	}
	var names []string
	for k := range f.All() {
		names = append(names, k)
		break
	}
	if !reflect.DeepEqual(names, []string{"code"}) {
		t.Errorf("All stopped early yields %v", names)
	}

	// Same is sharing, not equality.
	g := template.MakeFields(l, []any{int64(200), "/a"})
	if !f.Same(f) || f.Same(g) || g.Same(f) {
		t.Error("Same: equal values taken for shared ones, or the reverse")
	}
	if !(template.Fields{}).Same(template.Fields{}) || f.Same(template.Fields{}) {
		t.Error("Same: zero Fields")
	}
	other := template.FieldsOf(map[string]any{"code": int64(200), "path": "/a"})
	if other.Same(f) || other.Layout() == l || !reflect.DeepEqual(other.Map(), f.Map()) {
		t.Errorf("FieldsOf: %v (layout shared %v)", other.Map(), other.Layout() == l)
	}

	in := template.FieldsIn(l, map[string]any{"path": "/b"})
	if in.Layout() != l || in.At(0) != nil || in.At(1) != "/b" {
		t.Errorf("FieldsIn: %v", in.Map())
	}
	mustPanic(t, "FieldsIn with a name the layout lacks", func() { template.FieldsIn(l, map[string]any{"host": "x"}) })
	mustPanic(t, "MakeFields with too few values", func() { template.MakeFields(l, []any{"x"}) })

	var zero template.Fields
	if zero.Len() != 0 || zero.Layout() != nil || zero.Map() != nil || template.FieldsOf(nil).Len() != 0 {
		t.Error("zero Fields not empty")
	}
	if _, ok := zero.Get("a"); ok {
		t.Error("zero Fields has a field")
	}
	for range zero.All() {
		t.Error("zero Fields yields a field")
	}
	mustPanic(t, "At of the zero Fields", func() { zero.At(0) })
	mustPanic(t, "At past the fields", func() { f.At(2) })
}

// TestPatch: patched Fields read as their base but at the patched
// positions, and are one (Same) only with themselves.
func TestPatch(t *testing.T) {
	names := make([]string, 70)
	for i := range names {
		names[i] = fmt.Sprintf("f%02d", i)
	}
	l, err := template.NewLayout(names...)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]any, len(names))
	for i := range vals {
		vals[i] = int64(i)
	}
	base := template.MakeFields(l, vals)
	if p := template.Patch(base, 0, nil); !p.Same(base) || p.Patched() != 0 {
		t.Error("Patch of nothing is not its base")
	}
	over := []any{"zero", "one", "sixty-three"}
	p := template.Patch(base, 1|1<<1|1<<63, over)
	want := map[int]any{0: "zero", 1: "one", 63: "sixty-three"}
	for i := range names {
		w, ok := want[i]
		if !ok {
			w = int64(i)
		}
		if got := p.At(i); got != w {
			t.Errorf("At(%d) = %v, want %v", i, got, w)
		}
	}
	if v, ok := p.Get("f63"); !ok || v != "sixty-three" {
		t.Errorf("Get(f63) = %v, %v", v, ok)
	}
	if m := p.Map(); len(m) != len(names) || m["f01"] != "one" || m["f02"] != int64(2) {
		t.Errorf("Map %v", m)
	}
	n := 0
	for k, v := range p.All() {
		if v != p.At(n) || k != names[n] {
			t.Errorf("All yields %s=%v at %d", k, v, n)
		}
		n++
	}
	if n != len(names) {
		t.Errorf("All yields %d fields", n)
	}
	if !p.Base().Same(base) || p.Patched() != 1|1<<1|1<<63 || p.Len() != len(names) || p.Layout() != l {
		t.Error("Base, Patched, Len or Layout of patched Fields")
	}
	if p.Same(base) || base.Same(p) || !p.Same(p) || p.Same(template.Patch(base, 1|1<<1|1<<63, slices.Clone(over))) {
		t.Error("Same: patched Fields taken for others")
	}
	mustPanic(t, "Patch of patched Fields", func() { template.Patch(p, 1, []any{"x"}) })
	mustPanic(t, "Patch with too few values", func() { template.Patch(base, 3, []any{"x"}) })
	short := template.MakeFields(mustLayout(t, "a", "b"), []any{1, 2})
	mustPanic(t, "Patch past the fields", func() { template.Patch(short, 1<<2, []any{"x"}) })
	mustPanic(t, "At past the fields", func() { template.Patch(short, 1<<1, []any{"x"}).At(2) })
}

func mustLayout(t *testing.T, names ...string) *template.Layout {
	t.Helper()
	l, err := template.NewLayout(names...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

func TestSameValue(t *testing.T) {
	at := time.Unix(1_700_000_000, 5).UTC()
	nan := math.NaN()
	for _, c := range []struct {
		x, y any
		want bool
	}{
		{"a", "a", true}, {"a", "b", false}, {"1", int64(1), false},
		{int64(300), int64(300), true}, {int64(300), int64(301), false},
		{1.5, 1.5, true}, {0.0, math.Copysign(0, -1), false}, {nan, nan, true},
		{true, true, true}, {true, false, false},
		{time.Second, time.Second, true}, {time.Second, int64(time.Second), false},
		{at, at, true}, {at, at.Local(), false}, {at, at.Add(1), false},
		{nil, nil, true}, {nil, "", false},
		{[]byte("a"), []byte("a"), false},
	} {
		if got := template.SameValue(c.x, c.y); got != c.want {
			t.Errorf("SameValue(%#v, %#v) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
}
