package policy

import (
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"

	"github.com/sidemix/sidemix/attribute"
)

// fastExpr evaluates the commonest instance expressions straight from the
// bag, without CEL's interpreter: building instances from CEL was about a
// third of the mixer's CPU on the report path, and most fields are a bare
// attribute, a header lookup, default() of one of those, or a literal.
//
// It reads the bag through the same activation (ResolveName, mapVal.Find)
// as CEL does, so it records the same references, shares the same
// per-evaluation cache and sets the same absence flag; its results and
// errors are CEL's (the errors carry CEL's messages).
type fastExpr struct {
	kind fastKind
	name string // attribute: fastAttr, fastIndex, fastDefault
	slot int    // name's slot (compiler.slots)
	key  string // map key: fastIndex, fastDefault over an index
	// keyVal is key as a CEL value, boxed once rather than per lookup.
	keyVal ref.Val
	lit    ref.Val // fastLiteral: the value; fastDefault: the fallback
	// index: fastDefault's first argument is a map lookup.
	index bool
	// tree is a compound expression (fastTree).
	tree *fastNode
	// litRaw is lit as a bag value, when litRawOK (rawOf): fastDefault
	// over an attribute is then a plain read (raw).
	litRaw   attribute.Value
	litRawOK bool
}

type fastKind uint8

const (
	fastLiteral fastKind = iota + 1
	fastAttr
	fastIndex
	fastDefault
	fastTree
)

// compileFast returns the fast form of a checked expression, or nil when
// the expression has another shape and stays on CEL.
func compileFast(checked *cel.Ast, slots map[string]int) *fastExpr {
	f := compileFastExpr(checked, func(name string) bool { _, ok := slots[name]; return ok })
	if f != nil {
		f.setSlots(slots)
	}
	return f
}

// setSlots gives every attribute f reads its slot.
func (f *fastExpr) setSlots(slots map[string]int) {
	if f.name != "" {
		f.slot = slots[f.name]
	}
	if f.tree != nil {
		f.tree.setSlots(slots)
	}
}

func (n *fastNode) setSlots(slots map[string]int) {
	if n.leaf != nil {
		n.leaf.setSlots(slots)
	}
	for _, arg := range n.args {
		arg.setSlots(slots)
	}
}

func compileFastExpr(checked *cel.Ast, declared func(string) bool) *fastExpr {
	if checked == nil || !checked.IsChecked() {
		return nil
	}
	a := checked.NativeRep()
	e := a.Expr()
	if e.Kind() == celast.LiteralKind {
		return &fastExpr{kind: fastLiteral, lit: e.AsLiteral()}
	}
	if name, ok := fastAttrName(a, e, declared); ok {
		return &fastExpr{kind: fastAttr, name: name}
	}
	if name, key, ok := fastIndexOf(a, e, declared); ok {
		return &fastExpr{kind: fastIndex, name: name, key: key, keyVal: types.String(key)}
	}
	if e.Kind() != celast.CallKind {
		return nil
	}
	if f := compileDefault(a, e, declared); f != nil {
		return f
	}
	if n := compileTree(a, e, declared); n != nil {
		n.markPlain()
		return &fastExpr{kind: fastTree, tree: n}
	}
	return nil
}

// compileDefault returns the fast form of default(<attribute or header>,
// <literal>), or nil.
func compileDefault(a *celast.AST, e celast.Expr, declared func(string) bool) *fastExpr {
	c := e.AsCall()
	if c.FunctionName() != "default" || c.IsMemberFunction() || len(c.Args()) != 2 {
		return nil
	}
	if ids := a.GetOverloadIDs(e.ID()); len(ids) != 1 || ids[0] != "default_T_T" {
		return nil
	}
	arg, dflt := c.Args()[0], c.Args()[1]
	if dflt.Kind() != celast.LiteralKind {
		return nil
	}
	if name, ok := fastAttrName(a, arg, declared); ok {
		f := &fastExpr{kind: fastDefault, name: name, lit: dflt.AsLiteral()}
		f.litRaw, f.litRawOK = rawOf(f.lit)
		return f
	}
	if name, key, ok := fastIndexOf(a, arg, declared); ok {
		return &fastExpr{kind: fastDefault, name: name, key: key, keyVal: types.String(key), index: true, lit: dflt.AsLiteral()}
	}
	return nil
}

