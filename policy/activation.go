package policy

import (
	"reflect"
	"sync"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// activation resolves CEL variables from a bag and records what it was
// asked for. Activations are pooled: Evaluate sits on the Check hot path.
type activation struct {
	bag  *attribute.Bag
	refs *attribute.Referenced
	maps []*mapVal // reused wrappers for map attributes
	used int

	// Attributes resolved so far: many rules look at the same few
	// attributes, and converting each once saves an allocation per rule.
	// Declared attributes are kept by slot (names, the programs'
	// compiler.slots), others in resolved.
	names map[string]int
	slots []slotAttr
	// hints are where each slot's attribute was in the last bag looked at
	// (kept across evaluations: the bags of a report batch have the same
	// shape).
	hints    []int
	resolved []resolvedAttr
	// absent is set when a lookup finds no attribute or map key, so that
	// a failed evaluation can tell absence from other errors.
	absent bool
	// rawSlot is the slot whose bag value the last plain read
	// (fastExpr.raw) gave, or -1.
	rawSlot int

	// Instances built during one evaluation, by instance index, so an
	// instance several actions use is built once.
	built  []template.Instance
	failed []bool

	// memo holds the results of the programs evaluated so far, by
	// program id: the bag does not change during an evaluation and the
	// functions are pure, so an expression several fields or rules share
	// is evaluated (and converted to its Go value) once.
	memo []memoEntry
	// builtMaps are the maps evalMap built, shared by instances with
	// the same entries.
	builtMaps []builtMap
	// kept are the last maps evalMap built, kept across evaluations
	// (unlike everything above) so that a map whose values repeat is
	// built once; next is the one to replace when all are taken.
	kept     []*keptMap
	nextKept int
	// slab is where evalFields takes its value slices from: one
	// allocation for many instances' fields instead of one for each. A
	// slice handed out is never handed out again (Fields are shared with
	// adapters), so the slab only shrinks from the front.
	slab []any
	// metrics and logs are where metric and logentry instances are taken
	// from, the same way.
	metrics []template.Metric
	logs    []template.LogEntry
	// strBoxes and numBoxes are where box copies strings and numbers.
	strBoxes []string
	numBoxes []uint64
	// stamps counts the memo entries made (memoEntry.stamp).
	stamps uint64
	// spans are the last spans buildTraceSpan built, kept like kept.
	spans     []*keptSpan
	nextSpans int

	// step counts a Sequence's bags (a new start counts two); delta is
	// set while it evaluates a bag that follows the previous one, whose
	// memo entries it kept but for the programs forgotten (each once, in
	// any order). A field built at the previous step needs only the
	// entries of those programs evaluated again (fieldIndex).
	step      uint64
	delta     bool
	forgotten []int

	// With keepResult (a Sequence), a result's actions and their instance
	// lists are made in acts and insts, kept from one bag to the next.
	// matched records, by rule index, which rules matched.
	keepResult bool
	acts       []Action
	insts      []template.Instance
	matched    []bool
}

// maxKeptMaps bounds the maps an activation keeps: the report rules of a
// config have a few map fields (examples/default: three).
const maxKeptMaps = 8

// values returns a new slice of n values for a Fields.
func (a *activation) values(n int) []any {
	if n > slabValues/4 {
		return make([]any, n)
	}
	return cut(&a.slab, n, slabValues)
}

// newMetric returns a new zero Metric.
func (a *activation) newMetric() *template.Metric {
	return &cut(&a.metrics, 1, slabInstances)[0]
}

// newLogEntry returns a new zero LogEntry.
func (a *activation) newLogEntry() *template.LogEntry {
	return &cut(&a.logs, 1, slabInstances)[0]
}

// slabInstances is how many instances of a template newMetric and
// newLogEntry allocate at once: a report batch's bags (1000, with 4
// metrics each in examples/default) take a few allocations instead of
// thousands. A slab lives as long as one of its instances is held.
const slabInstances = 128

// slabValues is the length of the slabs values takes slices from: at 23
// access-log variables and 9 metric dimensions a record, a slab serves
// about 30 records (16 KiB).
const slabValues = 1024

// lastMap returns the kept map of the field with entries progs, making
// one (with no map yet, m nil) when there is none.
func (a *activation) lastMap(progs []namedProgram, scalar, fields bool) *keptMap {
	for _, k := range a.kept {
		if k.scalar == scalar && k.fields == fields && sameEntries(k.progs, progs) {
			return k
		}
	}
	k := &keptMap{progs: progs, scalar: scalar, fields: fields, raws: make([]attribute.Value, len(progs)), rawOK: make([]bool, len(progs)),
		vals: make([]ref.Val, len(progs)), stamps: make([]uint64, len(progs)), diff: make([]bool, len(progs)),
		idx: makeFieldIndex(idsOf(progs))}
	keepRing(&a.kept, &a.nextKept, k)
	return k
}

// forget makes the entry not done. Like slotAttr.forget it only clears
// flags; every read of the entry looks at them first.
func (m *memoEntry) forget() {
	m.done, m.natDone, m.rawDone, m.stamp = false, false, false, 0
}

// newStamp returns a stamp no memo entry of the activation had before.
func (a *activation) newStamp() uint64 {
	a.stamps++
	return a.stamps
}

// keptSpanOf returns the kept span of tracespan instance in, making one
// (with no span yet) when there is none.
func (a *activation) keptSpanOf(in *instance) *keptSpan {
	for _, k := range a.spans {
		if k.in == in {
			return k
		}
	}
	k := &keptSpan{in: in}
	keepRing(&a.spans, &a.nextSpans, k)
	return k
}

// keepRing adds k to kept, which holds at most maxKeptMaps: once full, k
// takes the place of the oldest, next being where that is.
func keepRing[T any](kept *[]T, next *int, k T) {
	if len(*kept) < maxKeptMaps {
		*kept = append(*kept, k)
		return
	}
	(*kept)[*next] = k
	*next = (*next + 1) % maxKeptMaps
}

// memoEntry is one program's result for the activation's bag.
type memoEntry struct {
	done   bool
	absent bool // the evaluation found an attribute or map key absent
	val    ref.Val
	err    error
	// nat is val as a Go value (native), filled on first use.
	natDone bool
	nat     any
	// raw is the result as a bag value (evalRaw), when rawOK.
	rawDone, rawOK bool
	raw            attribute.Value
	// rawSlot is 1 + the slot whose bag value raw is, when it is one
	// (a plain read): its Go value is the slot's (slotAttr.nat).
	rawSlot int
	// stamp, set with the result, is unique in the activation's life: an
	// entry with the stamp it had holds the same result still.
	stamp uint64
}

var _ interpreter.Activation = (*activation)(nil)

var activationPool = sync.Pool{New: func() any { return new(activation) }}

func getActivation(bag *attribute.Bag, refs *attribute.Referenced, instances int) *activation {
	a := activationPool.Get().(*activation)
	a.bag, a.refs = bag, refs
	if cap(a.built) < instances {
		a.built = make([]template.Instance, instances)
		a.failed = make([]bool, instances)
	}
	a.built, a.failed = a.built[:instances], a.failed[:instances]
	return a
}

func putActivation(a *activation) {
	a.reset()
	a.bag, a.refs = nil, nil
	a.keepResult, a.acts, a.insts = false, nil, nil
	a.delta = false
	activationPool.Put(a)
}

// reset forgets everything learnt from the bag but the hints and the kept
// maps.
func (a *activation) reset() {
	for i := 0; i < a.used; i++ {
		mv := a.maps[i]
		clear(mv.keys)
		*mv = mapVal{keys: mv.keys[:0]}
	}
	a.forgetBuilt()
	clear(a.memo)
	clear(a.slots)
	a.names = nil
	a.used = 0
}

// forgetBuilt forgets the instances and maps built for the bag, the
// programs that failed and the undeclared names resolved, keeping the
// values of the bag's programs (Sequence keeps them across bags).
func (a *activation) forgetBuilt() {
	clear(a.built)
	clear(a.failed)
	clear(a.builtMaps)
	a.builtMaps = a.builtMaps[:0]
	clear(a.resolved)
	a.resolved = a.resolved[:0]
	a.absent = false
}

type resolvedAttr struct {
	name string
	val  ref.Val // nil when absent
}

// slotAttr is a declared attribute as the bag has it (raw, found) and,
// once some expression asked for it as a CEL value, as that (val). A plain
// read of an attribute into an instance's field takes raw and never boxes
// a CEL value (evalRaw).
type slotAttr struct {
	done   bool
	found  bool
	hasVal bool
	raw    attribute.Value
	val    ref.Val
	// nat is raw as a Go value (raw.Interface()), when hasNat: the
	// programs that read the attribute as it is (a metric's value and an
	// access log's variable over response.size, say) share one boxed
	// value instead of allocating one each.
	hasNat bool
	nat    any
}

// forget makes the slot unread. It only clears flags: a Sequence forgets
// a dozen slots per bag, and clearing what holds pointers costs a write
// barrier per word while the GC runs.
func (s *slotAttr) forget() { s.done, s.hasVal, s.hasNat = false, false, false }

// rawNative is raw.Interface() for the bag value raw of memo entry m,
// boxed once per slot when raw is a slot's value.
func (a *activation) rawNative(m *memoEntry, raw attribute.Value) any {
	if m.rawSlot <= 0 || m.rawSlot > len(a.slots) {
		return a.box(&raw)
	}
	return a.slotNative(m.rawSlot-1, &raw)
}

// slotOf reads a declared attribute whose slot is known, once per bag,
// and records the reference.
func (a *activation) slotOf(slot int, name string) *slotAttr {
	if slot < len(a.slots) && a.slots[slot].done {
		return &a.slots[slot] // inlined: most reads are of a slot read before
	}
	return a.readSlot(slot, name)
}

// readSlot is slotOf for a slot not read yet.
func (a *activation) readSlot(slot int, name string) *slotAttr {
	if slot >= len(a.slots) {
		a.slots = append(a.slots, make([]slotAttr, slot+1-len(a.slots))...)
	}
	s := &a.slots[slot]
	if !s.done {
		for slot >= len(a.hints) {
			a.hints = append(a.hints, -1)
		}
		v, ok, at := a.bag.GetHinted(name, a.hints[slot])
		a.hints[slot] = at
		s.raw, s.found, s.done = v, ok, true
		// Key lookups of a map are recorded by the map itself.
		if a.refs != nil && (!ok || v.Kind() != attribute.KindStringMap) {
			a.refs.Add(name, ok)
		}
	}
	return s
}

// resolveSlot is ResolveName for a declared attribute whose slot is known.
func (a *activation) resolveSlot(slot int, name string) (any, bool) {
	s := a.slotOf(slot, name)
	if !s.found {
		a.absent = true
		return nil, false
	}
	if !s.hasVal {
		if s.raw.Kind() == attribute.KindStringMap {
			s.val = a.mapValue(name, s.raw.StringMap())
		} else {
			s.val = celValue(s.raw)
		}
		s.hasVal = true
	}
	return s.val, true
}

// ResolveName implements interpreter.Activation. CEL asks for declared
// attributes by their full dotted names.
func (a *activation) ResolveName(name string) (any, bool) {
	if slot, ok := a.names[name]; ok {
		return a.resolveSlot(slot, name)
	}
	for i := range a.resolved {
		if r := &a.resolved[i]; r.name == name {
			if r.val == nil {
				a.absent = true
			}
			return r.val, r.val != nil
		}
	}
	val := a.lookup(name)
	if val == nil {
		a.absent = true
	}
	a.resolved = append(a.resolved, resolvedAttr{name: name, val: val})
	return val, val != nil
}

// lookup reads an attribute from the bag as a CEL value (nil: absent) and
// records the reference.
func (a *activation) lookup(name string) ref.Val {
	v, ok := a.bag.Get(name)
	return a.celOf(name, v, ok)
}

// celOf is lookup's result for a bag value found (ok) or not.
func (a *activation) celOf(name string, v attribute.Value, ok bool) ref.Val {
	switch {
	case !ok:
		if a.refs != nil {
			a.refs.Add(name, false)
		}
		return nil
	case v.Kind() == attribute.KindStringMap:
		// Key lookups are recorded by the map itself.
		return a.mapValue(name, v.StringMap())
	default:
		if a.refs != nil {
			a.refs.Add(name, true)
		}
		return celValue(v)
	}
}

// memoOf returns the memo slot of program id.
func (a *activation) memoOf(id int) *memoEntry {
	if id >= len(a.memo) {
		a.memo = append(a.memo, make([]memoEntry, id+1-len(a.memo))...)
	}
	return &a.memo[id]
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) mapValue(name string, m map[string]string) *mapVal {
	if a.used == len(a.maps) {
		a.maps = append(a.maps, new(mapVal))
	}
	mv := a.maps[a.used]
	a.used++
	mv.name, mv.m, mv.refs, mv.absent = name, m, a.refs, &a.absent
	return mv
}

// celValue converts a bag value to its CEL value.
func celValue(v attribute.Value) ref.Val {
	switch v.Kind() {
	case attribute.KindString:
		return types.String(v.Str())
	case attribute.KindInt64:
		return types.Int(v.Int64())
	case attribute.KindDouble:
		return types.Double(v.Double())
	case attribute.KindBool:
		return types.Bool(v.Bool())
	case attribute.KindTimestamp:
		return types.Timestamp{Time: v.Time()}
	case attribute.KindDuration:
		return types.Duration{Duration: v.Duration()}
	case attribute.KindBytes, attribute.KindIPAddress:
		return types.Bytes(v.Bytes())
	case attribute.KindStringMap:
		return types.NewStringStringMap(types.DefaultTypeAdapter, v.StringMap())
	}
	return types.NewErr("attribute of unsupported kind %s", v.Kind())
}

// mapVal is a STRING_MAP attribute as CEL sees it. Key lookups record the
// key and whether it was there; anything that looks at the whole map
// (size, iteration, equality, conversion) records the whole attribute.
type mapVal struct {
	name string
	m    map[string]string
	refs *attribute.Referenced
	// absent points at the activation's flag, set on a missing key.
	absent *bool
	// Keys looked up so far, so that rules asking for the same header do
	// not each box its value again (nor scan refs again).
	keys []mapKey
}

type mapKey struct {
	key string
	val ref.Val // nil when absent
}

var _ traits.Mapper = (*mapVal)(nil)

func (mv *mapVal) whole() traits.Mapper {
	if mv.refs != nil {
		mv.refs.Add(mv.name, true)
	}
	return types.NewStringStringMap(types.DefaultTypeAdapter, mv.m)
}

// Find implements traits.Mapper: index, has() and optional lookups.
func (mv *mapVal) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		if types.IsUnknownOrError(key) {
			return key, false
		}
		return types.ValOrErr(key, "no such key: %v", key), false
	}
	for i := range mv.keys {
		if mk := &mv.keys[i]; mk.key == string(k) {
			if mk.val == nil && mv.absent != nil {
				*mv.absent = true
			}
			return mk.val, mk.val != nil
		}
	}
	s, found := mv.m[string(k)]
	if mv.refs != nil {
		mv.refs.AddMapKey(mv.name, string(k), found)
	}
	var val ref.Val
	if found {
		val = types.String(s)
	} else if mv.absent != nil {
		*mv.absent = true
	}
	mv.keys = append(mv.keys, mapKey{key: string(k), val: val})
	return val, found
}

