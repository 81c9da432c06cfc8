package rbac

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/authz"
)

// Config is the rbac adapter's params.
type Config struct {
	// Roles say what may be done: which services, methods and paths.
	Roles []Role `yaml:"roles"`
	// Bindings say who holds which role.
	Bindings []Binding `yaml:"bindings"`
	// CachingInterval and CachingUseCount bound how long and for how many
	// requests the proxy may reuse an answer.
	CachingInterval time.Duration `yaml:"cachingInterval"`
	CachingUseCount int32         `yaml:"cachingUseCount"`
}

// Role is a named set of permissions.
type Role struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is one permission: any of the services, any of the methods, any of
// the paths, and every constraint.
type Rule struct {
	// Services are globs over action.service ("web", "*-api", "*"). A
	// service that some rule names is enforced: denied unless allowed.
	Services []string `yaml:"services"`
	// Methods are globs over action.method; none means any.
	Methods []string `yaml:"methods"`
	// Paths are globs over action.path; none means any.
	Paths []string `yaml:"paths"`
	// Constraints are CEL conditions over subject and action that must
	// all hold.
	Constraints []string `yaml:"constraints"`
}

// Binding grants a role to subjects.
type Binding struct {
	Name     string    `yaml:"name"`
	Role     string    `yaml:"role"`
	Subjects []Subject `yaml:"subjects"`
}

// Subject selects callers; every field it sets must match. All values are
// globs.
type Subject struct {
	// User matches subject.user, the caller's principal; "*" is anyone,
	// the unauthenticated too.
	User string `yaml:"user"`
	// Group matches one of subject.groups.
	Group string `yaml:"group"`
	// Namespace matches subject.properties["namespace"].
	Namespace string `yaml:"namespace"`
	// Properties match subject.properties[key], compared as text.
	Properties map[string]string `yaml:"properties"`
}

// NewConfig returns the defaults: no roles, so nothing is enforced.
func NewConfig() *Config {
	return &Config{
		CachingInterval: 5 * time.Second,
		CachingUseCount: 1000,
	}
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	globs := func(key string, patterns []string) {
		for i, p := range patterns {
			if err := authz.CheckGlob(p); err != nil {
				add("%s[%d]: %v", key, i, err)
			}
		}
	}

	roles := make(map[string]int, len(c.Roles))
	for i, r := range c.Roles {
		switch first, dup := roles[r.Name]; {
		case r.Name == "":
			add("roles[%d].name: missing", i)
		case dup:
			add("roles[%d].name: duplicate role %q (also roles[%d])", i, r.Name, first)
		default:
			roles[r.Name] = i
		}
		if len(r.Rules) == 0 {
			add("roles[%d].rules: a role needs at least one rule", i)
		}
		for j, rule := range r.Rules {
			key := fmt.Sprintf("roles[%d].rules[%d]", i, j)
			if len(rule.Services) == 0 {
				add(`%s.services: a rule needs at least one service ("*" for all)`, key)
			}
			globs(key+".services", rule.Services)
			globs(key+".methods", rule.Methods)
			globs(key+".paths", rule.Paths)
			for k, expr := range rule.Constraints {
				if _, err := authz.Compile(expr); err != nil {
					add("%s.constraints[%d]: %v", key, k, err)
				}
			}
		}
	}

	bindings := make(map[string]int, len(c.Bindings))
	for i, b := range c.Bindings {
		switch first, dup := bindings[b.Name]; {
		case b.Name == "":
			add("bindings[%d].name: missing", i)
		case dup:
			add("bindings[%d].name: duplicate binding %q (also bindings[%d])", i, b.Name, first)
		default:
			bindings[b.Name] = i
		}
		if b.Role == "" {
			add("bindings[%d].role: missing", i)
		} else if _, ok := roles[b.Role]; !ok {
			add("bindings[%d].role: unknown role %q", i, b.Role)
		}
		if len(b.Subjects) == 0 {
			add("bindings[%d].subjects: a binding needs at least one subject", i)
		}
		for j, s := range b.Subjects {
			key := fmt.Sprintf("bindings[%d].subjects[%d]", i, j)
			if s.User == "" && s.Group == "" && s.Namespace == "" && len(s.Properties) == 0 {
				add(`%s: names none of user, group, namespace, properties (user: "*" is anyone)`, key)
			}
			for _, f := range [...]struct{ name, value string }{{"user", s.User}, {"group", s.Group}, {"namespace", s.Namespace}} {
				if f.value != "" {
					if err := authz.CheckGlob(f.value); err != nil {
						add("%s.%s: %v", key, f.name, err)
					}
				}
			}
			for _, k := range sortedKeys(s.Properties) {
				if err := authz.CheckGlob(s.Properties[k]); err != nil {
					add("%s.properties: %s: %v", key, k, err)
				}
			}
		}
	}

	if c.CachingInterval < 0 {
		add("cachingInterval: %v is negative", c.CachingInterval)
	}
	if c.CachingUseCount < 0 {
		add("cachingUseCount: %d is negative", c.CachingUseCount)
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
