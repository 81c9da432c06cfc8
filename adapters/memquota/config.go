package memquota

import (
	"errors"
	"fmt"
	"time"
)

// Config is the memquota adapter's params.
type Config struct {
	// Quotas are the quotas the handler enforces.
	Quotas []Quota `yaml:"quotas"`
	// MinDeduplicationDuration is how long an allocation's result is kept
	// for retries carrying the same deduplication id.
	MinDeduplicationDuration time.Duration `yaml:"minDeduplicationDuration"`
}

// Quota is one rate limit.
type Quota struct {
	// Name is the name of the quota instances it serves.
	Name string `yaml:"name"`
	// MaxAmount may be allocated per ValidDuration; 0 denies everything.
	MaxAmount int64 `yaml:"maxAmount"`
	// ValidDuration is the length of the rolling window.
	ValidDuration time.Duration `yaml:"validDuration"`
	// Overrides give other limits to particular dimension values.
	Overrides []Override `yaml:"overrides"`
}

// Override is the limit of the counters whose dimensions include all of
// Dimensions.
type Override struct {
	Dimensions map[string]string `yaml:"dimensions"`
	MaxAmount  int64             `yaml:"maxAmount"`
	// ValidDuration zero means the quota's.
	ValidDuration time.Duration `yaml:"validDuration"`
}

// NewConfig returns the defaults: no quotas, deduplication for 1s.
func NewConfig() *Config {
	return &Config{MinDeduplicationDuration: time.Second}
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Quotas) == 0 {
		add("quotas: at least one quota is required")
	}
	seen := make(map[string]int, len(c.Quotas))
	for i, q := range c.Quotas {
		at := fmt.Sprintf("quotas[%d]", i)
		if q.Name == "" {
			add("%s.name: required", at)
		} else if j, dup := seen[q.Name]; dup {
			add("%s.name: %q is already the name of quotas[%d]", at, q.Name, j)
		} else {
			seen[q.Name] = i
		}
		if q.MaxAmount < 0 {
			add("%s.maxAmount: %d is negative", at, q.MaxAmount)
		}
		if q.ValidDuration <= 0 {
			add("%s.validDuration: must be positive, got %v", at, q.ValidDuration)
		}
		for j, o := range q.Overrides {
			at := fmt.Sprintf("%s.overrides[%d]", at, j)
			if len(o.Dimensions) == 0 {
				add("%s.dimensions: required (an override without dimensions would replace the quota's limit)", at)
			}
			if o.MaxAmount < 0 {
				add("%s.maxAmount: %d is negative", at, o.MaxAmount)
			}
			if o.ValidDuration < 0 {
				add("%s.validDuration: %v is negative", at, o.ValidDuration)
			}
		}
	}
	if c.MinDeduplicationDuration < 0 {
		add("minDeduplicationDuration: %v is negative", c.MinDeduplicationDuration)
	}
	return errors.Join(errs...)
}
