package quota

import (
	"errors"
	"fmt"
	"time"
)

// Algorithm is how a window counts usage over time.
type Algorithm string

const (
	// RollingWindow counts usage in buckets of bucketDuration for as long
	// as its bucket is within validDuration of now, so no interval of
	// validDuration ever sees more than maxAmount: no double burst at the
	// edges of fixed windows.
	RollingWindow Algorithm = "ROLLING_WINDOW"
	// FixedWindow counts usage per validDuration window aligned on the Unix
	// epoch; all of it frees at the window's end. Cheaper, but up to twice
	// maxAmount may pass around a window edge.
	FixedWindow Algorithm = "FIXED_WINDOW"
)

const (
	// MinDuration is the shortest validDuration and bucketDuration: finer
	// than the clock is useful for, and finer than a backend's microsecond
	// arithmetic.
	MinDuration = time.Millisecond
	// MaxBuckets bounds the buckets of one rolling window, which bounds the
	// memory and the work of an allocation.
	MaxBuckets = 1000
	// MaxAmount is the largest maxAmount: 2^53, what a double (Redis's Lua
	// numbers) holds exactly.
	MaxAmount = 1 << 53
	// defaultBucketsPerWindow and minDefaultBucket give the bucket of a
	// rolling window whose quota sets none: validDuration/20, at least 10ms
	// (at most validDuration).
	defaultBucketsPerWindow = 20
	minDefaultBucket        = 10 * time.Millisecond
)

// Config is the params every quota adapter shares, with Istio's field
// names. Adapters embed it inline next to their own fields.
type Config struct {
	// Quotas are the quotas the handler enforces.
	Quotas []Quota `yaml:"quotas"`
	// RateLimitAlgorithm applies to every window of every quota.
	RateLimitAlgorithm Algorithm `yaml:"rateLimitAlgorithm"`
	// MinDeduplicationDuration is how long an allocation's result is kept
	// for retries carrying the same deduplication id; 0 disables it.
	MinDeduplicationDuration time.Duration `yaml:"minDeduplicationDuration"`
}

// QuotaNames lists the quotas' names, in order (adapters.QuotaNamer).
func (c *Config) QuotaNames() []string {
	names := make([]string, len(c.Quotas))
	for i, q := range c.Quotas {
		names[i] = q.Name
	}
	return names
}

// Quota is one named rate limit: a primary window (maxAmount per
// validDuration) and optionally more windows, all of which an allocation
// must fit.
type Quota struct {
	// Name is the name of the quota instances it serves.
	Name string `yaml:"name"`
	// MaxAmount may be allocated per ValidDuration; 0 denies everything.
	MaxAmount int64 `yaml:"maxAmount"`
	// ValidDuration is the length of the window.
	ValidDuration time.Duration `yaml:"validDuration"`
	// BucketDuration is the granularity of a rolling window; 0 means
	// validDuration/20, at least 10ms. Ignored by FIXED_WINDOW.
	BucketDuration time.Duration `yaml:"bucketDuration"`
	// Windows are further limits on the same counters, e.g. 5000 per hour
	// beside 100 per second.
	Windows []Window `yaml:"windows"`
	// Overrides give other limits to particular dimension values.
	Overrides []Override `yaml:"overrides"`
}

// Window is one more limit of a quota.
type Window struct {
	MaxAmount      int64         `yaml:"maxAmount"`
	ValidDuration  time.Duration `yaml:"validDuration"`
	BucketDuration time.Duration `yaml:"bucketDuration"`
}

// Override is the limit of the counters whose dimensions include all of
// Dimensions. It replaces the quota's primary window; when it lists
// Windows (even an empty list) they replace the quota's extra windows.
type Override struct {
	Dimensions map[string]string `yaml:"dimensions"`
	MaxAmount  int64             `yaml:"maxAmount"`
	// ValidDuration zero means the quota's.
	ValidDuration time.Duration `yaml:"validDuration"`
	// BucketDuration zero means the quota's when ValidDuration is the
	// quota's too, else the default for ValidDuration.
	BucketDuration time.Duration `yaml:"bucketDuration"`
	Windows        []Window      `yaml:"windows"`
}

// NewConfig returns the defaults: rolling windows, deduplication for 1s.
func NewConfig() Config {
	return Config{RateLimitAlgorithm: RollingWindow, MinDeduplicationDuration: time.Second}
}

// Validate reports every problem at once, each starting with its key path.
func (c *Config) Validate() error {
	return errors.Join(c.Problems()...)
}

