package redisquota

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/quota"
)

var _ adapters.Redactor = (*Config)(nil)

const (
	// DefaultTimeout bounds each Redis call. A local Redis answers an
	// allocation in well under a millisecond; 100ms absorbs pauses without
	// letting a hung Redis hold a Check for long.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultFailureThreshold consecutive failures open the circuit.
	DefaultFailureThreshold = 3
	// DefaultProbeInterval is how often an open circuit pings Redis.
	DefaultProbeInterval = 500 * time.Millisecond
	// DefaultLeaseFraction is the most of a counter's smallest max one
	// lease takes: 1%, so that three replicas hold at most 3% of a limit
	// between them, and limits under 200 never lease.
	DefaultLeaseFraction = 0.01
	// DefaultLeaseDuration is the longest a lease answers.
	DefaultLeaseDuration = 100 * time.Millisecond
	// MaxLeaseFraction and MaxLeaseDuration bound localLease: a lease is
	// a small part of a limit, for a short time.
	MaxLeaseFraction = 0.1
	MaxLeaseDuration = time.Second
)

// Config is the redisquota adapter's params: the quota fields every quota
// adapter shares (quotas, rateLimitAlgorithm, minDeduplicationDuration)
// and how to reach Redis.
type Config struct {
	quota.Config `yaml:",inline"`
	// RedisServerURL is host:port, or a redis:// or rediss:// URL
	// (redis://[user:password@]host:port/db). It may carry a password:
	// Redacted hides it.
	RedisServerURL string `yaml:"redisServerUrl"`
	// ConnectionPoolSize is the most connections the handler opens; 0
	// means go-redis's default, 10 per CPU.
	ConnectionPoolSize int `yaml:"connectionPoolSize"`
	// Timeout bounds each call to Redis (dial, pool wait, script).
	Timeout time.Duration `yaml:"timeout"`
	// Breaker is the circuit breaker in front of Redis.
	Breaker Breaker `yaml:"breaker"`
	// OverLimitCache answers allocations to a counter Redis said is
	// exhausted without asking again, until Redis could grant them.
	OverLimitCache bool `yaml:"overLimitCache"`
	// LocalLease takes blocks of units from Redis for busy counters with
	// large limits, and answers from them locally.
	LocalLease LocalLease `yaml:"localLease"`
}

// LocalLease is how big and how long a lease may be.
type LocalLease struct {
	// MaxFraction of the smallest max of a counter's windows one lease
	// takes at most; 0 turns leases off.
	MaxFraction float64 `yaml:"maxFraction"`
	// MaxDuration is the longest a lease answers (it also ends with the
	// current bucket of each window).
	MaxDuration time.Duration `yaml:"maxDuration"`
}

// Breaker is how the handler stops calling a Redis that fails.
type Breaker struct {
	// FailureThreshold consecutive failed calls open the circuit: calls
	// then fail at once, without reaching Redis.
	FailureThreshold int `yaml:"failureThreshold"`
	// ProbeInterval is how often an open circuit pings Redis; the first
	// answer closes it.
	ProbeInterval time.Duration `yaml:"probeInterval"`
}

// NewConfig returns the defaults: rolling windows, deduplication for 1s,
// 100ms per call, the circuit opening after 3 failures and probing every
// 500ms, the over-limit cache on, leases of at most 1% for 100ms.
func NewConfig() *Config {
	return &Config{
		Config:         quota.NewConfig(),
		Timeout:        DefaultTimeout,
		Breaker:        Breaker{FailureThreshold: DefaultFailureThreshold, ProbeInterval: DefaultProbeInterval},
		OverLimitCache: true,
		LocalLease:     LocalLease{MaxFraction: DefaultLeaseFraction, MaxDuration: DefaultLeaseDuration},
	}
}

// Validate reports every problem, each naming its key. It never prints
// the password of redisServerUrl.
func (c *Config) Validate() error {
	errs := c.Problems()
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := c.options(); err != nil {
		add("redisServerUrl: %v", err)
	}
	if c.ConnectionPoolSize < 0 {
		add("connectionPoolSize: %d is negative", c.ConnectionPoolSize)
	}
	if c.Timeout <= 0 {
		add("timeout: must be positive, got %v", c.Timeout)
	}
	if c.Breaker.FailureThreshold < 1 {
		add("breaker.failureThreshold: must be at least 1, got %d", c.Breaker.FailureThreshold)
	}
	if c.Breaker.ProbeInterval <= 0 {
		add("breaker.probeInterval: must be positive, got %v", c.Breaker.ProbeInterval)
	}
	if f := c.LocalLease.MaxFraction; f < 0 || f > MaxLeaseFraction || f != f {
		add("localLease.maxFraction: must be between 0 (no leases) and %v, got %v", MaxLeaseFraction, f)
	}
	if d := c.LocalLease.MaxDuration; c.LocalLease.MaxFraction > 0 && (d <= 0 || d > MaxLeaseDuration) {
		add("localLease.maxDuration: must be positive and at most %v, got %v", MaxLeaseDuration, d)
	}
	return errors.Join(errs...)
}

// options turns the params into go-redis options. Its errors never quote
// the URL, which may hold a password.
func (c *Config) options() (*redis.Options, error) {
	s := c.RedisServerURL
	if s == "" {
		return nil, errors.New("required (host:port or redis://host:port/db)")
	}
	var opt *redis.Options
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" || port == "" {
			return nil, errors.New("not host:port nor a redis:// URL")
		}
		opt = &redis.Options{Addr: s}
	} else {
		u, err := url.Parse(s)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // without the URL
			}
			return nil, fmt.Errorf("not a URL: %v", err)
		}
		if u.Scheme != "redis" && u.Scheme != "rediss" {
			return nil, fmt.Errorf("scheme %q is not redis or rediss", u.Scheme)
		}
		if u.RawQuery != "" {
			// go-redis would read client options there, beside (and
			// against) this config's own.
			return nil, errors.New("query parameters are not supported; use connectionPoolSize, timeout and breaker")
		}
		if opt, err = redis.ParseURL(s); err != nil {
			return nil, errors.New(strings.TrimPrefix(err.Error(), "redis: "))
		}
	}
	opt.PoolSize = c.ConnectionPoolSize
	return opt, nil
}

// Redacted returns a copy of the params whose redisServerUrl hides its
// password, for /debug/config and logs.
func (c *Config) Redacted() any {
	r := *c
	r.RedisServerURL = RedactURL(c.RedisServerURL)
	return &r
}

// LogValue keeps the password out of logs that print the params.
func (c *Config) LogValue() slog.Value {
	// plain has no LogValue, so slog does not come back here.
	type plain Config
	return slog.AnyValue(plain(*c.Redacted().(*Config)))
}

// RedactURL replaces the password of a redis:// URL with "xxxxx"; a URL
// that does not parse is replaced whole, since where its password is
// cannot be told.
func RedactURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL, redacted)"
	}
	return u.Redacted()
}
