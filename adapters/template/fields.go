package template

import (
	"fmt"
	"iter"
	"maps"
	"math"
	"math/bits"
	"slices"
	"time"
	"unsafe"
)

// Fields are the named values of a Metric's dimensions or a LogEntry's
// variables. Their names are a Layout, fixed when the configuration is
// loaded and shared by every instance built from one Instance document, in
// sorted order; the values are by position, so adapters read them without
// hashing names: a Prometheus handler finds where each label is once per
// Layout and then takes values by index, a JSON encoder writes the keys of
// a Layout it has seen before in their known order.
//
// The zero Fields is empty. Fields are read-only: one may be shared by
// several instances (Istio's metrics share their dimensions), of one
// request or of successive ones.
//
// A Fields made by Patch shares the values of another (its base) but at a
// few positions: the access log's variables of successive requests differ
// in their ids, paths, sizes and times, and the others stay where they
// are, not copied for every request.
type Fields struct {
	layout *Layout
	// vals points at the first of layout.Len() values (nil: none): a
	// Fields is four words, not six, as the instances that hold one are
	// made for every request.
	vals *any
	// patched has bit i set when the value at position i is not the
	// i-th from vals but the k-th of the values from over, k being the
	// number of set bits below i (Patch). Positions from 64 on are never
	// patched.
	patched uint64
	over    *any
}

// Layout is an ordered set of field names. Compare layouts by pointer: the
// instances of one Instance document's field share one.
type Layout struct {
	names []string
}

// NewLayout returns the Layout of names, sorted; duplicates are an error.
func NewLayout(names ...string) (*Layout, error) {
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return nil, fmt.Errorf("field %q given twice", sorted[i])
		}
	}
	return &Layout{names: sorted}, nil
}

// Len is how many names l has.
func (l *Layout) Len() int {
	if l == nil {
		return 0
	}
	return len(l.names)
}

// Name is the i-th name, in sorted order.
func (l *Layout) Name(i int) string { return l.names[i] }

// Index is where name is in l, or -1.
func (l *Layout) Index(name string) int {
	if l == nil {
		return -1
	}
	if i, ok := slices.BinarySearch(l.names, name); ok {
		return i
	}
	return -1
}

// MakeFields returns the Fields with layout l and values vals, by
// position: vals[i] is the value of l.Name(i). The Fields keep vals, which
// must not be modified afterwards. It panics when the lengths differ.
func MakeFields(l *Layout, vals []any) Fields {
	if l.Len() != len(vals) {
		panic(fmt.Sprintf("template: %d values for a layout of %d names", len(vals), l.Len()))
	}
	return fieldsOf(l, vals)
}

// fieldsOf is the Fields of layout l and values vals, of its length.
func fieldsOf(l *Layout, vals []any) Fields {
	if len(vals) == 0 {
		return Fields{layout: l}
	}
	return Fields{layout: l, vals: &vals[0]}
}

// FieldsOf returns the Fields holding m's entries (with a Layout of their
// own). It is for tests and for code that builds instances by hand; the
// policy package builds them without a map.
func FieldsOf(m map[string]any) Fields {
	if len(m) == 0 {
		return Fields{}
	}
	names := slices.Sorted(maps.Keys(m))
	vals := make([]any, len(names))
	for i, k := range names {
		vals[i] = m[k]
	}
	return fieldsOf(&Layout{names: names}, vals)
}

// FieldsIn returns the Fields of layout l with m's values (nil for a name
// m lacks). It is for tests and hand-built instances that share a layout;
// it panics when m has a name l lacks.
func FieldsIn(l *Layout, m map[string]any) Fields {
	vals := make([]any, l.Len())
	n := 0
	for i := range vals {
		if v, ok := m[l.names[i]]; ok {
			vals[i] = v
			n++
		}
	}
	if n != len(m) {
		panic("template: FieldsIn: the map has names the layout lacks")
	}
	return fieldsOf(l, vals)
}