// Problems is Validate's list, for adapters that append their own.
func (c *Config) Problems() []error {
	var v validator
	if len(c.Quotas) == 0 {
		v.add("quotas: at least one quota is required")
	}
	seen := make(map[string]int, len(c.Quotas))
	for i, q := range c.Quotas {
		at := fmt.Sprintf("quotas[%d]", i)
		if q.Name == "" {
			v.add("%s.name: required", at)
		} else if j, dup := seen[q.Name]; dup {
			v.add("%s.name: %q is already the name of quotas[%d]", at, q.Name, j)
		} else {
			seen[q.Name] = i
		}
		primary := v.window(at, Window{q.MaxAmount, q.ValidDuration, q.BucketDuration}, c.algorithm())
		v.windows(at, q.Windows, primary, c.algorithm())
		for j, o := range q.Overrides {
			at := fmt.Sprintf("%s.overrides[%d]", at, j)
			if len(o.Dimensions) == 0 {
				v.add("%s.dimensions: required (an override without dimensions would replace the quota's limit)", at)
			}
			var own Limit
			switch {
			case o.ValidDuration < 0:
				v.maxAmount(at, o.MaxAmount)
				v.add("%s.validDuration: %v is negative", at, o.ValidDuration)
			case o.ValidDuration == 0 && primary.Valid == 0:
				// Inherits a window already reported broken.
				v.maxAmount(at, o.MaxAmount)
			default:
				own = v.window(at, overrideWindow(q, o), c.algorithm())
			}
			if o.Windows != nil {
				v.windows(at, o.Windows, own, c.algorithm())
				continue
			}
			// The quota's extra windows stay beside the override's own.
			for k, qw := range q.Windows {
				if l := v.limit(qw, c.algorithm()); own.Valid > 0 && l.Valid > 0 && l.sameCounter(own) {
					v.add("%s.validDuration: %v is also the length of quotas[%d].windows[%d], which the override keeps (give the override its own windows)", at, own.Valid, i, k)
				}
			}
		}
	}
	switch c.RateLimitAlgorithm {
	case RollingWindow, FixedWindow:
	default:
		v.add("rateLimitAlgorithm: unknown algorithm %q (want %s or %s)", c.RateLimitAlgorithm, RollingWindow, FixedWindow)
	}
	if c.MinDeduplicationDuration < 0 {
		v.add("minDeduplicationDuration: %v is negative", c.MinDeduplicationDuration)
	}
	return v.errs
}

// algorithm is the configured algorithm, rolling when unknown so that the
// window checks still run on a config that has that error too.
func (c *Config) algorithm() Algorithm {
	if c.RateLimitAlgorithm == FixedWindow {
		return FixedWindow
	}
	return RollingWindow
}

type validator struct{ errs []error }

func (v *validator) add(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

// window checks one window at key path at and returns its limit (Valid 0
// when the window is too broken to have one).
func (v *validator) window(at string, w Window, alg Algorithm) Limit {
	ok := true
	v.maxAmount(at, w.MaxAmount)
	switch {
	case w.ValidDuration <= 0:
		v.add("%s.validDuration: must be positive, got %v", at, w.ValidDuration)
		ok = false
	case w.ValidDuration < MinDuration:
		v.add("%s.validDuration: %v is shorter than %v", at, w.ValidDuration, MinDuration)
		ok = false
	}
	switch b := w.BucketDuration; {
	case b == 0:
	case b < 0:
		v.add("%s.bucketDuration: %v is negative", at, b)
		ok = false
	case b < MinDuration:
		v.add("%s.bucketDuration: %v is shorter than %v", at, b, MinDuration)
		ok = false
	case w.ValidDuration > 0 && b >= w.ValidDuration:
		v.add("%s.bucketDuration: must be less than validDuration (%v), got %v", at, w.ValidDuration, b)
		ok = false
	case alg == RollingWindow && w.ValidDuration > 0 && (w.ValidDuration+b-1)/b > MaxBuckets:
		v.add("%s.bucketDuration: %v cuts validDuration %v into more than %d buckets", at, b, w.ValidDuration, MaxBuckets)
		ok = false
	}
	if !ok {
		return Limit{}
	}
	return v.limit(w, alg)
}

func (v *validator) maxAmount(at string, n int64) {
	switch {
	case n < 0:
		v.add("%s.maxAmount: %d is negative", at, n)
	case n > MaxAmount:
		v.add("%s.maxAmount: %d is more than %d", at, n, int64(MaxAmount))
	}
}

func (v *validator) limit(w Window, alg Algorithm) Limit {
	if w.ValidDuration < MinDuration || w.BucketDuration < 0 || (w.BucketDuration > 0 && w.BucketDuration >= w.ValidDuration) {
		return Limit{}
	}
	return newLimit(w.MaxAmount, w.ValidDuration, w.BucketDuration, alg)
}

// windows checks a list of extra windows: each valid, and no two (nor one
// and the primary) with the same length, because they would share one
// counter.
func (v *validator) windows(at string, ws []Window, primary Limit, alg Algorithm) {
	type prev struct {
		l    Limit
		path string
	}
	var seen []prev
	if primary.Valid > 0 {
		seen = append(seen, prev{primary, "the primary window"})
	}
	for j, w := range ws {
		at := fmt.Sprintf("%s.windows[%d]", at, j)
		l := v.window(at, w, alg)
		if l.Valid == 0 {
			continue
		}
		for _, p := range seen {
			if p.l.sameCounter(l) {
				v.add("%s.validDuration: %v is already the length of %s", at, l.Valid, p.path)
				break
			}
		}
		seen = append(seen, prev{l, at})
	}
}

// overrideWindow is the primary window of o: unset fields come from the
// quota, the bucket only when the length does too (a bucket fit for the
// quota's length may not fit the override's).
func overrideWindow(q Quota, o Override) Window {
	w := Window{MaxAmount: o.MaxAmount, ValidDuration: o.ValidDuration, BucketDuration: o.BucketDuration}
	if w.ValidDuration == 0 {
		w.ValidDuration = q.ValidDuration
		if w.BucketDuration == 0 {
			w.BucketDuration = q.BucketDuration
		}
	}
	return w
}
