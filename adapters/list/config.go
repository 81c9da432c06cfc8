package list

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	"github.com/sidemix/sidemix/adapters"
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
	// Overrides are the list's entries; with a provider, they are added
	// to the provider's.
	Overrides []string `yaml:"overrides"`
	// ProviderURL, when set, is an http or https URL whose body lists more
	// entries: one per line (blank lines and lines starting with '#'
	// ignored) or, when the Content-Type says json, a JSON array of
	// strings.
	ProviderURL string `yaml:"providerUrl"`
	// RefreshInterval is how often the provider is fetched.
	RefreshInterval time.Duration `yaml:"refreshInterval"`
	// TTL is how long the last fetched list is used while the provider
	// fails; after it, checks fail and the rule's failPolicy decides.
	TTL time.Duration `yaml:"ttl"`
	// FetchTimeout bounds each fetch, the first one in Create too.
	FetchTimeout time.Duration `yaml:"fetchTimeout"`
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
		RefreshInterval: time.Minute,
		TTL:             5 * time.Minute,
		FetchTimeout:    5 * time.Second,
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
	errs = append(errs, c.validateProvider()...)
	if c.CachingInterval < 0 {
		errs = append(errs, fmt.Errorf("cachingInterval: %v is negative", c.CachingInterval))
	}
	if c.CachingUseCount < 0 {
		errs = append(errs, fmt.Errorf("cachingUseCount: %d is negative", c.CachingUseCount))
	}
	return errors.Join(errs...)
}

// Redacted returns the params with providerUrl's password, and the values
// of query parameters that look like credentials, replaced by "xxxxx", for
// /debug/config and logs.
func (c *Config) Redacted() any {
	r := *c
	r.ProviderURL = redactURL(c.ProviderURL)
	return &r
}

var _ adapters.Redactor = (*Config)(nil)

// secretQueryWords mark a query parameter whose value is a credential.
var secretQueryWords = []string{"token", "secret", "password", "passwd", "key", "sig", "auth", "credential"}

// redactURL hides the password and credential-like query values of a URL;
// a URL that does not parse is hidden whole.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "xxxxx"
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			lk := strings.ToLower(k)
			for _, w := range secretQueryWords {
				if strings.Contains(lk, w) {
					for i := range q[k] {
						q[k][i] = "xxxxx"
					}
					break
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// MinRefreshInterval keeps a list from hammering its provider.
const MinRefreshInterval = time.Second

func (c *Config) validateProvider() []error {
	var errs []error
	if c.ProviderURL != "" {
		u, err := url.Parse(c.ProviderURL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("providerUrl: %v", urlReason(err)))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("providerUrl: %q is not an http or https URL", redactURL(c.ProviderURL)))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("providerUrl: %q has no host", redactURL(c.ProviderURL)))
		}
	}
	switch {
	case c.RefreshInterval < MinRefreshInterval:
		errs = append(errs, fmt.Errorf("refreshInterval: %v is less than %v", c.RefreshInterval, MinRefreshInterval))
	case c.TTL < c.RefreshInterval:
		errs = append(errs, fmt.Errorf("ttl: %v is less than refreshInterval (%v): the list would expire between fetches", c.TTL, c.RefreshInterval))
	}
	if c.FetchTimeout <= 0 {
		errs = append(errs, fmt.Errorf("fetchTimeout: %v is not positive", c.FetchTimeout))
	}
	return errs
}

// urlReason drops the URL that url.Parse repeats in its errors: it may
// carry a password.
func urlReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
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
