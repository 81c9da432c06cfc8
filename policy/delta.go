package policy

import "math/bits"

// fieldIndex finds, among the entries of a field an activation keeps
// across bags (a map's or Fields' entries, a span's fields and tags), those
// whose program a Sequence forgot for the bag (activation.forgotten): of
// a field built for the previous bag, only they may have another value
// now, so they are all that is evaluated again, in order, without a look
// at the others. A report bag changes a dozen attributes (ids, paths,
// times, sizes) of the forty its instances' hundred fields read.
type fieldIndex struct {
	// first is, by program id, 1 + the first position of that program
	// (0: none); next is, by position, 1 + the next position of the same
	// program (0: none).
	first []int32
	next  []int32
	// marks is the set of positions mark found, taken by pop.
	marks []uint64
}

// makeFieldIndex indexes a field whose entry at position i is program
// ids[i] (negative: none).
func makeFieldIndex(ids []int) fieldIndex {
	n := 0
	for _, id := range ids {
		n = max(n, id+1)
	}
	x := fieldIndex{first: make([]int32, n), next: make([]int32, len(ids)), marks: make([]uint64, (len(ids)+63)/64)}
	for i := len(ids) - 1; i >= 0; i-- {
		if id := ids[i]; id >= 0 {
			x.next[i] = x.first[id]
			x.first[id] = int32(i + 1)
		}
	}
	return x
}

// mark sets the positions of the programs of ids, the others cleared, and
// reports whether there are any.
func (x *fieldIndex) mark(ids []int) bool {
	clear(x.marks)
	found := false
	for _, id := range ids {
		if id >= len(x.first) {
			continue
		}
		for p := x.first[id]; p != 0; p = x.next[p-1] {
			x.marks[(p-1)>>6] |= 1 << ((p - 1) & 63)
			found = true
		}
	}
	return found
}

// start is the first position a walk over a field's entries looks at:
// every one from 0, or with marked only those mark found (-1: none).
func (x *fieldIndex) start(marked bool) int {
	if marked {
		return x.pop()
	}
	return 0
}

// step is the position such a walk looks at after i (-1: none left when
// marked; past the end otherwise).
func (x *fieldIndex) step(i int, marked bool) int {
	if marked {
		return x.pop()
	}
	return i + 1
}

// pop returns the first marked position and unmarks it; -1 when none is.
func (x *fieldIndex) pop() int {
	for w, b := range x.marks {
		if b != 0 {
			x.marks[w] = b & (b - 1)
			return w<<6 + bits.TrailingZeros64(b)
		}
	}
	return -1
}

// fresh reports whether a field built at step (done: completely) may be
// brought up to date with the programs forgotten since (fieldIndex): the
// activation evaluates a Sequence's bag and the field was built for the
// bag before it.
func (a *activation) fresh(done bool, step uint64) bool {
	return a.delta && done && step+1 == a.step
}

// idOf is p's program id, -1 for none.
func idOf(p *program) int {
	if p == nil {
		return -1
	}
	return p.id
}

// idsOf is the program ids of entries (negative for none).
func idsOf(progs []namedProgram) []int {
	ids := make([]int, len(progs))
	for i, np := range progs {
		ids[i] = idOf(np.program)
	}
	return ids
}
