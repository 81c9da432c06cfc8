package kafka

import (
	"testing"

	kafkago "github.com/segmentio/kafka-go"
)

// TestRecycleRefillsLane: a delivered write's array becomes the lane's
// buffer when the lane has none (takeBatch took all of it while the
// previous array was in flight), else its spare, emptied either way, so
// that a lane written to once per write cycles through two arrays instead
// of growing one per Report.
func TestRecycleRefillsLane(t *testing.T) {
	h := &handler{}
	l := &lane{}
	first := []kafkago.Message{{Value: []byte("a")}, {Value: []byte("b")}}
	h.recycle(l, first)
	if len(l.buf) != 0 || cap(l.buf) != cap(first) || &l.buf[:1][0] != &first[0] {
		t.Fatalf("after recycle into an empty lane: buf len %d cap %d, want the recycled array, empty", len(l.buf), cap(l.buf))
	}
	if first[0].Value != nil {
		t.Error("the recycled array still holds a record's value")
	}
	l.buf = append(l.buf, kafkago.Message{Value: []byte("c")})
	second := make([]kafkago.Message, 1, 4)
	h.recycle(l, second)
	if len(l.buf) != 1 || &l.buf[0] != &first[0] {
		t.Error("recycle replaced a lane's buffer that holds records")
	}
	if cap(l.spare) != 4 || len(l.spare) != 0 {
		t.Errorf("spare len %d cap %d, want the second array, empty", len(l.spare), cap(l.spare))
	}
	// takeBatch takes the whole buffer and puts the spare in its place.
	h.take, h.takeBytes = 100, 1<<20
	msgs := h.takeBatch(l)
	if len(msgs) != 1 || cap(l.buf) != 4 || l.spare != nil {
		t.Errorf("takeBatch: %d records, buf cap %d, spare %v; want 1, 4, nil", len(msgs), cap(l.buf), l.spare)
	}
}
