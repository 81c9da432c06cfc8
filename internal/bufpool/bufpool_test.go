package bufpool

import (
	"sync"
	"testing"
)

func TestUnclearedSizes(t *testing.T) {
	var p Uncleared
	for _, size := range []int{0, 1, 2, 3, 1000, 1024, 1025, 200_000} {
		b := p.Get(size)
		if len(*b) != size || cap(*b) < size || cap(*b)&(cap(*b)-1) != 0 {
			t.Errorf("Get(%d): len %d cap %d, want len %d and a power-of-two cap", size, len(*b), cap(*b), size)
		}
		for i := range *b {
			(*b)[i] = 0xa5
		}
		p.Put(b)
		// Whatever comes back, reused or new, has the length asked for.
		if c := p.Get(size / 2); len(*c) != size/2 {
			t.Errorf("Get(%d) after Put: len %d", size/2, len(*c))
		}
	}
}

// TestListedSizes: whatever the pool holds, a buffer it hands out has the
// length asked for and room for it, for sizes at and around the class
// boundaries, and a buffer put back is handed out again.
func TestListedSizes(t *testing.T) {
	var p Listed
	for _, size := range []int{0, 1, 2, 3, 1023, 1024, 1025, 65536, 65537, 300_000} {
		b := p.Get(size)
		if len(*b) != size || cap(*b) < size {
			t.Fatalf("Get(%d): len %d cap %d", size, len(*b), cap(*b))
		}
		p.Put(b)
		if c := p.Get(size); c != b {
			t.Errorf("Get(%d) after Put: a new buffer, want the one put back", size)
		} else {
			p.Put(c)
		}
		// A buffer of another size in the class below or above is never
		// handed out too small.
		odd := make([]byte, 0, size/2+1)
		p.Put(&odd)
		if b := p.Get(size); len(*b) != size || cap(*b) < size {
			t.Fatalf("Get(%d) after Put of cap %d: len %d cap %d", size, cap(odd), len(*b), cap(*b))
		}
	}
}

// TestListedBounds: the pool keeps at most listedPerClass buffers of a
// class and MaxBytes in all.
func TestListedBounds(t *testing.T) {
	p := Listed{MaxBytes: 3 << 20}
	var bufs []*[]byte
	for range listedPerClass + 2 {
		bufs = append(bufs, p.Get(1<<10))
	}
	for _, b := range bufs {
		p.Put(b)
	}
	if n := len(p.free[10]); n != listedPerClass {
		t.Errorf("kept %d buffers of 1 KiB, want %d", n, listedPerClass)
	}
	big := []*[]byte{p.Get(1 << 20), p.Get(1 << 20), p.Get(1 << 20)}
	for _, b := range big {
		p.Put(b)
	}
	if p.bytes > p.MaxBytes {
		t.Errorf("kept %d bytes, want at most %d", p.bytes, p.MaxBytes)
	}
	if n := len(p.free[20]); n != 2 {
		t.Errorf("kept %d buffers of 1 MiB under a bound of 3 MiB with %d bytes of 1 KiB ones, want 2", n, listedPerClass<<10)
	}
}

// TestListedConcurrent: buffers handed out at once are distinct.
func TestListedConcurrent(t *testing.T) {
	var p Listed
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				b := p.Get(100 + i%3000)
				for j := range *b {
					(*b)[j] = byte(g)
				}
				for j := range *b {
					if (*b)[j] != byte(g) {
						t.Errorf("goroutine %d: byte %d of its buffer changed to %d", g, j, (*b)[j])
						return
					}
				}
				p.Put(b)
			}
		})
	}
	wg.Wait()
}
