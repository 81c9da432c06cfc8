package prometheus

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	prom "github.com/prometheus/client_golang/prometheus"
)

// Metric kinds, as written in kind.
const (
	Counter      = "COUNTER"
	Gauge        = "GAUGE"
	Distribution = "DISTRIBUTION"
)

// DefaultAddr is where handlers serve /metrics unless told otherwise: the
// port Istio's Mixer used.
const DefaultAddr = "127.0.0.1:42422"

// DefaultMaxSeries is the handler's maxSeries unless told otherwise: the
// most label combinations one metric holds. A label fed from an unbounded
// attribute (a path, a user id) would otherwise grow the mixer's memory and
// every scrape without end.
const DefaultMaxSeries = 10000

// Bounds of the expiry check interval: the default is half the expiry
// duration, at most defaultMaxCheckInterval; shorter than minCheckInterval
// would spin.
const (
	defaultMaxCheckInterval = time.Minute
	minCheckInterval        = time.Millisecond
)

// Config is the prometheus adapter's params.
type Config struct {
	// Addr is the host:port serving /metrics; empty serves nothing.
	Addr string `yaml:"addr"`
	// Namespace, when set, prefixes every exported name with namespace_.
	Namespace string `yaml:"namespace"`
	// ConstLabels are labels with fixed values added to every metric of
	// the handler, e.g. {mesh: prod}.
	ConstLabels map[string]string `yaml:"constLabels"`
	// MaxSeries caps the label combinations (series) of each metric that
	// does not set its own; 0 means no cap.
	MaxSeries int `yaml:"maxSeries"`
	// MetricsExpirationPolicy, when set, removes series not updated for a
	// while.
	MetricsExpirationPolicy *ExpirationPolicy `yaml:"metricsExpirationPolicy"`
	// Metrics map metric instances to exported metrics.
	Metrics []Metric `yaml:"metrics"`
}

// ExpirationPolicy removes series that stopped being updated, named as in
// Istio's prometheus adapter.
type ExpirationPolicy struct {
	// MetricsExpiryDuration is how long a series stays without an update
	// before it is removed. Required.
	MetricsExpiryDuration time.Duration `yaml:"metricsExpiryDuration"`
	// ExpiryCheckIntervalDuration is how often series are checked; zero
	// means half of MetricsExpiryDuration, at most a minute.
	ExpiryCheckIntervalDuration time.Duration `yaml:"expiryCheckIntervalDuration"`
}

// checkInterval is the effective ExpiryCheckIntervalDuration.
func (p *ExpirationPolicy) checkInterval() time.Duration {
	if p.ExpiryCheckIntervalDuration > 0 {
		return p.ExpiryCheckIntervalDuration
	}
	return max(min(p.MetricsExpiryDuration/2, defaultMaxCheckInterval), minCheckInterval)
}

// Metric is one exported metric, fed by the instances of one name.
type Metric struct {
	// InstanceName is the name of the metric instances it consumes.
	InstanceName string `yaml:"instanceName"`
	// Name is the exported name (before the namespace); empty means
	// InstanceName.
	Name string `yaml:"name"`
	// Description is the HELP text; empty means the name.
	Description string `yaml:"description"`
	// Kind is COUNTER, GAUGE or DISTRIBUTION.
	Kind string `yaml:"kind"`
	// LabelNames are the instance dimensions exported as labels.
	LabelNames []string `yaml:"labelNames"`
	// Buckets are required for a DISTRIBUTION and only allowed there.
	Buckets *Buckets `yaml:"buckets"`
	// MaxSeries caps this metric's series; unset means the handler's
	// maxSeries, 0 no cap.
	MaxSeries *int `yaml:"maxSeries"`
}

// Buckets defines a histogram's bucket bounds, one way out of three, named
// as in Istio (and Stackdriver).
type Buckets struct {
	ExplicitBuckets    *ExplicitBuckets    `yaml:"explicitBuckets"`
	ExponentialBuckets *ExponentialBuckets `yaml:"exponentialBuckets"`
	LinearBuckets      *LinearBuckets      `yaml:"linearBuckets"`
}

// ExplicitBuckets lists the upper bounds, strictly increasing.
type ExplicitBuckets struct {
	Bounds []float64 `yaml:"bounds"`
}