// Get implements traits.Indexer.
func (mv *mapVal) Get(key ref.Val) ref.Val {
	v, found := mv.Find(key)
	if found {
		return v
	}
	if v != nil {
		return v
	}
	return types.NewErr("no such key: %v", key)
}

// Contains implements traits.Container: the `in` operator.
func (mv *mapVal) Contains(key ref.Val) ref.Val {
	v, found := mv.Find(key)
	if !found && v != nil && types.IsUnknownOrError(v) {
		return v
	}
	return types.Bool(found)
}

// Size implements traits.Sizer.
func (mv *mapVal) Size() ref.Val { return mv.whole().Size() }

// Iterator implements traits.Iterable.
func (mv *mapVal) Iterator() traits.Iterator { return mv.whole().Iterator() }

// ConvertToNative implements ref.Val.
func (mv *mapVal) ConvertToNative(t reflect.Type) (any, error) {
	return mv.whole().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (mv *mapVal) ConvertToType(t ref.Type) ref.Val { return mv.whole().ConvertToType(t) }

// Equal implements ref.Val.
func (mv *mapVal) Equal(other ref.Val) ref.Val { return mv.whole().Equal(other) }

// Type implements ref.Val.
func (mv *mapVal) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (mv *mapVal) Value() any {
	if mv.refs != nil {
		mv.refs.Add(mv.name, true)
	}
	return mv.m
}

// IsZeroValue reports whether the map is empty.
func (mv *mapVal) IsZeroValue() bool {
	return mv.whole().Size() == types.IntZero
}