// Patch returns the Fields of base's layout whose values are base's but
// at the positions of the set bits of patched (bit i: position i), whose
// values are over's, in the order of the positions. base must not be
// patched itself (see Base), and over, like the values of MakeFields,
// must not be modified afterwards. It panics when base is patched, when
// patched has a bit of no position or when over has not one value per
// set bit.
func Patch(base Fields, patched uint64, over []any) Fields {
	n := base.Len()
	switch {
	case base.patched != 0:
		panic("template: Patch of patched Fields")
	case n < 64 && patched>>n != 0:
		panic(fmt.Sprintf("template: Patch of a position past %d fields", n))
	case bits.OnesCount64(patched) != len(over):
		panic(fmt.Sprintf("template: %d values for %d patched positions", len(over), bits.OnesCount64(patched)))
	}
	if patched == 0 {
		return base
	}
	base.patched, base.over = patched, &over[0]
	return base
}

// Base is the Fields f is patched from (Patch), f itself when it is not.
func (f Fields) Base() Fields { return Fields{layout: f.layout, vals: f.vals} }

// Patched has bit i set when f's value at position i is not its base's
// (Patch): 0 when f is not patched. Two Fields of one base
// (f.Base().Same(g.Base())) have the same values but at the positions
// patched in either (f.Patched() | g.Patched()): an adapter that writes
// what changed from the previous instance need look at no other.
func (f Fields) Patched() uint64 { return f.patched }

// Len is how many fields f has.
func (f Fields) Len() int { return f.layout.Len() }

// Layout is f's names; nil when f is empty.
func (f Fields) Layout() *Layout { return f.layout }

// Name is the i-th field's name (names are sorted).
func (f Fields) Name(i int) string { return f.layout.names[i] }

// At is the i-th field's value.
func (f Fields) At(i int) any {
	vals := unsafe.Slice(f.vals, len(f.layout.names)) // a nil layout panics too
	if b := uint64(1) << uint(i); f.patched&b != 0 {  // 0 from position 64 on
		_ = vals[i]
		k := bits.OnesCount64(f.patched & (b - 1))
		return *(*any)(unsafe.Add(unsafe.Pointer(f.over), uintptr(k)*unsafe.Sizeof(vals[0])))
	}
	return vals[i]
}

// Get is the value of the field named name.
func (f Fields) Get(name string) (any, bool) {
	if i := f.layout.Index(name); i >= 0 {
		return f.At(i), true
	}
	return nil, false
}

// All yields the fields in order of their names.
func (f Fields) All() iter.Seq2[string, any] {
	return func(yield func(string, any) bool) {
		for i := range f.Len() {
			if !yield(f.layout.names[i], f.At(i)) {
				return
			}
		}
	}
}

// Map returns the fields as a new map (nil when f is empty).
func (f Fields) Map() map[string]any {
	n := f.Len()
	if n == 0 {
		return nil
	}
	m := make(map[string]any, n)
	for i := range n {
		m[f.layout.names[i]] = f.At(i)
	}
	return m
}

// Same reports whether f and g are one Fields: the same layout and the
// same values, shared (not merely equal). Adapters use it to reuse what
// they made from the previous instance's fields.
func (f Fields) Same(g Fields) bool {
	return f.layout == g.layout && f.vals == g.vals && f.patched == g.patched && f.over == g.over
}

// SameValue reports whether x and y are the same scalar value, bit for
// bit, so that they are written alike: strings, int64, float64 (by bits:
// -0 is not 0), bool, time.Duration, time.Time (the same instant and
// location) and nil. Other values (bytes, maps) are never the same.
func SameValue(x, y any) bool {
	switch a := x.(type) {
	case string:
		b, ok := y.(string)
		return ok && a == b
	case int64:
		b, ok := y.(int64)
		return ok && a == b
	case time.Duration:
		b, ok := y.(time.Duration)
		return ok && a == b
	case bool:
		b, ok := y.(bool)
		return ok && a == b
	case float64:
		b, ok := y.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case time.Time:
		b, ok := y.(time.Time)
		return ok && a == b
	case nil:
		return y == nil
	}
	return false
}