// ExponentialBuckets has bounds scale*growthFactor^i for i in
// 0..numFiniteBuckets.
type ExponentialBuckets struct {
	NumFiniteBuckets int     `yaml:"numFiniteBuckets"`
	Scale            float64 `yaml:"scale"`
	GrowthFactor     float64 `yaml:"growthFactor"`
}

// LinearBuckets has bounds offset+width*i for i in 0..numFiniteBuckets.
type LinearBuckets struct {
	NumFiniteBuckets int     `yaml:"numFiniteBuckets"`
	Width            float64 `yaml:"width"`
	Offset           float64 `yaml:"offset"`
}

// NewConfig returns the defaults: serve on DefaultAddr, at most
// DefaultMaxSeries series per metric, no expiry.
func NewConfig() *Config {
	return &Config{Addr: DefaultAddr, MaxSeries: DefaultMaxSeries}
}

var (
	// The classic Prometheus name syntax: every scraper and PromQL
	// accepts it unquoted.
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// maxBuckets bounds a histogram's size: every bucket is a series per label
// combination.
const maxBuckets = 1000

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Addr != "" {
		if _, port, err := net.SplitHostPort(c.Addr); err != nil {
			add("addr: %q is not host:port", c.Addr)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			add("addr: %q has no valid port", c.Addr)
		}
	}
	if c.Namespace != "" && !metricNameRE.MatchString(c.Namespace) {
		add("namespace: %q is not a valid Prometheus metric name prefix", c.Namespace)
	}
	if c.MaxSeries < 0 {
		add("maxSeries: must be 0 (no cap) or more, got %d", c.MaxSeries)
	}
	for _, k := range slices.Sorted(maps.Keys(c.ConstLabels)) {
		switch v := c.ConstLabels[k]; {
		case !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__"):
			add("constLabels: %q is not a valid Prometheus label name", k)
		case !utf8.ValidString(v):
			add("constLabels.%s: value %q is not valid UTF-8", k, v)
		}
	}
	if p := c.MetricsExpirationPolicy; p != nil {
		at := "metricsExpirationPolicy"
		if p.MetricsExpiryDuration <= 0 {
			add("%s.metricsExpiryDuration: required, a positive duration such as 10m (got %v)", at, p.MetricsExpiryDuration)
		}
		if p.ExpiryCheckIntervalDuration < 0 || (p.ExpiryCheckIntervalDuration > 0 && p.ExpiryCheckIntervalDuration < minCheckInterval) {
			add("%s.expiryCheckIntervalDuration: must be at least %v, or unset for half the expiry duration (got %v)", at, minCheckInterval, p.ExpiryCheckIntervalDuration)
		}
	}
	if len(c.Metrics) == 0 {
		add("metrics: at least one metric is required")
	}
	exported := make(map[string]int, len(c.Metrics))
	for i, m := range c.Metrics {
		at := fmt.Sprintf("metrics[%d]", i)
		if m.InstanceName == "" {
			add("%s.instanceName: required", at)
		}
		switch name := cmp.Or(m.Name, m.InstanceName); {
		case name == "":
			// instanceName: required says it all.
		case !metricNameRE.MatchString(name) && m.Name == "":
			add("%s.name: required, since instanceName %q is not a valid Prometheus metric name", at, name)
		case !metricNameRE.MatchString(name):
			add("%s.name: %q is not a valid Prometheus metric name", at, name)
		default:
			name = c.exportedName(m)
			if j, dup := exported[name]; dup {
				add("%s.name: %q is already exported by metrics[%d]", at, name, j)
			} else {
				exported[name] = i
			}
		}
		switch m.Kind {
		case Counter, Gauge:
			if m.Buckets != nil {
				add("%s.buckets: only a %s has buckets", at, Distribution)
			}
		case Distribution:
			if m.Buckets == nil {
				add("%s.buckets: required for a %s", at, Distribution)
			} else {
				errs = append(errs, m.Buckets.validate(at+".buckets"))
			}
		case "":
			add("%s.kind: required (%s, %s or %s)", at, Counter, Gauge, Distribution)
		default:
			add("%s.kind: unknown kind %q (want %s, %s or %s)", at, m.Kind, Counter, Gauge, Distribution)
		}
		if m.MaxSeries != nil && *m.MaxSeries < 0 {
			add("%s.maxSeries: must be 0 (no cap) or more, got %d", at, *m.MaxSeries)
		}
		seen := make(map[string]bool, len(m.LabelNames))
		for j, l := range m.LabelNames {
			_, isConst := c.ConstLabels[l]
			switch {
			case !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__"):
				add("%s.labelNames[%d]: %q is not a valid Prometheus label name", at, j, l)
			case seen[l]:
				add("%s.labelNames[%d]: %q is listed twice", at, j, l)
			case l == "le" && m.Kind == Distribution:
				add("%s.labelNames[%d]: \"le\" is reserved in a %s", at, j, Distribution)
			case isConst:
				add("%s.labelNames[%d]: %q is also in constLabels", at, j, l)
			}
			seen[l] = true
		}
		if _, ok := c.ConstLabels["le"]; ok && m.Kind == Distribution {
			add("%s: constLabels has \"le\", which is reserved in a %s", at, Distribution)
		}
	}
	return errors.Join(errs...)
}

