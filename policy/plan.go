package policy

import (
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/common/types"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// deltaPlan is how a Sequence brings the previous bag's result up to date
// for a bag that changed a few attributes, without evaluating it again:
// the actions are the same while no match that reads a changed attribute
// decides otherwise, and each instance is the previous one with the
// fields that read a changed attribute evaluated again. It is made once
// per snapshot and variety.
//
// Every use of a program (a rule's match, an instance's field, an entry of
// a metric's dimensions or a log entry's variables, a span's field or
// tag) has a bit; bySlot lists, by attribute slot, the bits of the uses of
// the programs that read the attribute. A bag's changed attributes set
// their bits, and the set bits are all there is to do.
type deltaPlan struct {
	// ok is false when the variety has rules the plan does not follow
	// (header operations): every bag is then evaluated anew.
	ok     bool
	bits   int
	bySlot [][]int32
	// insts are, by instance index, where each instance's bits are.
	insts []instPlan
	// groups are the distinct map fields (metric dimensions, log entry
	// variables): instances with the same entries share one, as
	// evalFields shares their Fields.
	groups []groupPlan
	// matchBit is, by rule index, the bit of the rule's match (-1: none).
	matchBit []int32
	// timeSlot is context.time's slot (-1: none), which a log entry
	// without a timestamp expression takes its timestamp from.
	timeSlot int
	// reads are, by bit, the use's program as the plan reads it; lits
	// are their literals and names the attributes' names, by slot.
	reads []planRead
	lits  []planLit
	names []string
	// memoBySlot lists, by attribute slot, the programs reading it that
	// the plan may evaluate through the activation's memo (rule matches,
	// a log entry's severity and timestamp, the uses that are not plain
	// reads): a Sequence forgets their memo entries before the plan runs,
	// and those of the other programs only before a bag is evaluated
	// anew (Sequence.flush), as the plan reads them straight from the bag.
	memoBySlot [][]int
}

// planRead is a program as the plan reads it: a plain read (fastExpr.raw
// of an attribute, or default() of attributes and literals) is its
// leaves, laid out flat, so that reading it chases no pointers through
// the expression's nodes; so is a default() of plain reads and string
// concatenations of plain reads (opts: a span's name). Another
// expression is evaluated as a program (prg).
type planRead struct {
	prg    *program
	leaves planLeaves // nil: not a plain read
	opts   []planOpt  // nil: not a default() of concatenations
}

// planOpt is one argument of a default() of plain reads and
// concatenations (fastNode.strRaw): a plain read (leaves), or a
// concatenation of plain reads (parts).
type planOpt struct {
	leaves planLeaves
	parts  []planLeaves
}

// planLeaves are the leaves of a plain read (fastNode.chain).
type planLeaves []planLeaf

// planLeaf is an attribute (slot >= 0) or a literal (the plan's lits[lit])
// of a plain read. An attribute's value must have kind; with kind 0, any
// scalar kind. Leaves are small and the plan's are one array: a bag's
// reads walk a few cache lines.
type planLeaf struct {
	slot int32
	lit  int32
	kind attribute.Kind
}

// planLit is a literal of a plain read, as a bag value and a Go value.
type planLit struct {
	val attribute.Value
	nat any // val.Interface()
}

// readOf flattens prg.
func (p *deltaPlan) readOf(prg *program) planRead {
	r := planRead{prg: prg}
	if prg == nil || prg.fast == nil {
		return r
	}
	switch f := prg.fast; {
	case f.kind == fastAttr:
		r.leaves = planLeaves{{slot: int32(f.slot), lit: -1}}
	case f.kind == fastDefault && !f.index && f.litRawOK:
		r.leaves = planLeaves{{slot: int32(f.slot), lit: -1}, p.literal(f.litRaw)}
	case f.kind == fastTree && f.tree.plain:
		r.leaves = p.leavesOf(f.tree.chain)
	case f.kind == fastTree && f.tree.strRaw:
		r.opts, _ = p.optsOf(f.tree)
	}
	return r
}

// literal is the leaf of literal v.
func (p *deltaPlan) literal(v attribute.Value) planLeaf {
	p.lits = append(p.lits, planLit{val: v, nat: v.Interface()})
	return planLeaf{slot: -1, lit: int32(len(p.lits) - 1)}
}

// leavesOf is the leaves of a plain node's chain.
func (p *deltaPlan) leavesOf(chain []*fastNode) planLeaves {
	out := make(planLeaves, 0, len(chain))
	for _, l := range chain {
		if l.leaf.kind == fastLiteral {
			out = append(out, p.literal(l.leaf.litRaw))
		} else {
			out = append(out, planLeaf{slot: int32(l.leaf.slot), lit: -1, kind: l.rawKind})
		}
	}
	return out
}

// optsOf flattens a plain or strRaw node into the arguments of a
// default(): default(x, default(y, z)) is the first of x, y and z that
// has a value, all three evaluated. ok is false for a concatenation of
// other terms than plain reads.
func (p *deltaPlan) optsOf(n *fastNode) (opts []planOpt, ok bool) {
	switch {
	case n.plain:
		return []planOpt{{leaves: p.leavesOf(n.chain)}}, true
	case n.op == fastConcat:
		var parts []planLeaves
		for _, t := range n.args {
			if !t.plain {
				return nil, false
			}
			parts = append(parts, p.leavesOf(t.chain))
		}
		return []planOpt{{parts: parts}}, true
	case n.op == fastDefaultOp && n.strRaw:
		x, ok := p.optsOf(n.args[0])
		if !ok {
			return nil, false
		}
		y, ok := p.optsOf(n.args[1])
		if !ok {
			return nil, false
		}
		return append(x, y...), true
	}
	return nil, false
}

// compact moves the leaves of every read into one array, in the order of
// the bits (a map field's entries are consecutive bits).
func (p *deltaPlan) compact() {
	n := 0
	each := func(f func(*planLeaves)) {
		for i := range p.reads {
			r := &p.reads[i]
			f(&r.leaves)
			for j := range r.opts {
				f(&r.opts[j].leaves)
				for k := range r.opts[j].parts {
					f(&r.opts[j].parts[k])
				}
			}
		}
	}
	each(func(ls *planLeaves) { n += len(*ls) })
	all := make(planLeaves, 0, n)
	each(func(ls *planLeaves) {
		if *ls != nil {
			start := len(all)
			all = append(all, *ls...)
			*ls = all[start:len(all):len(all)]
		}
	})
}

// read is the value of a plain read as the bag has it, as fastExpr.raw
// gives it: a slot's (slot >= 0) or a literal's (lit). v is nil when r is
// not a plain read or it fails (an absent attribute outside default(), a
// value of another kind).
func (p *deltaPlan) read(a *activation, r *planRead) (v *attribute.Value, slot int32, lit *planLit) {
	v, slot, lit, st := p.readLeaves(a, r.leaves)
	if st != fastOK {
		return nil, -1, nil
	}
	return v, slot, lit
}

// readLeaves is read of leaves, with what it found: fastOK, fastError
// (every attribute absent, no literal) or fastGiveUp (a value of another
// kind).
func (p *deltaPlan) readLeaves(a *activation, ls planLeaves) (v *attribute.Value, slot int32, lit *planLit, st fastStatus) {
	slot = -1
	for i := range ls {
		l := &ls[i]
		if l.slot < 0 {
			if v == nil && lit == nil {
				lit = &p.lits[l.lit]
			}
			continue
		}
		s := a.slotOf(int(l.slot), p.names[l.slot])
		if !s.found {
			continue
		}
		if k := s.raw.Kind(); l.kind == 0 && !rawScalar(k) || l.kind != 0 && k != l.kind {
			return nil, -1, nil, fastGiveUp
		}
		if v == nil && lit == nil {
			v, slot = &s.raw, l.slot
		}
	}
	switch {
	case v != nil:
		return v, slot, nil, fastOK
	case lit != nil:
		return &lit.val, -1, lit, fastOK
	}
	return nil, -1, nil, fastError
}

// str is the value of a default() of plain reads and concatenations
// (opts), as fastNode.stringRaw gives it: every argument, and every term
// of a concatenation, is read, and the first argument that has a value
// is it; slot is the slot it is (-1: a string of its own or a literal).
// ok is false when no argument has one or one gives up: the program
// says what it is.
func (p *deltaPlan) str(a *activation, r *planRead) (v attribute.Value, slot int32, ok bool) {
	found := false
	slot = -1
	for i := range r.opts {
		o := &r.opts[i]
		if o.parts == nil {
			x, xslot, _, st := p.readLeaves(a, o.leaves)
			switch {
			case st == fastGiveUp:
				return attribute.Value{}, -1, false
			case st == fastOK && !found:
				v, slot, found = *x, xslot, true
			}
			continue
		}
		var parts [8]string
		strs, size, st := parts[:0], 0, fastOK
		for _, part := range o.parts {
			x, _, _, pst := p.readLeaves(a, part)
			switch {
			case pst == fastGiveUp:
				return attribute.Value{}, -1, false
			case pst == fastError:
				st = fastError
			case x.Kind() != attribute.KindString:
				return attribute.Value{}, -1, false
			case st == fastOK:
				strs = append(strs, x.Str())
				size += len(x.Str())
			}
		}
		if st == fastOK && !found {
			var b strings.Builder
			b.Grow(size)
			for _, x := range strs {
				b.WriteString(x)
			}
			v, slot, found = attribute.StringValue(b.String()), -1, true
		}
	}
	return v, slot, found
}

// instPlan is where an instance's bits are: n of them from base (a
// metric: its value; a log entry: its severity and timestamp; a span: its
// fields, then its tags; another template: one for all its programs), and
// the group of its map field (-1: none).
type instPlan struct {
	base, n int32
	group   int32
}

// groupPlan is a map field's entries, whose bits are len(progs) from
// base.
type groupPlan struct {
	base   int32
	progs  []namedProgram
	scalar bool
}

// Bits of a log entry's instPlan.
const (
	logSeverityBit  = 0
	logTimestampBit = 1
)

// planCache holds a snapshot's deltaPlan of one variety, made on first
// use.
type planCache struct {
	once sync.Once
	p    *deltaPlan
}

// deltaPlanOf returns the plan of variety v.
func (s *Snapshot) deltaPlanOf(v Variety) *deltaPlan {
	c := &s.plans[v]
	c.once.Do(func() { c.p = s.makeDeltaPlan(v) })
	return c.p
}

func (s *Snapshot) makeDeltaPlan(v Variety) *deltaPlan {
	p := &deltaPlan{ok: true, insts: make([]instPlan, len(s.instances)), matchBit: make([]int32, len(s.rules)), timeSlot: -1}
	progBits := map[int][]int32{} // by program id
	reads := map[int32]*program{} // by bit, of the uses the plan evaluates
	var next int32
	use := func(prg *program, bit int32) {
		if prg != nil {
			progBits[prg.id] = append(progBits[prg.id], bit)
			reads[bit] = prg
		}
	}
	memo := map[int]bool{} // by program id: evaluated through the memo
	evaluated := func(prg *program) {
		if prg != nil {
			memo[prg.id] = true
		}
	}
	group := func(progs []namedProgram, scalar bool) int32 {
		if len(progs) == 0 {
			return -1
		}
		for i, g := range p.groups {
			if g.scalar == scalar && sameEntries(g.progs, progs) {
				return int32(i)
			}
		}
		g := groupPlan{base: next, progs: progs, scalar: scalar}
		for i, np := range progs {
			use(np.program, next+int32(i))
		}
		next += int32(len(progs))
		p.groups = append(p.groups, g)
		return int32(len(p.groups) - 1)
	}
	var timeBits []int32
	for _, in := range s.instances {
		ip := instPlan{base: next, group: -1}
		switch in.template {
		case template.MetricName:
			ip.n = 1
			use(in.value, ip.base)
		case template.LogEntryName:
			ip.n = 2
			use(in.severity, ip.base+logSeverityBit)
			evaluated(in.severity)
			evaluated(in.timestamp)
			if in.timestamp != nil {
				use(in.timestamp, ip.base+logTimestampBit)
			} else {
				timeBits = append(timeBits, ip.base+logTimestampBit)
			}
		case template.TraceSpanName:
			ip.n = int32(spanFields + len(in.span.tags))
			for i, prg := range in.span.fields() {
				use(prg, ip.base+int32(i))
			}
			for i, np := range in.span.tags {
				use(np.program, ip.base+int32(spanFields+i))
			}
		default:
			ip.n = 1
			for _, prg := range in.programs() {
				if prg != nil {
					progBits[prg.id] = append(progBits[prg.id], ip.base)
				}
			}
		}
		next += ip.n
		switch in.template {
		case template.MetricName:
			ip.group = group(in.dimensions, true)
		case template.LogEntryName:
			ip.group = group(in.variables, false)
		}
		p.insts[in.index] = ip
	}
	for ri, r := range s.rules {
		p.matchBit[ri] = -1
		if v == VarietyCheck && (len(r.requestOps) > 0 || len(r.responseOps) > 0) {
			p.ok = false // header operations are not followed
		}
		if len(r.byVariety[v]) > 0 && r.match != nil {
			p.matchBit[ri] = next
			use(r.match, next)
			evaluated(r.match)
			next++
		}
	}
	if slot, ok := s.slots[attribute.ContextTime]; ok {
		p.timeSlot = slot
	}
	p.bits = int(next)
	p.reads = make([]planRead, p.bits)
	for bit := range p.reads {
		if prg := reads[int32(bit)]; prg != nil {
			p.reads[bit] = p.readOf(prg)
			if p.reads[bit].leaves == nil && p.reads[bit].opts == nil {
				evaluated(prg)
			}
		}
	}
	p.compact()
	p.names = make([]string, len(s.readers))
	for name, slot := range s.slots {
		if slot < len(p.names) {
			p.names[slot] = name
		}
	}
	p.bySlot = make([][]int32, len(s.readers))
	p.memoBySlot = make([][]int, len(s.readers))
	for slot, ids := range s.readers {
		for _, id := range ids {
			if memo[id] {
				p.memoBySlot[slot] = append(p.memoBySlot[slot], id)
			}
		}
		var bs []int32
		for _, id := range ids {
			bs = append(bs, progBits[id]...)
		}
		if slot == p.timeSlot {
			bs = append(bs, timeBits...)
		}
		slices.Sort(bs)
		p.bySlot[slot] = slices.Compact(bs)
	}
	return p
}

// programs lists the programs of an instance of a template the plan does
// not rebuild (listentry, quota, authorization).
func (in *instance) programs() []*program {
	out := []*program{in.value, in.severity, in.timestamp}
	for _, np := range slices.Concat(in.dimensions, in.variables) {
		out = append(out, np.program)
	}
	if z := in.authz; z != nil {
		out = append(out, z.user, z.groups, z.namespace, z.service, z.method, z.path)
		for _, np := range slices.Concat(z.subjectProps, z.actionProps) {
			out = append(out, np.program)
		}
	}
	if in.span != nil {
		f := in.span.fields()
		out = append(out, f[:]...)
		for _, np := range in.span.tags {
			out = append(out, np.program)
		}
	}
	return out
}

// bitSet is a set of a plan's bits.
type bitSet []uint64

func (b bitSet) set(i int32) { b[i>>6] |= 1 << (i & 63) }

func (b bitSet) has(i int32) bool { return b[i>>6]&(1<<(i&63)) != 0 }

// any reports whether one of the n bits from base is set.
func (b bitSet) any(base, n int32) bool {
	for i := base; i < base+n; {
		w := b[i>>6] >> (i & 63)
		if left := base + n - i; left < 64 {
			w &= 1<<left - 1
		}
		if w != 0 {
			return true
		}
		i = (i | 63) + 1
	}
	return false
}

// next is the first set bit of the n from base at or after i, as an
// offset from base; -1 when none is.
func (b bitSet) next(base, n, i int32) int32 {
	for i < n {
		at := base + i
		w := b[at>>6] >> (at & 63)
		if w != 0 {
			if j := i + int32(bits.TrailingZeros64(w)); j < n {
				return j
			}
			return -1
		}
		i += 64 - at&63
	}
	return -1
}

// planned is the Sequence's state for its plan: the previous bag's
// result and what a bag changes of it.
type planned struct {
	p *deltaPlan
	// ok is set when the previous bag's result may be brought up to date:
	// it had no errors, and inst lists, in the order of its actions'
	// instances, their instance indexes.
	ok    bool
	inst  []int32
	dirty bitSet
	// cur and curStep are the instances built for the bag (at the
	// activation's step), by instance index; groups and groupStep the
	// map fields, by group.
	cur       []template.Instance
	curStep   []uint64
	groups    []template.Fields
	groupStep []uint64
	// pos and vals are scratch: the changed entries of a map field or
	// span's tags.
	pos  []int32
	vals []any
	// spans and tags are where new spans and their tags are cut from.
	spans []template.TraceSpan
	tags  []template.SpanTag
	// metrics is the Sequence's, given the metrics built.
	metrics []*template.Metric
	// deltas counts the bags brought up to date (for tests).
	deltas int
}

// newPlanned starts the plan's state for s's instances.
func newPlanned(p *deltaPlan, instances int, metrics []*template.Metric) *planned {
	return &planned{p: p, metrics: metrics, dirty: make(bitSet, (p.bits+63)/64), cur: make([]template.Instance, instances),
		curStep: make([]uint64, instances), groups: make([]template.Fields, len(p.groups)),
		groupStep: make([]uint64, len(p.groups))}
}

// changed marks the uses of the programs that read slot, and reads the
// slot's value for the bag: read once here, it is at hand for every use.
func (d *planned) changed(a *activation, slot int) {
	if slot < len(d.p.bySlot) && len(d.p.bySlot[slot]) > 0 {
		for _, b := range d.p.bySlot[slot] {
			d.dirty.set(b)
		}
		a.readSlot(slot, d.p.names[slot])
	}
}

// learn records the result evaluate made for the bag: matched says, by
// rule index, which rules matched.
func (d *planned) learn(s *Snapshot, v Variety, res Result, matched []bool) {
	d.ok = false
	d.inst = d.inst[:0]
	if !d.p.ok || len(res.Errors) > 0 {
		return
	}
	for ri, r := range s.rules {
		if len(r.byVariety[v]) == 0 || !matched[ri] {
			continue
		}
		for _, va := range r.byVariety[v] {
			for _, in := range va.instances {
				d.inst = append(d.inst, int32(in.index))
			}
		}
	}
	n := 0
	for _, act := range res.Actions {
		n += len(act.Instances)
	}
	d.ok = n == len(d.inst)
}

// evaluate is Snapshot.evaluate for a bag that follows the previous one
// (d.ok), its changes marked in d.dirty: the previous result brought up to
// date. ok is false when the plan cannot say (a match decides otherwise,
// a field fails): the bag is then evaluated anew, which finds the same
// values and reports the errors.
func (d *planned) evaluate(s *Snapshot, a *activation, matched []bool) (Result, bool) {
	for ri, b := range d.p.matchBit {
		if b < 0 || !d.dirty.has(b) {
			continue
		}
		out, err := s.rules[ri].match.eval(a)
		if err != nil || (out == types.True) != matched[ri] {
			return Result{}, false
		}
	}
	k := 0
	for _, act := range a.acts {
		for j, prev := range act.Instances {
			idx := d.inst[k]
			k++
			if d.curStep[idx] == a.step {
				act.Instances[j] = d.cur[idx]
				continue
			}
			bi, ok := d.rebuild(s, a, s.instances[idx], prev)
			if !ok {
				return Result{}, false
			}
			d.cur[idx], d.curStep[idx] = bi, a.step
			act.Instances[j] = bi
			if m, ok := bi.(*template.Metric); ok {
				d.metrics[idx] = m
			}
		}
	}
	d.deltas++
	if len(a.acts) == 0 {
		return Result{}, true
	}
	return Result{Actions: a.acts}, true
}

// rebuild is instance in for the bag: prev, built for the bag before,
// when none of its fields read a changed attribute, else a copy of it with
// those evaluated again.
func (d *planned) rebuild(s *Snapshot, a *activation, in *instance, prev template.Instance) (template.Instance, bool) {
	ip := d.p.insts[in.index]
	own := d.dirty.any(ip.base, ip.n)
	grp := ip.group >= 0 && d.dirty.any(d.p.groups[ip.group].base, int32(len(d.p.groups[ip.group].progs)))
	now := false // a log entry's timestamp is the clock's
	if in.template == template.LogEntryName && in.timestamp == nil {
		// As build: the clock's unless context.time is a timestamp.
		ct := d.p.timeSlot >= 0 && a.slotOf(d.p.timeSlot, attribute.ContextTime).found
		now = !ct || a.slots[d.p.timeSlot].raw.Kind() != attribute.KindTimestamp
	}
	if !own && !grp && !now {
		return prev, true
	}
	switch in.template {
	case template.MetricName:
		pm, ok := prev.(*template.Metric)
		if !ok {
			return nil, false
		}
		val := pm.Value
		if own {
			if val, ok = d.native(a, ip.base); !ok {
				return nil, false
			}
			switch val.(type) {
			case int64, float64, time.Duration:
			default:
				return nil, false
			}
		}
		dims := pm.Dimensions
		if grp {
			if dims, ok = d.fields(a, ip.group, dims); !ok {
				return nil, false
			}
		}
		m := a.newMetric()
		m.Name, m.Value, m.Dimensions = in.name, val, dims
		return m, true
	case template.LogEntryName:
		pl, ok := prev.(*template.LogEntry)
		if !ok {
			return nil, false
		}
		vars := pl.Variables
		if grp {
			if vars, ok = d.fields(a, ip.group, vars); !ok {
				return nil, false
			}
		}
		sev, ts := pl.Severity, pl.Timestamp
		if in.severity != nil && d.dirty.has(ip.base+logSeverityBit) {
			v, err := in.severity.eval(a)
			sv, ok := v.(types.String)
			if err != nil || !ok {
				return nil, false
			}
			sev = string(sv)
		}
		switch {
		case in.timestamp != nil:
			if d.dirty.has(ip.base + logTimestampBit) {
				v, err := in.timestamp.eval(a)
				t, ok := v.(types.Timestamp)
				if err != nil || !ok {
					return nil, false
				}
				ts = t.Time
			}
		case now && s.now != nil:
			ts = s.now()
		case now:
			ts = time.Now()
		case d.dirty.has(ip.base + logTimestampBit):
			ts = a.slotOf(d.p.timeSlot, attribute.ContextTime).raw.Time()
		}
		le := a.newLogEntry()
		le.Name, le.Variables, le.Severity, le.Timestamp = in.name, vars, sev, ts
		return le, true
	case template.TraceSpanName:
		ps, ok := prev.(*template.TraceSpan)
		if !ok {
			return nil, false
		}
		return d.span(a, in, ip, ps)
	}
	return nil, false
}

// native is the value of the program of bit as a Go value
// (program.evalNative), read straight from the bag when it is a plain
// read; ok is false when it fails.
func (d *planned) native(a *activation, bit int32) (any, bool) {
	r := &d.p.reads[bit]
	if r.leaves != nil {
		if v, slot, lit := d.p.read(a, r); lit != nil {
			return lit.nat, true
		} else if v != nil {
			return a.slotNative(int(slot), v), true
		}
		return nil, false // the program's memo may be stale: see memoBySlot
	} else if r.opts != nil {
		if v, slot, ok := d.p.str(a, r); ok {
			if slot >= 0 {
				return a.slotNative(int(slot), &v), true
			}
			return a.box(&v), true
		}
		return nil, false
	} else if r.prg.fast != nil {
		a.rawSlot = -1
		if v, ok := r.prg.fast.raw(a); ok {
			if a.rawSlot >= 0 {
				return a.slotNative(a.rawSlot, &v), true
			}
			return a.box(&v), true
		}
	}
	nv, err := r.prg.evalNative(a)
	return nv, err == nil
}

// slotNative is v, the value of slot, as a Go value, boxed once per bag.
func (a *activation) slotNative(slot int, v *attribute.Value) any {
	s := &a.slots[slot]
	if !s.hasNat {
		s.nat, s.hasNat = a.box(v), true
	}
	return s.nat
}

// fields is map field g for the bag, built once: prev (the bag before's)
// with its entries that read a changed attribute evaluated again; prev
// itself when they all have the values they had.
func (d *planned) fields(a *activation, g int32, prev template.Fields) (template.Fields, bool) {
	if d.groupStep[g] == a.step {
		return d.groups[g], true
	}
	gp := &d.p.groups[g]
	n := int32(len(gp.progs))
	if prev.Len() != int(n) {
		return template.Fields{}, false
	}
	d.pos, d.vals = d.pos[:0], d.vals[:0]
	for i := d.dirty.next(gp.base, n, 0); i >= 0; i = d.dirty.next(gp.base, n, i+1) {
		nv, ok := d.native(a, gp.base+i)
		if !ok {
			return template.Fields{}, false
		}
		if gp.scalar {
			switch nv.(type) {
			case map[string]string, map[string]any, []any:
				return template.Fields{}, false
			}
		}
		if !template.SameValue(nv, prev.At(int(i))) {
			d.pos, d.vals = append(d.pos, i), append(d.vals, nv)
		}
	}
	f := prev
	if len(d.pos) > 0 {
		f = d.patch(a, prev)
	}
	d.groups[g], d.groupStep[g] = f, a.step
	return f, true
}

// patch is prev with the values of d.vals at positions d.pos (in
// order): a Fields patched from prev's base (template.Patch), which keeps
// the values of the positions patched before and takes the new ones, so
// that only the positions a batch's bags change are cut for each bag;
// a copy of them all when most are.
func (d *planned) patch(a *activation, prev template.Fields) template.Fields {
	n := prev.Len()
	base := prev.Base()
	var mask uint64
	if n <= 64 {
		mask = prev.Patched()
		for _, i := range d.pos {
			mask |= 1 << i
		}
	}
	defer clear(d.vals)
	switch k := bits.OnesCount64(mask); {
	case n > 64 || k > n/2 || k == 0:
		vals := a.values(n)
		for i := range vals {
			vals[i] = prev.At(i)
		}
		for j, i := range d.pos {
			vals[i] = d.vals[j]
		}
		return template.MakeFields(prev.Layout(), vals)
	default:
		over := a.values(k)
		j := 0
		for m, o := mask, 0; m != 0; m, o = m&(m-1), o+1 {
			i := int32(bits.TrailingZeros64(m))
			for j < len(d.pos) && d.pos[j] < i {
				j++
			}
			if j < len(d.pos) && d.pos[j] == i {
				over[o] = d.vals[j]
			} else {
				over[o] = prev.At(int(i))
			}
		}
		return template.Patch(base, mask, over)
	}
}

// span is tracespan in for the bag: a copy of prev with the fields and
// tags that read a changed attribute evaluated again.
func (d *planned) span(a *activation, in *instance, ip instPlan, prev *template.TraceSpan) (template.Instance, bool) {
	out := &cut(&d.spans, 1, chunkSpans)[0]
	*out = *prev
	for i := d.dirty.next(ip.base, spanFields, 0); i >= 0; i = d.dirty.next(ip.base, spanFields, i+1) {
		if !d.spanField(a, out, int(i), &d.p.reads[ip.base+i]) {
			return nil, false
		}
	}
	tags := in.span.tags
	n := int32(len(tags))
	if n == 0 {
		return out, true
	}
	d.pos, d.vals = d.pos[:0], d.vals[:0]
	base := ip.base + spanFields
	for i := d.dirty.next(base, n, 0); i >= 0; i = d.dirty.next(base, n, i+1) {
		nv, ok := d.tag(a, base+i)
		if !ok {
			return nil, false
		}
		if !template.SameValue(nv, prev.SpanTags[i].Value) {
			d.pos, d.vals = append(d.pos, i), append(d.vals, nv)
		}
	}
	if len(d.pos) > 0 {
		out.SpanTags = cut(&d.tags, len(tags), len(tags)*chunkSpans)
		copy(out.SpanTags, prev.SpanTags)
		for j, i := range d.pos {
			out.SpanTags[i].Value = d.vals[j]
		}
		clear(d.vals)
	}
	return out, true
}

// spanField is keptSpan.setField without its bookkeeping: false when the
// field fails.
func (d *planned) spanField(a *activation, out *template.TraceSpan, i int, r *planRead) bool {
	var v *attribute.Value
	if r.leaves != nil {
		if v, _, _ = d.p.read(a, r); v == nil {
			return false // the program's memo may be stale: see memoBySlot
		}
	}
	if v == nil && r.opts != nil {
		raw, _, ok := d.p.str(a, r)
		if !ok {
			return false
		}
		v = &raw
	}
	if v == nil && r.prg.fast != nil {
		if raw, ok := r.prg.fast.raw(a); ok {
			v = &raw
		}
	}
	if v == nil {
		raw, ok, err := r.prg.evalRaw(a)
		if err != nil || !ok {
			return false
		}
		v = &raw
	}
	if v.Kind() != spanFieldKinds[i] {
		return false
	}
	return putSpanField(out, i, v)
}

// tag is a span tag's value (keptSpan.tagValue); false when it fails.
func (d *planned) tag(a *activation, bit int32) (any, bool) {
	nv, ok := d.native(a, bit)
	if !ok {
		return nil, false
	}
	switch nv.(type) {
	case map[string]string, map[string]any, []any:
		return nil, false
	case []byte, time.Duration:
		nv = template.FormatValue(nv)
	}
	return nv, true
}