// fastAttrName reports whether e is a declared attribute of a scalar type
// (a whole map attribute stays on CEL: it is a *mapVal whose conversions
// record the whole attribute).
func fastAttrName(a *celast.AST, e celast.Expr, declared func(string) bool) (string, bool) {
	name, ok := attrRef(a, e, declared)
	if !ok {
		return "", false
	}
	switch a.GetType(e.ID()).Kind() {
	case types.MapKind, types.ListKind, types.DynKind, types.AnyKind, types.ErrorKind:
		return "", false
	}
	return name, true
}

// attrRef reports whether e names a declared attribute: an identifier, or
// a select the checker resolved to a dotted name.
func attrRef(a *celast.AST, e celast.Expr, declared func(string) bool) (string, bool) {
	switch e.Kind() {
	case celast.IdentKind:
	case celast.SelectKind:
		if e.AsSelect().IsTestOnly() {
			return "", false
		}
	default:
		return "", false
	}
	r, ok := a.ReferenceMap()[e.ID()]
	if !ok || r == nil || r.Value != nil || len(r.OverloadIDs) != 0 || !declared(r.Name) {
		return "", false
	}
	return r.Name, true
}

// fastIndexOf reports whether e is m["key"] with m a map(string, string)
// attribute and "key" a string literal.
func fastIndexOf(a *celast.AST, e celast.Expr, declared func(string) bool) (name, key string, ok bool) {
	if e.Kind() != celast.CallKind {
		return "", "", false
	}
	c := e.AsCall()
	if c.FunctionName() != operators.Index || c.IsMemberFunction() || len(c.Args()) != 2 {
		return "", "", false
	}
	m, k := c.Args()[0], c.Args()[1]
	if k.Kind() != celast.LiteralKind {
		return "", "", false
	}
	ks, isStr := k.AsLiteral().(types.String)
	if !isStr {
		return "", "", false
	}
	name, ok = attrRef(a, m, declared)
	if !ok {
		return "", "", false
	}
	t := a.GetType(m.ID())
	if t.Kind() != types.MapKind {
		return "", "", false
	}
	if ps := t.Parameters(); len(ps) != 2 || ps[0].Kind() != types.StringKind || ps[1].Kind() != types.StringKind {
		return "", "", false
	}
	return name, string(ks), true
}

// eval evaluates f. ok is false when the bag holds something CEL would
// treat differently (an attribute of another kind than declared): the
// caller then evaluates with CEL, which finds the same lookups cached.
func (f *fastExpr) eval(a *activation) (v ref.Val, ok bool) {
	var miss fastMiss
	switch f.kind {
	case fastLiteral:
		return f.lit, true
	case fastTree:
		v, s := f.tree.eval(a)
		if s != fastOK {
			return nil, false // an error: CEL says which
		}
		return v, true
	case fastAttr:
		v, miss, ok = f.attr(a)
	case fastIndex:
		v, miss, ok = f.lookup(a)
	case fastDefault:
		if f.index {
			v, miss, ok = f.lookup(a)
		} else {
			v, miss, ok = f.attr(a)
		}
		if ok && miss != present {
			return f.lit, true // no error value built only to be dropped
		}
		return v, ok
	default:
		return nil, false
	}
	switch {
	case !ok:
		return nil, false
	case miss == missingAttr:
		return types.NewErr("no such attribute(s): %s", f.name), true
	case miss == missingKey:
		return types.NewErr("no such key: %s", f.key), true
	}
	return v, true
}

