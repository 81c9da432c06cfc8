package memquota

import "github.com/sidemix/sidemix/adapters/internal/quota"

// Config is the memquota adapter's params: the quota fields every quota
// adapter shares (quotas, rateLimitAlgorithm, minDeduplicationDuration).
type Config struct {
	quota.Config `yaml:",inline"`
}

// NewConfig returns the defaults: rolling windows, deduplication for 1s.
func NewConfig() *Config {
	return &Config{Config: quota.NewConfig()}
}
