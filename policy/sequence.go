package policy

import (
	"slices"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// maxSequenceMaps bounds the map attributes' wrappers a Sequence
// accumulates (one per changed map attribute per bag) before it starts
// afresh.
const maxSequenceMaps = 64

// Sequence evaluates the bags of one report batch in order, as Evaluate
// with no references recorded, reusing what it learnt from the bag before:
// an expression none of whose attributes changed has the value it had
// then, so only the ones that read what a request changes (its id, path,
// sizes, times, trace) are evaluated again. The bags of one proxy's batch
// come as deltas of each other (attribute.Dictionary.DecodeBatchChanges
// names what each changed), and most of a request's attributes (workloads,
// namespaces, principals, protocol) repeat those of the request before.
//
// A Sequence is used by one goroutine; Close returns its memory.
type Sequence struct {
	s *Snapshot
	v Variety
	a *activation
	// kept is set when the activation holds the previous bag's values and
	// they may be kept for the next.
	kept bool
	// metrics are the metric instances built for the previous bag, by
	// instance index (nil: none); a metric none of whose fields' programs
	// was forgotten since is the same instance again. Metrics are
	// read-only once built, as every instance.
	metrics []*template.Metric
	// names and slots are the last changed list's names and their slots
	// (-1: no expression reads it): the bags of a batch mostly change the
	// same attributes, named by the same dictionary strings, so comparing
	// the names costs less than looking each up.
	names []string
	slots []int
	// d brings the previous bag's result up to date for a bag that
	// changed a few attributes (deltaPlan).
	d *planned
	// pending are the slots changed since the last bag evaluated anew
	// whose programs' memo entries are still to be forgotten (flush), by
	// slot in pendingSet: while the plan brings bags up to date, it reads
	// them from the bag and the memo is left as it was.
	pending    []int
	pendingSet bitSet
}

// NewSequence starts a sequence of evaluations of variety v.
func (s *Snapshot) NewSequence(v Variety) *Sequence {
	return &Sequence{s: s, v: v}
}

// Evaluate is Snapshot.Evaluate(bag, v, nil). changed names every
// attribute whose presence or value may differ from the bag of the
// previous call (it may name more); it is not read on the first call nor
// after Reset. The previous bag's values (strings, maps) must still be
// valid, as DecodeBatchChanges leaves them; the bag itself need not be.
// The result's slices (actions, their instance lists) are valid until the
// next call: they are made in the same memory each time.
func (q *Sequence) Evaluate(bag *attribute.Bag, changed []string) Result {
	s := q.s
	if s == nil || q.v < 0 || int(q.v) >= len(rule{}.byVariety) {
		return Result{}
	}
	a := q.a
	// A field built for the previous bag (step - 1) needs only its
	// entries of the programs forgotten for this one (a.forgotten)
	// evaluated again: see fieldIndex. A new start skips a step, so
	// nothing built before it passes for the previous bag's.
	switch {
	case a == nil:
		a = getActivation(bag, nil, len(s.instances))
		q.a = a
		a.step += 2
	case !q.kept || a.used > maxSequenceMaps:
		a.reset()
		clear(q.metrics)
		q.dropPending()
		a.step += 2
	default:
		a.forgotten = a.forgotten[:0]
		if q.d != nil {
			clear(q.d.dirty)
		}
		a.bag = bag
		q.forget(changed)
		a.step++
		if q.d != nil && q.d.ok {
			if res, ok := q.d.evaluate(s, a, a.matched); ok {
				q.kept = len(a.resolved) == 0
				clear(a.resolved)
				a.resolved = a.resolved[:0]
				a.absent = false
				return res
			}
		}
		q.flush()
		a.delta = true
	}
	if q.metrics == nil {
		q.metrics = make([]*template.Metric, len(s.instances))
	}
	if q.d == nil {
		q.d = newPlanned(s.deltaPlanOf(q.v), len(s.instances), q.metrics)
	}
	a.bag = bag
	a.keepResult = true
	if len(a.matched) != len(s.rules) {
		a.matched = make([]bool, len(s.rules))
	}
	a.insts = a.insts[:0]
	for i, m := range q.metrics {
		if m != nil {
			a.built[i] = m
		}
	}
	res := s.evaluate(a, q.v)
	a.acts = res.Actions
	if len(res.Actions) == 0 {
		res.Actions = nil // as Evaluate's
	}
	for i, b := range a.built {
		if m, ok := b.(*template.Metric); ok {
			q.metrics[i] = m
		}
	}
	// What an undeclared name resolved to is not tracked by slot: start
	// afresh after one.
	q.kept = len(a.resolved) == 0
	q.d.learn(s, q.v, res, a.matched)
	a.delta = false
	a.forgetBuilt()
	return res
}

// forget drops the values of the changed attributes and of the programs
// that read them; when the plan is to bring the bag up to date, only of
// the programs it evaluates through the memo, the others' pending.
func (q *Sequence) forget(changed []string) {
	a := q.a
	lazy := q.d != nil && q.d.ok
	if !lazy {
		q.flush()
	}
	for i, name := range changed {
		var slot int
		if i < len(q.names) && q.names[i] == name {
			slot = q.slots[i]
		} else {
			s, ok := q.s.slots[name]
			if !ok {
				s = -1
			}
			if i < len(q.names) {
				q.names[i], q.slots[i] = name, s
			} else {
				q.names, q.slots = append(q.names, name), append(q.slots, s)
			}
			slot = s
		}
		if slot < 0 {
			continue // no expression reads it
		}
		if slot < len(a.slots) {
			a.slots[slot].forget()
		}
		if q.d != nil {
			q.d.changed(a, slot)
		}
		if !lazy {
			q.forgetReaders(q.s.readers[slot])
			continue
		}
		q.forgetReaders(q.d.p.memoBySlot[slot])
		if len(q.pendingSet) == 0 {
			q.pendingSet = make(bitSet, (len(q.s.readers)+63)/64)
		}
		if !q.pendingSet.has(int32(slot)) {
			q.pendingSet.set(int32(slot))
			q.pending = append(q.pending, slot)
		}
	}
}

// forgetReaders forgets the memo entries of programs ids and the metrics
// they are fields of.
func (q *Sequence) forgetReaders(ids []int) {
	a := q.a
	for _, id := range ids {
		if id < len(a.memo) {
			if m := &a.memo[id]; m.stamp != 0 {
				// Once: a forgotten entry has no stamp.
				a.forgotten = append(a.forgotten, id)
				m.forget()
			}
		}
		for _, in := range q.s.metricsOf[id] {
			q.metrics[in] = nil
		}
	}
}

// flush forgets the programs of the pending slots, before a bag is
// evaluated anew.
func (q *Sequence) flush() {
	for _, slot := range q.pending {
		q.forgetReaders(q.s.readers[slot])
	}
	q.dropPending()
}

// dropPending forgets the pending slots (the memo is cleared).
func (q *Sequence) dropPending() {
	for _, slot := range q.pending {
		q.pendingSet[slot>>6] &^= 1 << (slot & 63)
	}
	q.pending = q.pending[:0]
}

// Reset makes the next Evaluate start afresh (a bag was skipped, so the
// next one's changes are not relative to the last evaluated).
func (q *Sequence) Reset() { q.kept = false }

// Close ends the sequence.
func (q *Sequence) Close() {
	if q.a != nil {
		putActivation(q.a)
		q.a = nil
	}
	q.kept = false
}

// metricsOf lists, by program id, the metric instances whose value or
// dimensions that program is.
func metricsOf(instances []*instance, programs int) [][]int {
	out := make([][]int, programs)
	add := func(p *program, in int) {
		if p != nil && p.id < len(out) && !slices.Contains(out[p.id], in) {
			out[p.id] = append(out[p.id], in)
		}
	}
	for _, in := range instances {
		if in.template != template.MetricName || in.broken {
			continue
		}
		add(in.value, in.index)
		for _, np := range in.dimensions {
			add(np.program, in.index)
		}
	}
	return out
}
