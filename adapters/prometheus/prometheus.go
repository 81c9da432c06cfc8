package prometheus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.BatchReleaser = (*handler)(nil)

// missingLabel is the value of a label whose dimension an instance lacks.
const missingLabel = "unknown"

type handler struct {
	name       string
	log        *slog.Logger
	now        func() time.Time
	ep         *endpoint
	fams       []*family
	byInstance map[string][]*output
	outputs    int // how many outputs byInstance holds
	dropped    *prom.CounterVec
	seriesVec  *prom.GaugeVec
	expired    *prom.CounterVec

	expiry    time.Duration // 0: series never expire
	stopSweep chan struct{}
	sweepDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// output is where one metric entry sends its instances.
type output struct {
	fam    *family
	labels []string // dimension names, in the family's label order
	// labelSet numbers the handler's distinct label lists: outputs with
	// the same number have equal labels.
	labelSet  int
	maxSeries int // 0: no cap
	refused   prom.Counter
	warned    atomic.Bool // the cap was logged once
	// where is where each label is in the dimensions of the last layout
	// seen (an instance's layout is fixed once its config is loaded).
	where atomic.Pointer[labelPositions]
	// idx numbers the handler's outputs, for Report's lastSeries.
	idx int
}

// lastSeries is, in one Report, the series an output's last instance went
// to, and that instance's dimensions: the next instance with the same
// dimensions (the policy hands on a request's dimensions to the next
// request of the edge while no label value changes) goes to it without
// its key being made and looked up.
type lastSeries struct {
	dims template.Fields
	s    *series
}

// labelPositions are the positions of an output's labels in a layout's
// fields, -1 for a label the layout lacks.
type labelPositions struct {
	layout *template.Layout
	pos    []int
}

// positions returns where o's labels are in fields of layout l.
func (o *output) positions(l *template.Layout) []int {
	if w := o.where.Load(); w != nil && w.layout == l {
		return w.pos
	}
	w := &labelPositions{layout: l, pos: make([]int, len(o.labels))}
	for i, name := range o.labels {
		w.pos[i] = l.Index(name)
	}
	o.where.Store(w)
	return w.pos
}

// selfMetrics are the handler's metrics on the mixer's registry, shared by
// all prometheus handlers of that registry.
type selfMetrics struct {
	dropped, refused, expired *prom.CounterVec
	series                    *prom.GaugeVec
}

func registerSelfMetrics(r prom.Registerer) (selfMetrics, error) {
	var m selfMetrics
	var errs [4]error
	m.dropped, errs[0] = handlerkit.Register(r, prom.NewCounterVec(prom.CounterOpts{
		Name: "sidemix_prometheus_dropped_total",
		Help: "Metric instances prometheus handlers could not record, by reason.",
	}, []string{"handler", "reason"}))
	m.refused, errs[1] = handlerkit.Register(r, prom.NewCounterVec(prom.CounterOpts{
		Name: "sidemix_prometheus_series_refused_total",
		Help: "Metric instances not recorded because they would have started a series over the metric's maxSeries.",
	}, []string{"handler", "metric"}))
	m.expired, errs[2] = handlerkit.Register(r, prom.NewCounterVec(prom.CounterOpts{
		Name: "sidemix_prometheus_series_expired_total",
		Help: "Series removed because they were not updated for the metricsExpiryDuration.",
	}, []string{"handler", "metric"}))
	m.series, errs[3] = handlerkit.Register(r, prom.NewGaugeVec(prom.GaugeOpts{
		Name: "sidemix_prometheus_series",
		Help: "Series (label combinations) each exported metric holds now.",
	}, []string{"handler", "metric"}))
	return m, errors.Join(errs[:]...)
}

func newHandler(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	self, err := registerSelfMetrics(set.Registerer)
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
			consts: maps.Clone(c.ConstLabels),
		}
		if m.Kind == Distribution {
			specs[i].buckets = m.Buckets.bounds()
		}
	}
	ep, fams, err := acquire(ctx, set.Logger, c.Addr, set.Name, specs, self.series)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	h := &handler{
		name:       set.Name,
		log:        set.Logger,
		now:        set.Now,
		ep:         ep,
		fams:       fams,
		byInstance: make(map[string][]*output),
		dropped:    self.dropped,
		seriesVec:  self.series,
		expired:    self.expired,
	}
	var sets [][]string
	h.outputs = len(c.Metrics)
	for i, m := range c.Metrics {
		ls := slices.IndexFunc(sets, func(l []string) bool { return slices.Equal(l, m.LabelNames) })
		if ls < 0 {
			ls = len(sets)
			sets = append(sets, m.LabelNames)
		}
		h.byInstance[m.InstanceName] = append(h.byInstance[m.InstanceName], &output{
			idx:       i,
			fam:       fams[i],
			labels:    m.LabelNames,
			labelSet:  ls,
			maxSeries: c.maxSeries(m),
			refused:   self.refused.WithLabelValues(set.Name, fams[i].name),
		})
	}
	if p := c.MetricsExpirationPolicy; p != nil {
		h.expiry = p.MetricsExpiryDuration
		h.stopSweep = make(chan struct{})
		h.sweepDone = make(chan struct{})
		go h.sweepEvery(p.checkInterval())
	}
	return h, nil
}

