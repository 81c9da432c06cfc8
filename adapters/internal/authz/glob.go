package authz

import (
	"fmt"
	"strings"
)

// Glob reports whether s matches pattern the way Istio's RBAC matches names:
// "*" matches everything (the empty string too), "foo*" is a prefix,
// "*foo" a suffix, and anything else must be equal.
func Glob(pattern, s string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(s, pattern[:len(pattern)-1])
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(s, pattern[1:])
	}
	return s == pattern
}

// CheckGlob rejects patterns Glob would not read as their author meant: a
// "*" anywhere but alone, first or last, or at both ends.
func CheckGlob(pattern string) error {
	if pattern == "" {
		return fmt.Errorf("empty pattern (\"*\" matches anything)")
	}
	if pattern == "*" {
		return nil
	}
	inner := strings.TrimSuffix(strings.TrimPrefix(pattern, "*"), "*")
	if len(inner) < len(pattern)-1 || strings.Contains(inner, "*") {
		return fmt.Errorf("%q: '*' may only stand alone, or begin or end a pattern", pattern)
	}
	return nil
}
