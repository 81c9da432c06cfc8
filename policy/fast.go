package policy

import (
	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
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
}

type fastKind uint8

const (
	fastLiteral fastKind = iota + 1
	fastAttr
	fastIndex
	fastDefault
)

// compileFast returns the fast form of a checked expression, or nil when
// the expression has another shape and stays on CEL.
func compileFast(checked *cel.Ast, declared func(string) bool) *fastExpr {
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
		return &fastExpr{kind: fastDefault, name: name, lit: dflt.AsLiteral()}
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
