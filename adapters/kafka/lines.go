package kafka

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/jsonline"
	"github.com/sidemix/sidemix/adapters/template"
)

// Log entries' JSON lines (encoding json) are written into slabs, arrays
// of many lines that the handler recycles: a line is some 700 bytes, two
// thousand of them a second on a mesh of a thousand requests a second,
// and lines allocated afresh made the mixer's heap grow toward its next
// collection faster (each new page a fault) and collect more often. A
// slab goes back to the handler's free list once every record whose value
// is in it is settled (acknowledged, or dropped for good) and its writer
// moved on to another; a slab one of whose records failed a write is left
// to the garbage collector instead (kafka-go's connection may still read
// the record while it gives up, see pooledValue.keep).
//
// The lines are the handler's own: other handlers that write the same
// entries (examples/default's accesslog) encode their own.

// lineSlab is an array of lines; a record whose value is in it has it as
// its WriterData.
type lineSlab struct {
	buf []byte
	// refs counts the unsettled records whose values are in buf, plus
	// one while a lineWriter writes into it.
	refs atomic.Int64
	keep atomic.Bool // a write of one of its records failed
	free *slabList
}

// release settles one of s's references.
func (s *lineSlab) release() {
	if s.refs.Add(-1) == 0 {
		s.free.put(s)
	}
}

const (
	// slabSize is the size of a lineSlab's array.
	slabSize = 64 << 10
	// maxLine is the most room a line needs in a slab to be written
	// there, or 2 lines as long as the last one and a little.
	maxLine = slabSize / 8
	// maxFreeSlabs bounds the slabs a handler keeps for reuse (8 MiB):
	// what a report of 10,000 lines fills.
	maxFreeSlabs = 128
)

// slabList is a handler's free slabs.
type slabList struct {
	mu   sync.Mutex
	free []*lineSlab
}

// get returns an empty slab, referenced once (by its writer).
func (l *slabList) get() *lineSlab {
	l.mu.Lock()
	var s *lineSlab
	if n := len(l.free); n > 0 {
		s = l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
	}
	l.mu.Unlock()
	if s == nil {
		s = &lineSlab{buf: make([]byte, 0, slabSize), free: l}
	}
	s.refs.Store(1)
	return s
}

// put takes back s, which nothing refers to any more, unless a write of
// one of its records failed or the list is full.
func (l *slabList) put(s *lineSlab) {
	if s.keep.Load() {
		return
	}
	s.buf = s.buf[:0]
	l.mu.Lock()
	if len(l.free) < maxFreeSlabs {
		l.free = append(l.free, s)
	}
	l.mu.Unlock()
}

// lineWriter writes a report's lines into slabs: a jsonline encoder, which
// copies from the line before what an entry has in common with it, and
// the slab it writes into.
type lineWriter struct {
	enc  jsonline.Encoder
	slab *lineSlab // nil before the first line
	last int       // the last line's length
}

// writerList is a handler's idle lineWriters: reports may run
// concurrently, so each takes one. A writer keeps its slab, and the last
// line it wrote there, from one report to the next.
type writerList struct {
	mu   sync.Mutex
	free []*lineWriter
}

func (l *writerList) get() *lineWriter {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.free)
	if n == 0 {
		return new(lineWriter)
	}
	w := l.free[n-1]
	l.free[n-1] = nil
	l.free = l.free[:n-1]
	return w
}

func (l *writerList) put(w *lineWriter) {
	l.mu.Lock()
	l.free = append(l.free, w)
	l.mu.Unlock()
}

// line writes e's line and returns it with the slab holding it, which
// the line's record references (nil when the line was too long for the
// slab's room and has an array of its own).
func (w *lineWriter) line(free *slabList, e *template.LogEntry, now time.Time) ([]byte, *lineSlab) {
	s := w.slab
	var old *lineSlab
	if s == nil || cap(s.buf)-len(s.buf) < min(2*w.last+256, maxLine) {
		// The encoder copies from the last line, in the old slab: its
		// writer's reference goes once the line is written.
		old, s = s, free.get()
		w.slab = s
	}
	start := len(s.buf)
	b := w.enc.AppendLine(s.buf[start:start], e, now)
	w.last = len(b)
	if old != nil {
		old.release()
	}
	if &b[:1][0] != &s.buf[:start+1][start] {
		return b[:len(b):len(b)], nil // outgrew the slab's room
	}
	s.buf = s.buf[:start+len(b)]
	s.refs.Add(1)
	return s.buf[start:len(s.buf):len(s.buf)], s
}
