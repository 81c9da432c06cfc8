package denier

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.Checker = (*handler)(nil)

type handler struct {
	result  adapters.CheckResult
	denials prometheus.Counter
}

func newHandler(set adapters.Settings, cfg adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	code, err := ParseCode(c.Status)
	if err != nil {
		return nil, err
	}
	msg := c.Message
	if msg == "" {
		msg = fmt.Sprintf("denied by handler %s", set.Name)
	}
	denials, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_denier_denials_total",
		Help: "Checks refused by denier handlers.",
	}, []string{"handler"}))
	if err != nil {
		return nil, err
	}
	return &handler{
		result: adapters.CheckResult{
			Code:          code,
			Message:       msg,
			ValidDuration: c.ValidDuration,
			ValidUseCount: c.ValidUseCount,
		},
		denials: denials.WithLabelValues(set.Name),
	}, nil
}

// Check denies whatever it is given.
func (h *handler) Check(ctx context.Context, inst template.Instance) (adapters.CheckResult, error) {
	switch inst.(type) {
	case *template.CheckNothing, *template.ListEntry:
	default:
		return adapters.CheckResult{}, fmt.Errorf("%s: unsupported instance %T", Name, inst)
	}
	h.denials.Inc()
	return h.result, nil
}

func (h *handler) Close(context.Context) error { return nil }
