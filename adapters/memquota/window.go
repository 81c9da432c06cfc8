package memquota

import "time"

const (
	bucketsPerWindow = 20
	minBucketWidth   = 10 * time.Millisecond
)

// limit is what a counter may grant.
type limit struct {
	max   int64
	valid time.Duration
}

// bucketWidth is max(valid/20, 10ms), capped at valid.
func bucketWidth(valid time.Duration) time.Duration {
	return min(valid, max(valid/bucketsPerWindow, minBucketWidth))
}

// window is a rolling-window counter. Time is cut into slots of width
// nanoseconds, numbered from the Unix epoch; usage charged in slot s counts
// while the current slot is at most s+n, n being the slots that cover the
// window. The ring keeps the n+1 slots that can still count.
type window struct {
	limit
	width  int64 // ns
	n      int64
	slots  []int64 // slot number each bucket holds
	counts []int64
	last   int64 // latest slot seen; the clock never goes back from here
}

func newWindow(l limit, now time.Time) *window {
	width := int64(bucketWidth(l.valid))
	n := (int64(l.valid) + width - 1) / width
	w := &window{limit: l, width: width, n: n, slots: make([]int64, n+1), counts: make([]int64, n+1)}
	w.last = now.UnixNano() / width
	for i := range w.slots {
		w.slots[i] = w.last - n - 1 // expired
	}
	return w
}

func (w *window) slot(now time.Time) int64 {
	s := now.UnixNano() / w.width
	// A clock stepping back must not make usage look expired or overwrite
	// newer buckets: stay in the latest slot seen, which only holds usage
	// longer.
	w.last = max(w.last, s)
	return w.last
}

func (w *window) index(s int64) int {
	l := int64(len(w.slots))
	return int((s%l + l) % l) // slots before 1970 are negative
}

func (w *window) live(s, cur int64) bool { return cur-s <= w.n }

func (w *window) used(cur int64) int64 {
	var sum int64
	for i, s := range w.slots {
		if w.live(s, cur) {
			sum += w.counts[i]
		}
	}
	return sum
}

// idle reports whether nothing charged to w still counts at now.
func (w *window) idle(now time.Time) bool {
	return now.UnixNano()/w.width-w.last > w.n
}

// allocate grants amount, or with bestEffort as much of it as is left, and
// returns what it granted and for how long it holds or, when it granted
// nothing, how long until it could.
func (w *window) allocate(now time.Time, amount int64, bestEffort bool) (int64, time.Duration) {
	cur := w.slot(now)
	used := w.used(cur)
	granted := amount
	if left := max(w.max-used, 0); amount > left {
		granted = 0
		if bestEffort {
			granted = left
		}
	}
	if granted == 0 && amount > 0 {
		want := amount
		if bestEffort {
			want = 1
		}
		return 0, w.retryAfter(now, cur, used+want-w.max)
	}
	i := w.index(cur)
	if w.slots[i] != cur {
		w.slots[i], w.counts[i] = cur, 0
	}
	w.counts[i] += granted
	return granted, w.valid
}

// retryAfter is the time from now until at least need units of usage have
// left the window. When that can never happen (the request exceeds the
// limit itself) it is the window's length.
func (w *window) retryAfter(now time.Time, cur, need int64) time.Duration {
	var freed int64
	for s := cur - w.n; s <= cur; s++ {
		if i := w.index(s); w.slots[i] == s {
			freed += w.counts[i]
		}
		if freed >= need {
			expires := (s + w.n + 1) * w.width
			return max(time.Duration(expires-now.UnixNano()), time.Nanosecond)
		}
	}
	return w.valid
}