func (b *Buckets) validate(at string) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	n := 0
	if e := b.ExplicitBuckets; e != nil {
		n++
		at := at + ".explicitBuckets.bounds"
		if len(e.Bounds) == 0 || len(e.Bounds) > maxBuckets+1 {
			add("%s: must have 1..%d bounds, got %d", at, maxBuckets+1, len(e.Bounds))
		}
		for i, v := range e.Bounds {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				add("%s[%d]: %v is not finite", at, i, v)
			} else if i > 0 && v <= e.Bounds[i-1] {
				add("%s[%d]: %v does not exceed the previous bound", at, i, v)
			}
		}
	}
	if e := b.ExponentialBuckets; e != nil {
		n++
		at := at + ".exponentialBuckets"
		if e.NumFiniteBuckets <= 0 || e.NumFiniteBuckets > maxBuckets {
			add("%s.numFiniteBuckets: must be in 1..%d, got %d", at, maxBuckets, e.NumFiniteBuckets)
		}
		if !(e.Scale > 0) || math.IsInf(e.Scale, 0) {
			add("%s.scale: must be positive and finite, got %v", at, e.Scale)
		}
		if !(e.GrowthFactor > 1) || math.IsInf(e.GrowthFactor, 0) {
			add("%s.growthFactor: must be greater than 1 and finite, got %v", at, e.GrowthFactor)
		}
	}
	if e := b.LinearBuckets; e != nil {
		n++
		at := at + ".linearBuckets"
		if e.NumFiniteBuckets <= 0 || e.NumFiniteBuckets > maxBuckets {
			add("%s.numFiniteBuckets: must be in 1..%d, got %d", at, maxBuckets, e.NumFiniteBuckets)
		}
		if !(e.Width > 0) || math.IsInf(e.Width, 0) {
			add("%s.width: must be positive and finite, got %v", at, e.Width)
		}
		if math.IsNaN(e.Offset) || math.IsInf(e.Offset, 0) {
			add("%s.offset: must be finite, got %v", at, e.Offset)
		}
	}
	if n != 1 {
		add("%s: set exactly one of explicitBuckets, exponentialBuckets or linearBuckets (%d are set)", at, n)
	}
	if len(errs) == 0 {
		if bs := b.bounds(); math.IsInf(bs[len(bs)-1], 0) {
			add("%s: the last bound overflows to %v", at, bs[len(bs)-1])
		}
	}
	return errors.Join(errs...)
}

// bounds returns the histogram's upper bounds; like Istio, n finite
// buckets have n+1 bounds (the first bucket is the underflow).
func (b *Buckets) bounds() []float64 {
	switch {
	case b.ExplicitBuckets != nil:
		return b.ExplicitBuckets.Bounds
	case b.ExponentialBuckets != nil:
		e := b.ExponentialBuckets
		return prom.ExponentialBuckets(e.Scale, e.GrowthFactor, e.NumFiniteBuckets+1)
	case b.LinearBuckets != nil:
		l := b.LinearBuckets
		return prom.LinearBuckets(l.Offset, l.Width, l.NumFiniteBuckets+1)
	}
	return nil
}

// maxSeries is the metric's effective cap; 0 means none.
func (c *Config) maxSeries(m Metric) int {
	if m.MaxSeries != nil {
		return *m.MaxSeries
	}
	return c.MaxSeries
}

// exportedName is the metric's name as scraped.
func (c *Config) exportedName(m Metric) string {
	name := cmp.Or(m.Name, m.InstanceName)
	if c.Namespace != "" {
		return c.Namespace + "_" + name
	}
	return name
}
