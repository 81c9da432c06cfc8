package load

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: each power-of-two range of values
// is split into 2^subBits buckets, so a recorded value is known to within
// 1/2^subBits (under 0.8%) — the HdrHistogram layout with fixed precision.
const (
	subBits  = 7
	subCount = 1 << subBits
	// buckets covers every non-negative int64.
	buckets = subCount + (64-subBits-1)*subCount
)

// Histogram records durations with bounded relative error and constant
// memory, so a long run costs no more than a short one. It is not safe for
// concurrent use: give each worker its own and Merge them.
type Histogram struct {
	counts   [buckets]uint64
	n        uint64
	sum      float64
	min, max int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{min: math.MaxInt64} }

func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	exp := bits.Len64(uint64(v)) - subBits - 1 // >= 0
	return subCount + exp*subCount + int(uint64(v)>>uint(exp)) - subCount
}

// upperEdge is the largest value that falls into bucket i: quantiles report
// it, so they never understate a latency.
func upperEdge(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	exp := (i - subCount) / subCount
	mant := int64((i-subCount)%subCount + subCount)
	return (mant+1)<<uint(exp) - 1
}

// Record adds one duration (negative ones count as zero).
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Mean is the exact mean of the recorded values.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max is the exact largest recorded value.
func (h *Histogram) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.max)
}

// Quantile returns the value at or below which a fraction q of the
// recorded values lie, rounded up to its bucket's upper edge (and never
// above Max).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(upperEdge(i), h.max))
		}
	}
	return time.Duration(h.max)
}
