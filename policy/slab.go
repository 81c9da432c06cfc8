package policy

// cut returns n zero values of their own, cut from the front of *slab,
// which is replaced by a new one of max(n, refill) values when fewer than
// n are left: many instances (and their slices) made by one allocation. A
// slab lives as long as one of the values cut from it is held.
func cut[T any](slab *[]T, n, refill int) []T {
	if len(*slab) < n {
		*slab = make([]T, max(n, refill))
	}
	s := (*slab)[:n:n]
	*slab = (*slab)[n:]
	return s
}