// raw is the value of a plain read — an attribute, or default() of
// attributes and literals (fastNode.plain) — as the bag has it
// (program.evalRaw): ok is false for another expression, an absent
// attribute outside default(), or a value that is not a scalar rawOf
// makes; eval then says what it is.
func (f *fastExpr) raw(a *activation) (attribute.Value, bool) {
	switch {
	case f.kind == fastAttr:
	case f.kind == fastDefault && !f.index && f.litRawOK:
	case f.kind == fastTree && f.tree.plain:
		v, s := f.tree.plainRaw(a)
		return v, s == fastOK // an error: eval says which
	case f.kind == fastTree && f.tree.strRaw:
		v, s := f.tree.stringRaw(a)
		return v, s == fastOK
	default:
		return attribute.Value{}, false
	}
	s := a.slotOf(f.slot, f.name)
	switch {
	case !s.found && f.kind == fastDefault:
		a.absent = true
		return f.litRaw, true
	case !s.found || !rawScalar(s.raw.Kind()):
		return attribute.Value{}, false
	}
	a.rawSlot = f.slot
	return s.raw, true
}

// fastMiss says what a lookup did not find, with CEL's error in mind.
type fastMiss uint8

const (
	present     fastMiss = iota
	missingAttr          // CEL: no such attribute(s)
	missingKey           // CEL: no such key
)

func (f *fastExpr) attr(a *activation) (ref.Val, fastMiss, bool) {
	v, found := a.resolveSlot(f.slot, f.name)
	if !found {
		return nil, missingAttr, true
	}
	rv, isVal := v.(ref.Val)
	if !isVal {
		return nil, present, false
	}
	if _, isMap := rv.(*mapVal); isMap {
		return nil, present, false // declared scalar, a map in the bag
	}
	return rv, present, true
}

func (f *fastExpr) lookup(a *activation) (ref.Val, fastMiss, bool) {
	v, found := a.resolveSlot(f.slot, f.name)
	if !found {
		return nil, missingAttr, true
	}
	mv, isMap := v.(*mapVal)
	if !isMap {
		return nil, present, false // declared map, a scalar in the bag
	}
	val, found := mv.Find(f.keyVal)
	if !found {
		return nil, missingKey, true
	}
	return val, present, true
}

// fastNode is one node of a compound expression the fast path evaluates
// (fastTree): the shapes Istio-style instances and rules are made of —
// default() and conditional() over attributes, header lookups and
// literals, comparisons with literals, !, && and ||, `in` a list of
// strings, match() and string concatenation. Each node evaluates its
// arguments exactly as CEL's interpreter does (the same order, the same
// short circuits, non-strict calls evaluating every argument), so the
// same attributes and keys are looked up and recorded. A node whose
// values are not what the checker typed (an attribute of another kind in
// the bag, say) gives up, and the caller evaluates the expression with
// CEL instead; so does an expression whose result is an error, so errors
// keep CEL's wording.
type fastNode struct {
	op   fastOp
	leaf *fastExpr // fastLeaf: an attribute, a header lookup or a literal
	args []*fastNode
	// want is the kind the checker gave a leaf attribute.
	want types.Kind
	// strs are the strings of an `in` list.
	strs []string
	// cmp is the comparison of fastCompare: -1 <, -2 <=, 1 >, 2 >=.
	cmp int
	// plain: the node is a scalar attribute, a literal with a bag value
	// (rawOf) or default() of such nodes, which plainRaw evaluates.
	plain bool
	// chain are a plain node's leaves in the order they are evaluated;
	// rawKind is a leaf attribute's bag value kind (rawKinds[want]).
	chain   []*fastNode
	rawKind attribute.Kind
	// strRaw: the node is a concatenation, or default() of plain nodes
	// and concatenations (at least one), which stringRaw evaluates.
	strRaw bool
}

