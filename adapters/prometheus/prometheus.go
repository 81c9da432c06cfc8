package prometheus

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.Reporter = (*handler)(nil)

// missingLabel is the value of a label whose dimension an instance lacks.
const missingLabel = "unknown"

type handler struct {
	name       string
	log        *slog.Logger
	ep         *endpoint
	fams       []*family
	byInstance map[string][]output
	dropped    *prom.CounterVec
	closeOnce  sync.Once
	closeErr   error
}

// output is where one metric entry sends its instances.
type output struct {
	fam    *family
	labels []string // dimension names, in the family's label order
}

func newHandler(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	dropped, err := handlerkit.Register(set.Registerer, prom.NewCounterVec(prom.CounterOpts{
		Name: "sidemix_prometheus_dropped_total",
		Help: "Metric instances prometheus handlers could not record, by reason.",
	}, []string{"handler", "reason"}))
	if err != nil {
		return nil, err
	}
	specs := make([]spec, len(c.Metrics))
	for i, m := range c.Metrics {
		name := c.exportedName(m)
		specs[i] = spec{
			name:   name,
			help:   cmp.Or(m.Description, name),
			kind:   m.Kind,
			labels: m.LabelNames,
		}
		if m.Kind == Distribution {
			specs[i].buckets = m.Buckets.bounds()
		}
	}
	ep, fams, err := acquire(ctx, set.Logger, c.Addr, set.Name, specs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	h := &handler{
		name:       set.Name,
		log:        set.Logger,
		ep:         ep,
		fams:       fams,
		byInstance: make(map[string][]output),
		dropped:    dropped,
	}
	for i, m := range c.Metrics {
		h.byInstance[m.InstanceName] = append(h.byInstance[m.InstanceName], output{fam: fams[i], labels: m.LabelNames})
	}
	return h, nil
}

// Report records each metric instance in the metrics fed by its name.
// Instances it cannot record are counted and skipped; they never fail the
// batch.
func (h *handler) Report(ctx context.Context, insts []template.Instance) error {
	for _, inst := range insts {
		m, ok := inst.(*template.Metric)
		if !ok || m == nil {
			h.drop("wrong_template", "instance", fmt.Sprintf("%T", inst))
			continue
		}
		outs, ok := h.byInstance[m.Name]
		if !ok {
			h.drop("unknown_instance", "instance", m.Name)
			continue
		}
		v, err := number(m.Value)
		if err != nil {
			h.drop("bad_value", "instance", m.Name, "err", err)
			continue
		}
		for _, o := range outs {
			lvs := make([]string, len(o.labels))
			for i, l := range o.labels {
				if d, ok := m.Dimensions[l]; ok {
					lvs[i] = template.FormatValue(d)
				} else {
					lvs[i] = missingLabel
				}
			}
			if reason, err := o.fam.observe(lvs, v); err != nil {
				h.drop(reason, "instance", m.Name, "metric", o.fam.name, "err", err)
			}
		}
	}
	return nil
}

func (h *handler) drop(reason string, args ...any) {
	h.dropped.WithLabelValues(h.name, reason).Inc()
	h.log.Debug("metric instance dropped", append([]any{"reason", reason}, args...)...)
}

// Close detaches the handler from its endpoint; the last handler of an
// addr stops its listener.
func (h *handler) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		h.closeErr = h.ep.release(ctx, h.log, h.name, h.fams)
	})
	return h.closeErr
}

// Gatherer is the registry the handler's metrics are in, for embedders that
// serve it themselves (addr: "").
func (h *handler) Gatherer() prom.Gatherer { return prom.GathererFunc(h.ep.gather) }

// number converts an instance value to a sample value. Durations are
// milliseconds, as in istio_request_duration_milliseconds; strings are
// parsed, as Istio did.
func number(v any) (float64, error) {
	switch x := v.(type) {
	case int64:
		return float64(x), nil
	case int:
		return float64(x), nil
	case float64:
		return x, nil
	case time.Duration:
		return float64(x) / float64(time.Millisecond), nil
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, fmt.Errorf("value %q is not a number", x)
		}
		return f, nil
	}
	return 0, fmt.Errorf("value of type %T is not a number", v)
}
