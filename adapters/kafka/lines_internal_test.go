package kafka

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/jsonline"
	"github.com/sidemix/sidemix/adapters/template"
)

func longEntry(i int) *template.LogEntry {
	return &template.LogEntry{
		Name:      "accesslog",
		Timestamp: time.Date(2025, 3, 1, 11, 0, 0, i, time.UTC),
		Variables: template.FieldsOf(map[string]any{"path": strings.Repeat("p", 600), "seq": int64(i)}),
	}
}

// TestLineSlabRecycled: a slab goes back to the free list once every
// record in it is settled and its writer moved on, not before; a slab
// one of whose records failed a write never does; the lines are what
// AppendLogEntry writes.
func TestLineSlabRecycled(t *testing.T) {
	var free slabList
	var w lineWriter
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	bySlab := map[*lineSlab]int{}
	var order []*lineSlab
	for i := range 300 {
		e := longEntry(i)
		line, s := w.line(&free, e, now)
		if want := string(new(jsonline.Encoder).AppendLogEntry(nil, e, now)); string(line) != want {
			t.Fatalf("line %d: %s, want %s", i, line, want)
		}
		if s == nil {
			t.Fatalf("line %d not in a slab", i)
		}
		if bySlab[s] == 0 {
			order = append(order, s)
		}
		bySlab[s]++
	}
	if len(order) < 3 {
		t.Fatalf("%d slabs, want at least 3", len(order))
	}
	first, second, current := order[0], order[1], order[len(order)-1]
	for range bySlab[first] - 1 {
		first.release()
	}
	if len(free.free) != 0 {
		t.Fatal("a slab with an unsettled record was freed")
	}
	first.release()
	if len(free.free) != 1 || free.free[0] != first || len(first.buf) != 0 {
		t.Fatalf("free list %v after the first slab's records settled, want the first slab, emptied", free.free)
	}
	second.keep.Store(true)
	for range bySlab[second] {
		second.release()
	}
	for range bySlab[current] {
		current.release()
	}
	if len(free.free) != 1 {
		t.Errorf("%d free slabs: a failed write's slab, or the one being written, was freed", len(free.free))
	}
	if s := free.get(); s != first || s.refs.Load() != 1 {
		t.Errorf("get: %p (refs %d), want the freed slab %p with its writer's reference", s, s.refs.Load(), first)
	}
}

// TestLineWriterKeepsLastLine: the line a writer copies from stays in a
// referenced slab while the next one is written into a new slab, so a
// recycled slab's new lines never change a line of the old.
func TestLineWriterKeepsLastLine(t *testing.T) {
	var free slabList
	var w lineWriter
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 1000 {
		e := longEntry(i % 7)
		e.Name = fmt.Sprint("instance", i%3)
		line, s := w.line(&free, e, now)
		if want := string(new(jsonline.Encoder).AppendLogEntry(nil, e, now)); string(line) != want {
			t.Fatalf("line %d: %s, want %s", i, line, want)
		}
		// Settled at once: slabs come back as soon as the writer moves on.
		s.release()
	}
	if len(free.free) == 0 {
		t.Error("no slab was freed")
	}
}
