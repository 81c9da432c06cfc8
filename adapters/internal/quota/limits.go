package quota

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
)

// Limit is one window a counter is checked against. Time is cut into slots
// of Bucket, numbered from the Unix epoch; usage charged in slot s counts
// while the current slot is at most s+Slots. A rolling window has
// Slots = ceil(Valid/Bucket), so usage is held from the start of its bucket
// until one bucket after Valid has passed: slightly longer than Valid,
// never shorter, hence no interval of Valid grants more than Max. A fixed
// window is one slot of Valid (Slots 0): usage frees at the slot's end.
type Limit struct {
	Max    int64
	Valid  time.Duration
	Bucket time.Duration
	Slots  int64

	layout string // Layout, computed once
}

func newLimit(max int64, valid, bucket time.Duration, alg Algorithm) Limit {
	l := Limit{Max: max, Valid: valid, Bucket: valid}
	if alg != FixedWindow {
		if bucket == 0 {
			bucket = DefaultBucket(valid)
		}
		l.Bucket, l.Slots = bucket, int64((valid+bucket-1)/bucket)
	}
	l.layout = l.Layout()
	return l
}

// DefaultBucket is a rolling window's bucket when its quota sets none:
// validDuration/20, at least 10ms, at most validDuration. That keeps a
// window to 21 buckets without slicing short windows finer than the clock
// is useful for.
func DefaultBucket(valid time.Duration) time.Duration {
	return min(valid, max(valid/defaultBucketsPerWindow, minDefaultBucket))
}

// Layout names the window's shape — algorithm, length and bucket, but not
// Max — and so which counter it uses: a raised or lowered limit keeps the
// counts charged so far.
func (l Limit) Layout() string {
	if l.layout != "" {
		return l.layout
	}
	if l.Slots == 0 {
		return "fixed/" + l.Valid.String()
	}
	return "rolling/" + l.Valid.String() + "/" + l.Bucket.String()
}

func (l Limit) sameCounter(o Limit) bool { return l.Layout() == o.Layout() }

// Slot is the number of the slot now falls in.
func (l Limit) Slot(now time.Time) int64 { return floorDiv(now.UnixNano(), int64(l.Bucket)) }

// Expiry is when usage charged in slot s stops counting.
func (l Limit) Expiry(s int64) time.Time {
	return time.Unix(0, (s+l.Slots+1)*int64(l.Bucket))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Counter is what one allocation is charged to: the windows of a quota,
// resolved for a set of dimension values.
type Counter struct {
	// Quota is the quota's name.
	Quota string
	// Key identifies the counter: the quota name and the dimensions,
	// sorted. A window's state is keyed by Key and its Layout.
	Key string
	// Limits are the windows; the first is the primary.
	Limits []Limit
}

// Set is a validated Config, ready to resolve allocations.
type Set struct {
	quotas map[string]*quotaDef
	dedup  time.Duration
}

type quotaDef struct {
	name      string
	limits    []Limit
	overrides []overrideDef
}

type overrideDef struct {
	dims   map[string]string
	limits []Limit
}

// NewSet validates c and compiles it.
func NewSet(c *Config) (*Set, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	alg := c.algorithm()
	s := &Set{quotas: make(map[string]*quotaDef, len(c.Quotas)), dedup: c.MinDeduplicationDuration}
	for _, q := range c.Quotas {
		extra := windows(q.Windows, alg)
		d := &quotaDef{name: q.Name, limits: append([]Limit{newLimit(q.MaxAmount, q.ValidDuration, q.BucketDuration, alg)}, extra...)}
		for _, o := range q.Overrides {
			w := overrideWindow(q, o)
			ls := []Limit{newLimit(w.MaxAmount, w.ValidDuration, w.BucketDuration, alg)}
			if o.Windows != nil {
				ls = append(ls, windows(o.Windows, alg)...)
			} else {
				ls = append(ls, extra...)
			}
			d.overrides = append(d.overrides, overrideDef{dims: maps.Clone(o.Dimensions), limits: ls})
		}
		s.quotas[q.Name] = d
	}
	return s, nil
}

func windows(ws []Window, alg Algorithm) []Limit {
	ls := make([]Limit, len(ws))
	for i, w := range ws {
		ls[i] = newLimit(w.MaxAmount, w.ValidDuration, w.BucketDuration, alg)
	}
	return ls
}

// Dedup is how long results are kept for deduplication.
func (s *Set) Dedup() time.Duration { return s.dedup }

// Has reports whether the set has a quota of that name.
func (s *Set) Has(name string) bool { _, ok := s.quotas[name]; return ok }

// Counter resolves the quota called name for dims: the limits of the first
// override whose dimensions dims all has (values compared in their text
// form), else the quota's.
func (s *Set) Counter(name string, dims map[string]any) (Counter, bool) {
	q, ok := s.quotas[name]
	if !ok {
		return Counter{}, false
	}
	return Counter{Quota: name, Key: CounterKey(name, dims), Limits: q.limitsFor(dims)}, true
}

func (q *quotaDef) limitsFor(dims map[string]any) []Limit {
next:
	for _, o := range q.overrides {
		for k, want := range o.dims {
			v, ok := dims[k]
			if !ok || template.FormatValue(v) != want {
				continue next
			}
		}
		return o.limits
	}
	return q.limits
}

// CounterKey renders a quota name and its dimensions unambiguously, as
// name{"k1"="v1","k2"="v2"} with keys sorted, so that map order never
// matters.
func CounterKey(name string, dims map[string]any) string {
	// On the stack for the usual few dimensions: one allocation, the key.
	var keysBuf [8]string
	keys := keysBuf[:0]
	for k := range dims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var buf [256]byte
	b := append(buf[:0], name...)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, k)
		b = append(b, '=')
		b = strconv.AppendQuote(b, template.FormatValue(dims[k]))
	}
	b = append(b, '}')
	return string(b)
}

// String is for logs and test failures.
func (l Limit) String() string { return fmt.Sprintf("%d per %s", l.Max, l.Layout()) }