// markPlain sets plain on n and the nodes under it.
func (n *fastNode) markPlain() bool {
	all := true
	for _, arg := range n.args {
		all = arg.markPlain() && all
	}
	switch n.op {
	case fastLeaf:
		switch n.leaf.kind {
		case fastLiteral:
			n.leaf.litRaw, n.leaf.litRawOK = rawOf(n.leaf.lit)
			n.plain = n.leaf.litRawOK
		case fastAttr:
			n.rawKind, n.plain = rawKinds[n.want]
		}
		if n.plain {
			n.chain = []*fastNode{n}
		}
	case fastDefaultOp:
		n.plain = all
		n.strRaw = !all && n.args[0].rawable() && n.args[1].rawable()
		if n.plain {
			n.chain = append(slices.Clip(n.args[0].chain), n.args[1].chain...)
		}
	case fastConcat:
		n.strRaw = true
	}
	return n.plain
}

// rawable reports whether plainRaw or stringRaw evaluates n.
func (n *fastNode) rawable() bool { return n.plain || n.strRaw }

// stringRaw is eval of a strRaw node with the value as the bag has it,
// as plainRaw: a span's name, say, default(span.name, method + " " +
// path), made without boxing the string into a CEL value only to unbox
// it into the instance.
func (n *fastNode) stringRaw(a *activation) (attribute.Value, fastStatus) {
	switch {
	case n.plain:
		return n.plainRaw(a)
	case n.op == fastConcat:
		str, s := n.concatString(a)
		a.rawSlot = -1 // a string of its own
		if s != fastOK {
			return attribute.Value{}, s
		}
		return attribute.StringValue(str), fastOK
	}
	return n.defaultRaw(a, (*fastNode).stringRaw)
}

// defaultRaw is default(x, y) with arg reading each argument as a bag
// value: non-strict, both arguments evaluated; x (and its slot) when it is
// there, else y.
func (n *fastNode) defaultRaw(a *activation, arg func(*fastNode, *activation) (attribute.Value, fastStatus)) (attribute.Value, fastStatus) {
	x, xs := arg(n.args[0], a)
	xslot := a.rawSlot
	y, ys := arg(n.args[1], a)
	switch {
	case xs == fastGiveUp || ys == fastGiveUp:
		return attribute.Value{}, fastGiveUp
	case xs == fastOK:
		a.rawSlot = xslot
		return x, fastOK
	}
	return y, ys
}

// rawKinds are the bag value kinds of the CEL kinds rawOf converts.
var rawKinds = map[types.Kind]attribute.Kind{types.StringKind: attribute.KindString, types.IntKind: attribute.KindInt64,
	types.DoubleKind: attribute.KindDouble, types.BoolKind: attribute.KindBool,
	types.TimestampKind: attribute.KindTimestamp, types.DurationKind: attribute.KindDuration}

// plainRaw is eval of a plain node with the value as the bag has it: the
// same lookups in the same order, the same absences, errors and give-ups,
// and no CEL value made.
//
// default() is non-strict, so every leaf is evaluated, in order (chain):
// the value is the first found (a literal always is), absent set for each
// attribute missing; an attribute of another kind than declared gives up
// as eval's kind check does, whatever its place.
func (n *fastNode) plainRaw(a *activation) (attribute.Value, fastStatus) {
	out, status, slot, giveUp := attribute.Value{}, fastError, -1, false
	for _, l := range n.chain {
		if l.leaf.kind == fastLiteral {
			if status != fastOK {
				out, status, slot = l.leaf.litRaw, fastOK, -1
			}
			continue
		}
		s := a.slotOf(l.leaf.slot, l.leaf.name)
		switch {
		case !s.found:
			a.absent = true
		case s.raw.Kind() != l.rawKind:
			giveUp = true
		case status != fastOK:
			out, status, slot = s.raw, fastOK, l.leaf.slot
		}
	}
	a.rawSlot = slot
	if giveUp {
		return attribute.Value{}, fastGiveUp
	}
	return out, status
}

type fastOp uint8

const (
	fastLeaf fastOp = iota + 1
	fastDefaultOp
	fastConditional
	fastEq
	fastNe
	fastCompare
	fastNot
	fastAnd
	fastOr
	fastInStrings
	fastMatch
	fastConcat
)

