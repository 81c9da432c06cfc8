// Package bufpool is a gRPC mem.BufferPool whose buffers are handed out
// without being cleared.
//
// gRPC's default pool clears the whole capacity of every buffer it hands
// out (a 256 KiB tier for a 150 KiB message), so that no caller sees
// another's bytes. A caller that overwrites every byte of the length it
// asked for before reading any (a marshaller that checks it wrote exactly
// the message's size, a copy of a received body) pays for that clearing
// and gains nothing: Uncleared is for such callers alone, never for
// buffers handed to code that might read before writing.
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
