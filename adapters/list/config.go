package list

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"
)

// Entry types, as written in entryType.
const (
	Strings                = "STRINGS"
	CaseInsensitiveStrings = "CASE_INSENSITIVE_STRINGS"
	Regex                  = "REGEX"
	IPAddresses            = "IP_ADDRESSES"
)

// Config is the list adapter's params.
type Config struct {
	// Overrides are the list's entries.
	Overrides []string `yaml:"overrides"`
	// Blacklist denies listed values; false (a whitelist) denies the others.
	Blacklist bool `yaml:"blacklist"`
	// EntryType says how entries match values.
	EntryType string `yaml:"entryType"`
	// CachingInterval and CachingUseCount bound how long and for how many
	// requests the proxy may reuse an answer.
	CachingInterval time.Duration `yaml:"cachingInterval"`
	CachingUseCount int32         `yaml:"cachingUseCount"`
}

// NewConfig returns the defaults: an empty whitelist of strings.
func NewConfig() *Config {
	return &Config{
		EntryType:       Strings,
		CachingInterval: 5 * time.Second,
		CachingUseCount: 1000,
	}
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	switch c.EntryType {
	case Strings, CaseInsensitiveStrings:
	case Regex:
		for i, e := range c.Overrides {
			if _, err := regexp.Compile(e); err != nil {
				errs = append(errs, fmt.Errorf("overrides[%d]: invalid regex %q: %s", i, e, regexReason(err)))
			}
		}
	case IPAddresses:
		for i, e := range c.Overrides {
			if _, err := parsePrefix(e); err != nil {
				errs = append(errs, fmt.Errorf("overrides[%d]: %q is neither an IP address nor a CIDR prefix", i, e))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("entryType: unknown entry type %q (want %s, %s, %s or %s)",
			c.EntryType, Strings, CaseInsensitiveStrings, Regex, IPAddresses))
	}
	if c.CachingInterval < 0 {
		errs = append(errs, fmt.Errorf("cachingInterval: %v is negative", c.CachingInterval))
	}
	if c.CachingUseCount < 0 {
		errs = append(errs, fmt.Errorf("cachingUseCount: %d is negative", c.CachingUseCount))
	}
	return errors.Join(errs...)
}

// regexReason drops the expression that regexp repeats in its errors.
func regexReason(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return string(se.Code)
	}
	return err.Error()
}

// parsePrefix parses a CIDR prefix or a bare IP, which is its own prefix.
func parsePrefix(e string) (netip.Prefix, error) {
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(e)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