// fastStatus is what a node's evaluation gave.
type fastStatus uint8

const (
	fastOK     fastStatus = iota
	fastError             // CEL's result is an error value (an absent attribute or key, in practice)
	fastGiveUp            // evaluate with CEL
)

// compileTree returns the node for e, or nil when some part of it has
// another shape.
func compileTree(a *celast.AST, e celast.Expr, declared func(string) bool) *fastNode {
	switch e.Kind() {
	case celast.LiteralKind:
		return &fastNode{op: fastLeaf, leaf: &fastExpr{kind: fastLiteral, lit: e.AsLiteral()}}
	case celast.IdentKind, celast.SelectKind:
		name, ok := fastAttrName(a, e, declared)
		if !ok {
			return nil
		}
		k := a.GetType(e.ID()).Kind()
		switch k {
		case types.StringKind, types.IntKind, types.BoolKind, types.DoubleKind, types.UintKind,
			types.BytesKind, types.TimestampKind, types.DurationKind:
		default:
			return nil
		}
		return &fastNode{op: fastLeaf, leaf: &fastExpr{kind: fastAttr, name: name}, want: k}
	case celast.CallKind:
	default:
		return nil
	}
	if name, key, ok := fastIndexOf(a, e, declared); ok {
		return &fastNode{op: fastLeaf, leaf: &fastExpr{kind: fastIndex, name: name, key: key, keyVal: types.String(key)},
			want: types.StringKind}
	}
	c := e.AsCall()
	if c.IsMemberFunction() {
		return nil
	}
	ids := a.GetOverloadIDs(e.ID())
	args := c.Args()
	sub := func(op fastOp) *fastNode {
		n := &fastNode{op: op}
		for _, arg := range args {
			an := compileTree(a, arg, declared)
			if an == nil {
				return nil
			}
			n.args = append(n.args, an)
		}
		return n
	}
	switch c.FunctionName() {
	case "default":
		if len(args) == 2 && len(ids) == 1 && ids[0] == "default_T_T" {
			return sub(fastDefaultOp)
		}
	case "conditional":
		if len(args) == 3 && len(ids) == 1 && ids[0] == "conditional_bool_T_T" {
			return sub(fastConditional)
		}
	case "match":
		if len(args) == 2 && len(ids) == 1 && ids[0] == "match_string_string" {
			return sub(fastMatch)
		}
	case "duration":
		// duration("1s"), a constant CEL's optimizer folds.
		if len(args) == 1 && args[0].Kind() == celast.LiteralKind {
			if s, ok := args[0].AsLiteral().(types.String); ok {
				if d, ok := s.ConvertToType(types.DurationType).(types.Duration); ok {
					return &fastNode{op: fastLeaf, leaf: &fastExpr{kind: fastLiteral, lit: d}}
				}
			}
		}
	case operators.Equals:
		if len(args) == 2 {
			return sub(fastEq)
		}
	case operators.NotEquals:
		if len(args) == 2 {
			return sub(fastNe)
		}
	case operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		if len(args) != 2 || !sameOrderedKind(a, args[0], args[1]) {
			return nil
		}
		n := sub(fastCompare)
		if n != nil {
			n.cmp = map[string]int{operators.Less: -1, operators.LessEquals: -2,
				operators.Greater: 1, operators.GreaterEquals: 2}[c.FunctionName()]
		}
		return n
	case operators.LogicalNot:
		if len(args) == 1 {
			return sub(fastNot)
		}
	case operators.LogicalAnd:
		if len(args) == 2 {
			return sub(fastAnd)
		}
	case operators.LogicalOr:
		if len(args) == 2 {
			return sub(fastOr)
		}
	case operators.Add:
		if len(args) == 2 && len(ids) == 1 && ids[0] == "add_string" {
			n := sub(fastConcat)
			if n != nil && n.args[0].op == fastConcat {
				// a + b + c is (a + b) + c: one node of three terms
				// makes the string once.
				n.args = append(slices.Clip(n.args[0].args), n.args[1])
			}
			return n
		}
	case operators.In:
		if len(args) != 2 || args[1].Kind() != celast.ListKind || a.GetType(args[0].ID()).Kind() != types.StringKind {
			return nil
		}
		l := args[1].AsList()
		if len(l.OptionalIndices()) > 0 {
			return nil
		}
		var strs []string
		for _, el := range l.Elements() {
			if el.Kind() != celast.LiteralKind {
				return nil
			}
			s, ok := el.AsLiteral().(types.String)
			if !ok {
				return nil
			}
			strs = append(strs, string(s))
		}
		x := compileTree(a, args[0], declared)
		if x == nil {
			return nil
		}
		return &fastNode{op: fastInStrings, args: []*fastNode{x}, strs: strs}
	}
	return nil
}