// sweepEvery removes expired series every interval until Close, so that
// they go whether or not anyone scrapes.
func (h *handler) sweepEvery(interval time.Duration) {
	defer close(h.sweepDone)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-h.stopSweep:
			return
		case <-tick.C:
			h.sweep()
		}
	}
}

// sweep removes the series of the handler's metrics not updated within
// the expiry duration. A metric shared with other handlers is swept by
// each of them that has an expiry, so the shortest one applies.
func (h *handler) sweep() {
	cutoff := h.now().Add(-h.expiry).UnixNano()
	for _, f := range h.fams {
		if n := f.sweep(cutoff); n > 0 {
			h.expired.WithLabelValues(h.name, f.name).Add(float64(n))
			h.log.Debug("expired series removed", "metric", f.name, "removed", n, "expiry", h.expiry)
		}
	}
}

// ReportReleasesBatch says Report keeps nothing of the slice it is
// handed (adapters.BatchReleaser).
func (h *handler) ReportReleasesBatch() {}

// Report records each metric instance in the metrics fed by its name.
// Instances it cannot record are counted and skipped; they never fail the
// batch.
//
// Istio's metrics share one dimensions Fields per request (the policy
// builds it once for all of them) and have the same labels, and a
// request's instances come one after the other: their label values and
// series key are made once for the run of them. Labels are read by their
// position in the dimensions' layout, found once per layout.
func (h *handler) Report(ctx context.Context, insts []template.Instance) error {
	now := h.now().UnixNano()
	var (
		lvs      []string
		key      []byte
		lastDims template.Fields // the dimensions lvs were made from
		lastSet  = -1            // and the label list
		// The outputs of the last instance names: instances of one
		// Instance document share the name's string.
		names [4]string
		outss [4][]*output
		buf   [8]lastSeries
		last  = buf[:]
	)
	if h.outputs > len(buf) {
		last = make([]lastSeries, h.outputs)
	}
	for _, inst := range insts {
		m, ok := inst.(*template.Metric)
		if !ok || m == nil {
			h.drop("wrong_template", "instance", fmt.Sprintf("%T", inst))
			continue
		}
		var outs []*output
		if i := slices.Index(names[:], m.Name); i >= 0 && m.Name != "" {
			outs = outss[i]
		} else if outs, ok = h.byInstance[m.Name]; ok {
			copy(names[1:], names[:])
			copy(outss[1:], outss[:])
			names[0], outss[0] = m.Name, outs
		} else {
			h.drop("unknown_instance", "instance", m.Name)
			continue
		}
		v, err := number(m.Value)
		if err != nil {
			h.drop("bad_value", "instance", m.Name, "err", err)
			continue
		}
		dims := m.Dimensions
		for _, o := range outs {
			if l := &last[o.idx]; l.s != nil && dims.Same(l.dims) {
				if reason, err := o.fam.check(v); err != nil {
					h.drop(reason, "instance", m.Name, "metric", o.fam.name, "err", err)
					continue
				}
				if o.fam.observeIn(l.s, v, now) {
					continue
				}
			}
			if o.labelSet != lastSet || !dims.Same(lastDims) {
				// observe keeps no reference to lvs or key, so one
				// buffer serves the whole batch.
				lvs = slices.Grow(lvs[:0], len(o.labels))[:len(o.labels)]
				for i, p := range o.positions(dims.Layout()) {
					if p >= 0 {
						lvs[i] = template.FormatValue(dims.At(p))
					} else {
						lvs[i] = missingLabel
					}
				}
				key = appendSeriesKey(key[:0], lvs)
				lastSet, lastDims = o.labelSet, dims
			}
			s, reason, err := o.fam.observe(lvs, key, v, now, o.maxSeries)
			last[o.idx] = lastSeries{dims: dims, s: s}
			switch {
			case errors.Is(err, errSeriesCap):
				o.refused.Inc()
				if !o.warned.Swap(true) {
					h.log.Warn("metric reached its series cap: new label combinations are refused until series expire",
						"metric", o.fam.name, "maxSeries", o.maxSeries)
				}
			case err != nil:
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

// Close stops the expiry sweep and detaches the handler from its endpoint;
// the last handler of an addr stops its listener.
func (h *handler) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		if h.stopSweep != nil {
			close(h.stopSweep)
			<-h.sweepDone
		}
		h.closeErr = h.ep.release(ctx, h.log, h.name, h.fams, h.seriesVec)
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
