package cel

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/adapters/internal/authz"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.Checker = (*handler)(nil)

type rule struct {
	cond   *authz.Program
	result adapters.CheckResult // the answer when cond holds
	allow  bool
}

type handler struct {
	rules []rule
	// otherwise is the answer when no rule holds.
	otherwise      adapters.CheckResult
	otherwiseAllow bool

	allowed, denied prometheus.Counter
	evalErrors      prometheus.Counter
}

func newHandler(set adapters.Settings, cfg adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	allow := adapters.CheckResult{
		Code:          codes.OK,
		ValidDuration: c.CachingInterval,
		ValidUseCount: c.CachingUseCount,
	}
	h := &handler{otherwise: allow, otherwiseAllow: c.Default == Allow}
	if !h.otherwiseAllow {
		h.otherwise.Code = codes.PermissionDenied
		h.otherwise.Message = fmt.Sprintf("denied by handler %s: no rule allows the request", set.Name)
	}
	for i, r := range c.Rules {
		p, err := authz.Compile(r.Condition)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].condition: %w", i, err)
		}
		ru := rule{cond: p, result: allow, allow: r.Effect == Allow}
		if !ru.allow {
			ru.result.Code = codes.PermissionDenied
			if r.Status != "" {
				if ru.result.Code, err = denier.ParseCode(r.Status); err != nil {
					return nil, fmt.Errorf("rules[%d].status: %w", i, err)
				}
			}
			ru.result.Message = r.Message
			if ru.result.Message == "" {
				ru.result.Message = fmt.Sprintf("denied by handler %s (rules[%d])", set.Name, i)
			}
		}
		h.rules = append(h.rules, ru)
	}

	checks, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_cel_checks_total",
		Help: "Authorization checks by cel handlers, by outcome.",
	}, []string{"handler", "result"}))
	if err != nil {
		return nil, err
	}
	errs, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_cel_eval_errors_total",
		Help: "Rule conditions of cel handlers that could not be evaluated (a missing property, say) and so did not hold.",
	}, []string{"handler"}))
	if err != nil {
		return nil, err
	}
	h.allowed = checks.WithLabelValues(set.Name, "allowed")
	h.denied = checks.WithLabelValues(set.Name, "denied")
	h.evalErrors = errs.WithLabelValues(set.Name)
	return h, nil
}

// Check answers as the first rule whose condition holds, or as the default.
func (h *handler) Check(ctx context.Context, inst template.Instance) (adapters.CheckResult, error) {
	a, ok := inst.(*template.Authorization)
	if !ok || a == nil {
		return adapters.CheckResult{}, fmt.Errorf("%s: unsupported instance %T", Name, inst)
	}
	vars := authz.NewVars(a)
	for i := range h.rules {
		r := &h.rules[i]
		holds, err := r.cond.Eval(vars)
		if err != nil {
			h.evalErrors.Inc()
			continue
		}
		if holds {
			return h.count(r.result, r.allow), nil
		}
	}
	return h.count(h.otherwise, h.otherwiseAllow), nil
}

func (h *handler) count(r adapters.CheckResult, allow bool) adapters.CheckResult {
	if allow {
		h.allowed.Inc()
	} else {
		h.denied.Inc()
	}
	return r
}

func (h *handler) Close(context.Context) error { return nil }
