package cel

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/adapters/internal/authz"
)

// Effects, as written in effect and default.
const (
	Allow = "ALLOW"
	Deny  = "DENY"
)

// Config is the cel adapter's params.
type Config struct {
	// Rules are tried in order; the first whose condition holds decides.
	Rules []Rule `yaml:"rules"`
	// Default decides when no rule does: ALLOW or DENY.
	Default string `yaml:"default"`
	// CachingInterval and CachingUseCount bound how long and for how many
	// requests the proxy may reuse an answer.
	CachingInterval time.Duration `yaml:"cachingInterval"`
	CachingUseCount int32         `yaml:"cachingUseCount"`
}

// Rule is one condition and what it decides.
type Rule struct {
	// Condition is a CEL bool over subject and action.
	Condition string `yaml:"condition"`
	// Effect is ALLOW or DENY.
	Effect string `yaml:"effect"`
	// Message explains a denial; DENY rules only.
	Message string `yaml:"message"`
	// Status is the gRPC code name of a denial, PERMISSION_DENIED unless
	// set; DENY rules only.
	Status string `yaml:"status"`
}

// NewConfig returns the defaults: no rules, and deny what no rule allows.
func NewConfig() *Config {
	return &Config{
		Default:         Deny,
		CachingInterval: 5 * time.Second,
		CachingUseCount: 1000,
	}
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for i, r := range c.Rules {
		key := fmt.Sprintf("rules[%d]", i)
		if r.Condition == "" {
			add("%s.condition: missing", key)
		} else if _, err := authz.Compile(r.Condition); err != nil {
			add("%s.condition: %v", key, err)
		}
		switch r.Effect {
		case Deny:
			if r.Status != "" {
				if code, err := denier.ParseCode(r.Status); err != nil {
					add("%s.status: %v", key, err)
				} else if code == codes.OK {
					add(`%s.status: "OK" would allow, not deny`, key)
				}
			}
		case Allow:
			if r.Message != "" {
				add("%s.message: an ALLOW rule has no message", key)
			}
			if r.Status != "" {
				add("%s.status: an ALLOW rule has no status", key)
			}
		case "":
			add("%s.effect: missing (%s or %s)", key, Allow, Deny)
		default:
			add("%s.effect: unknown effect %q (want %s or %s)", key, r.Effect, Allow, Deny)
		}
	}
	if c.Default != Allow && c.Default != Deny {
		add("default: unknown effect %q (want %s or %s)", c.Default, Allow, Deny)
	}
	if c.CachingInterval < 0 {
		add("cachingInterval: %v is negative", c.CachingInterval)
	}
	if c.CachingUseCount < 0 {
		add("cachingUseCount: %d is negative", c.CachingUseCount)
	}
	return errors.Join(errs...)
}