// sameOrderedKind reports whether both operands are typed as one kind
// CEL orders (its heterogeneous numeric comparisons stay on CEL).
func sameOrderedKind(a *celast.AST, l, r celast.Expr) bool {
	lk, rk := a.GetType(l.ID()).Kind(), a.GetType(r.ID()).Kind()
	if lk != rk {
		return false
	}
	switch lk {
	case types.IntKind, types.UintKind, types.DoubleKind, types.StringKind, types.TimestampKind, types.DurationKind:
		return true
	}
	return false
}

// kindOf is the kind of a scalar CEL value.
func kindOf(v ref.Val) types.Kind {
	switch v.(type) {
	case types.String:
		return types.StringKind
	case types.Int:
		return types.IntKind
	case types.Bool:
		return types.BoolKind
	case types.Double:
		return types.DoubleKind
	case types.Uint:
		return types.UintKind
	case types.Bytes:
		return types.BytesKind
	case types.Timestamp:
		return types.TimestampKind
	case types.Duration:
		return types.DurationKind
	}
	return types.ErrorKind
}

// eval evaluates the node as CEL's interpreter would.
func (n *fastNode) eval(a *activation) (ref.Val, fastStatus) {
	switch n.op {
	case fastLeaf:
		var v ref.Val
		var miss fastMiss
		ok := true
		switch n.leaf.kind {
		case fastLiteral:
			return n.leaf.lit, fastOK
		case fastAttr:
			v, miss, ok = n.leaf.attr(a)
		default:
			v, miss, ok = n.leaf.lookup(a)
		}
		switch {
		case !ok:
			return nil, fastGiveUp
		case miss != present:
			return nil, fastError
		}
		if kindOf(v) != n.want {
			return nil, fastGiveUp
		}
		return v, fastOK
	case fastDefaultOp: // non-strict: both arguments evaluated
		x, xs := n.args[0].eval(a)
		y, ys := n.args[1].eval(a)
		switch {
		case xs == fastGiveUp || ys == fastGiveUp:
			return nil, fastGiveUp
		case xs == fastOK:
			return x, fastOK
		}
		return y, ys
	case fastConditional: // non-strict: all three evaluated
		c, cs := n.args[0].eval(a)
		t, ts := n.args[1].eval(a)
		f, fs := n.args[2].eval(a)
		if cs == fastGiveUp || ts == fastGiveUp || fs == fastGiveUp {
			return nil, fastGiveUp
		}
		if cs == fastError {
			return nil, fastError
		}
		b, ok := c.(types.Bool)
		switch {
		case !ok:
			return nil, fastGiveUp
		case b == types.True:
			return t, ts
		}
		return f, fs
	case fastEq, fastNe: // strict: the right side not evaluated after an error
		l, ls := n.args[0].eval(a)
		if ls != fastOK {
			return nil, ls
		}
		r, rs := n.args[1].eval(a)
		if rs != fastOK {
			return nil, rs
		}
		eq := types.Equal(l, r)
		if n.op == fastNe {
			return types.Bool(eq != types.True), fastOK
		}
		if _, ok := eq.(types.Bool); !ok {
			return nil, fastGiveUp
		}
		return eq, fastOK
	case fastCompare:
		l, ls := n.args[0].eval(a)
		if ls != fastOK {
			return nil, ls
		}
		r, rs := n.args[1].eval(a)
		if rs != fastOK {
			return nil, rs
		}
		lc, ok := l.(traits.Comparer)
		if !ok || kindOf(l) != kindOf(r) {
			return nil, fastGiveUp
		}
		c, ok := lc.Compare(r).(types.Int)
		if !ok {
			return nil, fastGiveUp
		}
		switch n.cmp {
		case -1:
			return types.Bool(c < 0), fastOK
		case -2:
			return types.Bool(c <= 0), fastOK
		case 1:
			return types.Bool(c > 0), fastOK
		}
		return types.Bool(c >= 0), fastOK
	case fastNot:
		v, s := n.args[0].eval(a)
		if s != fastOK {
			return nil, s
		}
		b, ok := v.(types.Bool)
		if !ok {
			return nil, fastGiveUp
		}
		return !b, fastOK
	case fastAnd, fastOr:
		// The terms in order, stopping at the one that decides; an error
		// counts only when no term decides.
		decide := types.Bool(n.op == fastOr) // false decides &&, true decides ||
		result := fastOK
		for _, t := range n.args {
			v, s := t.eval(a)
			switch s {
			case fastGiveUp:
				return nil, fastGiveUp
			case fastError:
				result = fastError
				continue
			}
			b, ok := v.(types.Bool)
			if !ok {
				return nil, fastGiveUp
			}
			if b == decide {
				return decide, fastOK
			}
		}
		if result == fastError {
			return nil, fastError
		}
		return !decide, fastOK
	case fastInStrings:
		v, s := n.args[0].eval(a)
		if s != fastOK {
			return nil, s
		}
		str, ok := v.(types.String)
		if !ok {
			return nil, fastGiveUp
		}
		for _, x := range n.strs {
			if string(str) == x {
				return types.True, fastOK
			}
		}
		return types.False, fastOK
	case fastConcat:
		return n.concat(a)
	case fastMatch: // strict
		l, ls := n.args[0].eval(a)
		if ls != fastOK {
			return nil, ls
		}
		r, rs := n.args[1].eval(a)
		if rs != fastOK {
			return nil, rs
		}
		x, ok1 := l.(types.String)
		y, ok2 := r.(types.String)
		if !ok1 || !ok2 {
			return nil, fastGiveUp
		}
		return types.Bool(globMatch(string(x), string(y))), fastOK
	}
	return nil, fastGiveUp
}

