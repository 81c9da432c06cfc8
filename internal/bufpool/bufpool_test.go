package bufpool

import "testing"

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
