package rbac

import (
	"context"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/authz"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.Checker = (*handler)(nil)

type rule struct {
	services, methods, paths []string
	constraints              []*authz.Program
}

type binding struct {
	subjects []Subject
	rules    []rule // the role's
}

type handler struct {
	services []string // every rule's service globs: the enforced services
	bindings []binding
	allow    adapters.CheckResult // Code OK, with the caching bounds

	allowed, denied, notEnforced prometheus.Counter
	constraintErrors             prometheus.Counter
}

func newHandler(set adapters.Settings, cfg adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	h := &handler{allow: adapters.CheckResult{
		Code:          codes.OK,
		ValidDuration: c.CachingInterval,
		ValidUseCount: c.CachingUseCount,
	}}
	roles := make(map[string][]rule, len(c.Roles))
	for i, r := range c.Roles {
		rules := make([]rule, len(r.Rules))
		for j, cr := range r.Rules {
			rules[j] = rule{services: cr.Services, methods: anyIfStar(cr.Methods), paths: anyIfStar(cr.Paths)}
			for k, expr := range cr.Constraints {
				p, err := authz.Compile(expr)
				if err != nil {
					return nil, fmt.Errorf("roles[%d].rules[%d].constraints[%d]: %w", i, j, k, err)
				}
				rules[j].constraints = append(rules[j].constraints, p)
			}
			for _, s := range cr.Services {
				if !slices.Contains(h.services, s) {
					h.services = append(h.services, s)
				}
			}
		}
		roles[r.Name] = rules
	}
	for _, b := range c.Bindings {
		h.bindings = append(h.bindings, binding{subjects: b.Subjects, rules: roles[b.Role]})
	}

	checks, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_rbac_checks_total",
		Help: "Authorization checks by rbac handlers, by outcome: allowed, denied, or not_enforced (no role names the service).",
	}, []string{"handler", "result"}))
	if err != nil {
		return nil, err
	}
	errs, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_rbac_constraint_errors_total",
		Help: "Role constraints that could not be evaluated (a missing property, say) and so did not hold.",
	}, []string{"handler"}))
	if err != nil {
		return nil, err
	}
	h.allowed = checks.WithLabelValues(set.Name, "allowed")
	h.denied = checks.WithLabelValues(set.Name, "denied")
	h.notEnforced = checks.WithLabelValues(set.Name, "not_enforced")
	h.constraintErrors = errs.WithLabelValues(set.Name)
	return h, nil
}

// anyIfStar drops a list that contains "*": an empty list matches anything
// without a loop.
func anyIfStar(globs []string) []string {
	if slices.Contains(globs, "*") {
		return nil
	}
	return globs
}

// Check allows a request to a service no role names; for other services it
// allows what some binding of the caller grants and denies the rest.
func (h *handler) Check(ctx context.Context, inst template.Instance) (adapters.CheckResult, error) {
	a, ok := inst.(*template.Authorization)
	if !ok || a == nil {
		return adapters.CheckResult{}, fmt.Errorf("%s: unsupported instance %T", Name, inst)
	}
	if !anyGlob(h.services, a.Action.Service) {
		h.notEnforced.Inc()
		return h.allow, nil
	}
	var vars *authz.Vars // built on the first constraint, then shared
	for i := range h.bindings {
		b := &h.bindings[i]
		if !slices.ContainsFunc(b.subjects, func(s Subject) bool { return subjectMatches(&s, &a.Subject) }) {
			continue
		}
		for j := range b.rules {
			if h.ruleMatches(&b.rules[j], a, &vars) {
				h.allowed.Inc()
				return h.allow, nil
			}
		}
	}
	h.denied.Inc()
	r := h.allow
	r.Code = codes.PermissionDenied
	r.Message = fmt.Sprintf("RBAC: access denied: user %q may not %s %s on service %q",
		a.Subject.User, a.Action.Method, a.Action.Path, a.Action.Service)
	return r, nil
}

func (h *handler) ruleMatches(r *rule, a *template.Authorization, vars **authz.Vars) bool {
	if !anyGlob(r.services, a.Action.Service) ||
		(r.methods != nil && !anyGlob(r.methods, a.Action.Method)) ||
		(r.paths != nil && !anyGlob(r.paths, a.Action.Path)) {
		return false
	}
	for _, p := range r.constraints {
		if *vars == nil {
			*vars = authz.NewVars(a)
		}
		ok, err := p.Eval(*vars)
		if err != nil {
			h.constraintErrors.Inc()
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

// subjectMatches reports whether every field s sets matches the caller.
func subjectMatches(s *Subject, caller *template.Subject) bool {
	if s.User != "" && !authz.Glob(s.User, caller.User) {
		return false
	}
	if s.Group != "" && !slices.ContainsFunc(caller.Groups, func(g string) bool { return authz.Glob(s.Group, g) }) {
		return false
	}
	if s.Namespace != "" && !propertyMatches(caller.Properties, "namespace", s.Namespace) {
		return false
	}
	for k, want := range s.Properties {
		if !propertyMatches(caller.Properties, k, want) {
			return false
		}
	}
	return true
}

// propertyMatches compares a property as text; an absent property matches
// nothing, not even "*".
func propertyMatches(props map[string]any, key, glob string) bool {
	v, ok := props[key]
	return ok && authz.Glob(glob, template.FormatValue(v))
}

func anyGlob(globs []string, s string) bool {
	for _, g := range globs {
		if authz.Glob(g, s) {
			return true
		}
	}
	return false
}

func (h *handler) Close(context.Context) error { return nil }