// concat evaluates a chain of string concatenations, ((t0 + t1) + t2) +
// ..., as the nodes of each + would: the terms in order, stopping at the
// first that fails, and after each + its operands checked to be strings.
func (n *fastNode) concat(a *activation) (ref.Val, fastStatus) {
	str, s := n.concatString(a)
	if s != fastOK {
		return nil, s
	}
	return types.String(str), fastOK
}

// concatString is concat's string.
func (n *fastNode) concatString(a *activation) (string, fastStatus) {
	var parts [8]string
	strs := parts[:0]
	size := 0
	firstBad := false
	for i, t := range n.args {
		var x types.String
		var ok bool
		if t.plain { // no CEL value made for a term
			v, s := t.plainRaw(a)
			if s != fastOK {
				return "", s
			}
			x, ok = types.String(v.Str()), v.Kind() == attribute.KindString
		} else {
			v, s := t.eval(a)
			if s != fastOK {
				return "", s
			}
			x, ok = v.(types.String)
		}
		switch {
		case !ok && i == 0:
			firstBad = true // checked with the second term, as + does
		case !ok, i == 1 && firstBad:
			return "", fastGiveUp
		}
		strs = append(strs, string(x))
		size += len(x)
	}
	var b strings.Builder
	b.Grow(size)
	for _, x := range strs {
		b.WriteString(x)
	}
	return b.String(), fastOK
}
