package kafka

import (
	"math/bits"
	"sync"

	kafkago "github.com/segmentio/kafka-go"
)

// pooledValue is the WriterData of a record whose value is in a buffer of
// valuePools (the other records' WriterData is their instance count, an
// int). A record value of otlpBatch is up to batchBytes (1 MiB by
// default) of concatenated resources; allocated afresh per record, its
// pages were faulted in and zeroed by the kernel each time, a fifth of
// the mixer's CPU when forwarding a million spans per second. The buffer
// goes back once kafka-go is done with the record: it was acknowledged,
// or dropped for good.
type pooledValue struct {
	items int    // instances in the record
	buf   []byte // the record's value
	// keep: a write of the record failed, and kafka-go's connection may
	// still read its value while it gives up; the buffer is left to the
	// garbage collector instead of going back to the pool.
	keep bool
}

// Size classes of pooled values: powers of two from minPooledValue to
// maxPooledValue. A smaller value is allocated as before (it comes from
// the runtime's small-object spans, not fresh pages); a larger one too.
const (
	minPooledShift = 16 // 64 KiB
	maxPooledShift = 24 // 16 MiB
)

var valuePools [maxPooledShift - minPooledShift + 1]sync.Pool

// valueClass is the pool of a value of n bytes, or -1 when it is not
// pooled.
func valueClass(n int) int {
	if n < 1<<minPooledShift || n > 1<<maxPooledShift {
		return -1
	}
	return max(bits.Len(uint(n-1)), minPooledShift) - minPooledShift
}

// joinValue concatenates parts (n bytes in all) into a record value and
// returns it with the record's WriterData (items instances): a pooled
// buffer when n has a class, else a fresh slice and items.
func joinValue(parts [][]byte, n, items int) ([]byte, any) {
	c := valueClass(n)
	if c < 0 {
		v := make([]byte, 0, n)
		for _, p := range parts {
			v = append(v, p...)
		}
		return v, items
	}
	p, _ := valuePools[c].Get().(*pooledValue)
	if p == nil {
		p = &pooledValue{buf: make([]byte, 0, 1<<(c+minPooledShift))}
	}
	p.buf = p.buf[:0]
	for _, b := range parts {
		p.buf = append(p.buf, b...)
	}
	p.items, p.keep = items, false
	return p.buf, p
}

// releaseValues gives the pooled values of records kafka-go is done with
// back to their pool, and settles their lines' slabs. Each record is released once, when it was sent or
// dropped for good.
func releaseValues(msgs ...kafkago.Message) {
	for _, m := range msgs {
		if s, ok := m.WriterData.(*lineSlab); ok {
			s.release()
			continue
		}
		p, ok := m.WriterData.(*pooledValue)
		if !ok || p.keep {
			continue
		}
		c := valueClass(cap(p.buf))
		if c < 0 {
			continue
		}
		p.items = 0
		valuePools[c].Put(p)
	}
}

// keepValues marks the pooled values and line slabs of msgs as never to
// be reused: a write of them failed (see pooledValue.keep).
func keepValues(msgs []kafkago.Message) {
	for _, m := range msgs {
		switch d := m.WriterData.(type) {
		case *pooledValue:
			d.keep = true
		case *lineSlab:
			d.keep.Store(true)
		}
	}
}

// itemsIn is how many instances a record holds, from its WriterData.
func itemsIn(m kafkago.Message) int {
	switch d := m.WriterData.(type) {
	case int:
		return d
	case *pooledValue:
		return d.items
	case *lineSlab:
		return 1 // a log entry's line
	}
	return 0
}
