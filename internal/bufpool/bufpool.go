// Package bufpool is a gRPC mem.BufferPool whose buffers are handed out
// without being cleared.
//
// gRPC's default pool clears the whole capacity of every buffer it hands
// out (a 256 KiB tier for a 150 KiB message), so that no caller sees
// another's bytes. A caller that overwrites every byte of the length it
// asked for before reading any (a marshaller that checks it wrote exactly
// the message's size, a copy of a received body) pays for that clearing
// and gains nothing: Uncleared and Listed are for such callers alone,
// never for buffers handed to code that might read before writing.
//
// Uncleared is a sync.Pool, for buffers handed out and back at a high
// rate; Listed keeps a few buffers per size class in free lists the
// garbage collector does not empty, for large buffers used a few times
// per second, which a sync.Pool mostly misses.
package bufpool

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// Uncleared is a mem.BufferPool of buffers whose capacities are powers of
// two. Get returns a buffer of the length asked for whose bytes are
// whatever was left in it: the caller must write all of them before
// reading any.
type Uncleared struct{ pool sync.Pool }

var _ mem.BufferPool = (*Uncleared)(nil)

// Get returns a buffer of length size, not cleared.
func (p *Uncleared) Get(size int) *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		if cap(*b) >= size {
			*b = (*b)[:size]
			return b
		}
		// Too small for this one: leave it to the collector; the next
		// ones are likely as big.
	}
	c := 1
	if size > 1 {
		c = 1 << bits.Len(uint(size-1))
	}
	b := make([]byte, size, c)
	return &b
}

// Put gives a buffer back for a later Get.
func (p *Uncleared) Put(b *[]byte) { p.pool.Put(b) }

// Listed is a mem.BufferPool of uncleared buffers (as Uncleared's: the
// caller writes every byte it asked for before reading any) kept in free
// lists by power-of-two class, under a mutex: a buffer of capacity at
// least 2^k is kept in class k and handed out for sizes from 2^(k-1)+1
// to 2^k.
//
// It is for a few large buffers handed out at a low rate (a marshaller's
// requests of hundreds of KiB, a few per second), where a sync.Pool
// misses: the garbage collector empties a sync.Pool within two cycles,
// and a buffer put back by another goroutine (gRPC's writer) sits in its
// processor's private slot, where a Get from another processor does not
// look. Each miss is a new buffer of the class's size, whose pages the
// kernel faults in afresh.
//
// What it keeps is bounded: at most listedPerClass buffers per class and
// MaxBytes bytes (of capacity) in all; a buffer put back beyond either is
// left to the garbage collector. The zero value keeps up to
// DefaultListedBytes.
type Listed struct {
	// MaxBytes bounds the capacity of the buffers kept; 0 means
	// DefaultListedBytes.
	MaxBytes int

	mu    sync.Mutex
	free  [bits.UintSize + 1][]*[]byte
	bytes int // capacity of the buffers in free
}

// DefaultListedBytes is Listed's bound when MaxBytes is 0.
const DefaultListedBytes = 16 << 20

// listedPerClass bounds the buffers Listed keeps per class.
const listedPerClass = 4

var _ mem.BufferPool = (*Listed)(nil)

// Get returns a buffer of length size, not cleared.
func (p *Listed) Get(size int) *[]byte {
	k := 0
	if size > 1 {
		k = bits.Len(uint(size - 1))
	}
	p.mu.Lock()
	if n := len(p.free[k]); n > 0 {
		b := p.free[k][n-1]
		p.free[k][n-1] = nil
		p.free[k] = p.free[k][:n-1]
		p.bytes -= cap(*b)
		p.mu.Unlock()
		*b = (*b)[:size]
		return b
	}
	p.mu.Unlock()
	b := make([]byte, size, 1<<k)
	return &b
}

// Put gives a buffer back for a later Get, or to the garbage collector
// when the pool holds enough.
func (p *Listed) Put(b *[]byte) {
	c := cap(*b)
	if c == 0 {
		return
	}
	k := bits.Len(uint(c)) - 1 // 2^k <= c
	limit := p.MaxBytes
	if limit == 0 {
		limit = DefaultListedBytes
	}
	p.mu.Lock()
	if len(p.free[k]) < listedPerClass && p.bytes+c <= limit {
		p.free[k] = append(p.free[k], b)
		p.bytes += c
	}
	p.mu.Unlock()
}
