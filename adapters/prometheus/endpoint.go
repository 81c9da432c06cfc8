package prometheus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

const (
	// bindRetry is how long Create waits for a port still held by a
	// listener being shut down, as happens on a config reload that
	// changes the metrics.
	bindRetry      = 2 * time.Second
	bindRetryPause = 50 * time.Millisecond
)

// endpoints are the metric families and /metrics listeners of the process,
// one endpoint per configured addr, shared by every handler configured with
// that addr. Sharing is what keeps counters and the listener alive across a
// config reload: the new snapshot's handler attaches to the families its
// predecessor created before the predecessor is closed. Families live in
// registries of their own, never in the global one.
var endpoints = struct {
	mu     sync.Mutex // guards byAddr and every endpoint's refs and families
	byAddr map[string]*endpoint
}{byAddr: make(map[string]*endpoint)}

type endpoint struct {
	addr     string             // as configured; empty for a handler's private one
	families map[string]*family // by exported name
	// gatherers holds the registries of families, replaced whenever
	// families changes; scrapes read it without the lock.
	gatherers atomic.Pointer[prom.Gatherers]
	refs      int // handlers attached
	srv       *http.Server
	served    chan struct{} // closed when Serve returns
}

func newEndpoint(addr string) *endpoint {
	ep := &endpoint{addr: addr, families: make(map[string]*family)}
	ep.gatherers.Store(&prom.Gatherers{})
	return ep
}

// gather collects every family of the endpoint.
func (ep *endpoint) gather() ([]*dto.MetricFamily, error) {
	return ep.gatherers.Load().Gather()
}

// publish makes the current families the ones scraped. Each family has a
// registry of its own because a Registry never forgets a name's label
// names, even after Unregister, and a reload may redefine them.
func (ep *endpoint) publish() {
	gs := make(prom.Gatherers, 0, len(ep.families))
	for _, name := range slices.Sorted(maps.Keys(ep.families)) {
		gs = append(gs, ep.families[name].registry)
	}
	ep.gatherers.Store(&gs)
}

// family is one exported metric and the handlers that feed it.
type family struct {
	spec
	registry  *prom.Registry
	counter   *prom.CounterVec
	gauge     *prom.GaugeVec
	histogram *prom.HistogramVec
	owners    map[string]int // handler name → handlers of that name attached

	// mu guards series and watchers. Observations hold it for reading, so
	// a sweep (which holds it for writing) never removes a series while an
	// update to it is in flight, and no update is lost with the series.
	mu     sync.RWMutex
	series map[string]*series // by appendSeriesKey of the label values
	// watchers are the series-count gauges of the attached handlers,
	// kept at len(series).
	watchers map[string]prom.Gauge
}

// series is one label combination of a family: its collector child and
// when it was last updated, for expiry.
type series struct {
	lvs     []string
	counter prom.Counter
	gauge   prom.Gauge
	obs     prom.Observer
	last    atomic.Int64 // Unix nanoseconds of the last update
	// removed: a sweep took the series out of its family (guarded by the
	// family's mu), so a handler that kept it must look its labels up
	// again.
	removed bool
}

func (s *series) record(v float64, now int64) {
	switch {
	case s.counter != nil:
		s.counter.Add(v)
	case s.gauge != nil:
		s.gauge.Set(v)
	default:
		s.obs.Observe(v)
	}
	s.last.Store(now)
}

// spec is a family's definition; a family is shared only between equal
// specs. Caps and expiry are not part of it: a reload that changes them
// keeps the family and its counts.
type spec struct {
	name    string
	help    string
	kind    string
	labels  []string
	buckets []float64
	consts  map[string]string // const labels
}

func (s spec) equal(o spec) bool {
	return s.name == o.name && s.help == o.help && s.kind == o.kind &&
		slices.Equal(s.labels, o.labels) && slices.Equal(s.buckets, o.buckets) &&
		maps.Equal(s.consts, o.consts)
}

func newFamily(s spec) (*family, error) {
	f := &family{
		spec:     s,
		registry: prom.NewRegistry(),
		owners:   make(map[string]int),
		series:   make(map[string]*series),
		watchers: make(map[string]prom.Gauge),
	}
	var c prom.Collector
	switch s.kind {
	case Counter:
		f.counter = prom.NewCounterVec(prom.CounterOpts{Name: s.name, Help: s.help, ConstLabels: s.consts}, s.labels)
		c = f.counter
	case Gauge:
		f.gauge = prom.NewGaugeVec(prom.GaugeOpts{Name: s.name, Help: s.help, ConstLabels: s.consts}, s.labels)
		c = f.gauge
	default:
		f.histogram = prom.NewHistogramVec(prom.HistogramOpts{Name: s.name, Help: s.help, ConstLabels: s.consts, Buckets: s.buckets}, s.labels)
		c = f.histogram
	}
	if err := f.registry.Register(c); err != nil {
		return nil, fmt.Errorf("metric %s: %w", s.name, err)
	}
	return f, nil
}

// errSeriesCap refuses a new series of a family at its cap.
var errSeriesCap = errors.New("series cap reached")

// appendSeriesKey appends the key of a label combination to buf. 0xff
// never occurs in UTF-8, and label values that are not UTF-8 are refused
// when the series is created.
func appendSeriesKey(buf []byte, lvs []string) []byte {
	for i, v := range lvs {
		if i > 0 {
			buf = append(buf, 0xff)
		}
		buf = append(buf, v...)
	}
	return buf
}

// observe records v under the label values lvs, whose appendSeriesKey is
// key, at now (Unix nanoseconds),
// creating the series unless the family already holds maxSeries of them
// (0: no cap), in which case it returns errSeriesCap. On another failure
// it says why, as a reason label of the dropped counter.
// It returns the series, which the caller may keep to record the same
// labels again with observeIn.
func (f *family) observe(lvs []string, key []byte, v float64, now int64, maxSeries int) (s *series, reason string, err error) {
	if reason, err := f.check(v); err != nil {
		return nil, reason, err
	}
	// The key is looked up without a copy; only a new series stores one.
	f.mu.RLock()
	if s = f.series[string(key)]; s != nil {
		s.record(v, now)
		f.mu.RUnlock()
		return s, "", nil
	}
	f.mu.RUnlock()

	f.mu.Lock()
	defer f.mu.Unlock()
	s = f.series[string(key)]
	if s == nil {
		if maxSeries > 0 && len(f.series) >= maxSeries {
			return nil, "", errSeriesCap
		}
		// The series keeps its label values for as long as it lives: copies,
		// so that they do not keep alive the arrays of words they came
		// from (the mixer decodes a report's words into shared arrays).
		kept := make([]string, len(lvs))
		for i, v := range lvs {
			kept[i] = strings.Clone(v)
		}
		s = &series{lvs: kept}
		var err error
		switch {
		case f.counter != nil:
			s.counter, err = f.counter.GetMetricWithLabelValues(kept...)
		case f.gauge != nil:
			s.gauge, err = f.gauge.GetMetricWithLabelValues(kept...)
		default:
			s.obs, err = f.histogram.GetMetricWithLabelValues(kept...)
		}
		if err != nil {
			return nil, "bad_labels", err
		}
		f.series[string(key)] = s
		f.countChanged()
	}
	s.record(v, now)
	return s, "", nil
}

// check refuses a value the family cannot record, saying why.
func (f *family) check(v float64) (reason string, err error) {
	if f.counter != nil && !(v >= 0) {
		return "bad_value", fmt.Errorf("counter %s cannot add %v", f.name, v)
	}
	return "", nil
}

// observeIn records v in s, a series observe returned, at now, unless a
// sweep has removed s since: then it returns false and records nothing.
func (f *family) observeIn(s *series, v float64, now int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if s.removed {
		return false
	}
	s.record(v, now)
	return true
}

// sweep removes the series last updated before cutoff (Unix nanoseconds)
// and returns how many it removed.
func (f *family) sweep(cutoff int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for key, s := range f.series {
		if s.last.Load() >= cutoff {
			continue
		}
		switch {
		case f.counter != nil:
			f.counter.DeleteLabelValues(s.lvs...)
		case f.gauge != nil:
			f.gauge.DeleteLabelValues(s.lvs...)
		default:
			f.histogram.DeleteLabelValues(s.lvs...)
		}
		delete(f.series, key)
		s.removed = true
		n++
	}
	if n > 0 {
		f.countChanged()
	}
	return n
}

// countChanged brings the watchers up to date. Called with f.mu held for
// writing.
func (f *family) countChanged() {
	for _, g := range f.watchers {
		g.Set(float64(len(f.series)))
	}
}

func (f *family) watch(owner string, g prom.Gauge) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchers[owner] = g
	g.Set(float64(len(f.series)))
}

func (f *family) unwatch(owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.watchers, owner)
}

// gaugeRefs count the families each handler name watches under each
// metric name with the series gauges vec: a handler and its successor on
// reload share the vec and its label pairs, and only the last family out
// deletes a pair. Guarded by endpoints.mu.
var gaugeRefs = make(map[gaugeRef]int)

type gaugeRef struct {
	vec           *prom.GaugeVec
	owner, metric string
}

// acquire attaches the handler named owner to the endpoint of addr, starting
// it if needed, and returns the families for specs, in order.
func acquire(ctx context.Context, log *slog.Logger, addr, owner string, specs []spec, gauges *prom.GaugeVec) (*endpoint, []*family, error) {
	if addr == "" {
		ep := newEndpoint("")
		endpoints.mu.Lock()
		defer endpoints.mu.Unlock()
		fams, err := ep.attach(owner, specs, gauges)
		return ep, fams, err
	}
	var ln net.Listener
	for {
		endpoints.mu.Lock()
		if ep := endpoints.byAddr[addr]; ep != nil {
			fams, err := ep.attach(owner, specs, gauges)
			endpoints.mu.Unlock()
			if ln != nil {
				ln.Close() // another Create started the endpoint meanwhile
			}
			return ep, fams, err
		}
		if ln != nil {
			ep := newEndpoint(addr)
			fams, err := ep.attach(owner, specs, gauges)
			if err != nil {
				endpoints.mu.Unlock()
				ln.Close()
				return nil, nil, err
			}
			endpoints.byAddr[addr] = ep
			endpoints.mu.Unlock()
			ep.serve(ln, log)
			return ep, fams, nil
		}
		// Bind without the lock: the listener we wait for may be on its
		// way out through release, which needs the lock.
		endpoints.mu.Unlock()
		var err error
		if ln, err = listen(ctx, addr); err != nil {
			return nil, nil, err
		}
	}
}

// attach adds owner to the families of specs, creating or, when only
// handlers of the same name (its predecessors) own a family defined
// differently, replacing them. Called with endpoints.mu held; on error
// nothing is attached.
func (ep *endpoint) attach(owner string, specs []spec, gauges *prom.GaugeVec) ([]*family, error) {
	fams := make([]*family, 0, len(specs))
	fail := func(err error) ([]*family, error) {
		ep.detach(owner, fams, gauges)
		return nil, err
	}
	for _, s := range specs {
		f := ep.families[s.name]
		if f != nil && !f.spec.equal(s) {
			for o := range f.owners {
				if o != owner {
					return fail(fmt.Errorf("metric %s is already served at %s by handler %q with another definition", s.name, ep.where(), o))
				}
			}
			// A reload redefined it: the predecessor's family goes now,
			// the predecessor reports into it unscraped until closed,
			// and its count is no longer the one shown.
			f.unwatch(owner)
			f = nil
		}
		if f == nil {
			var err error
			if f, err = newFamily(s); err != nil {
				return fail(err)
			}
			ep.families[s.name] = f
		}
		if f.owners[owner]++; f.owners[owner] == 1 {
			ref := gaugeRef{gauges, owner, f.name}
			gaugeRefs[ref]++
			f.watch(owner, gauges.WithLabelValues(owner, f.name))
		}
		fams = append(fams, f)
	}
	ep.refs++
	ep.publish()
	return fams, nil
}

// detach undoes attach's work on fams without touching refs. Called with
// endpoints.mu held.
func (ep *endpoint) detach(owner string, fams []*family, gauges *prom.GaugeVec) {
	for _, f := range fams {
		if f.owners[owner]--; f.owners[owner] <= 0 {
			delete(f.owners, owner)
			f.unwatch(owner)
			ref := gaugeRef{gauges, owner, f.name}
			if gaugeRefs[ref]--; gaugeRefs[ref] <= 0 {
				delete(gaugeRefs, ref)
				gauges.DeleteLabelValues(owner, f.name)
			} else if cur := ep.families[f.name]; cur != nil && cur != f && cur.owners[owner] > 0 {
				cur.watch(owner, gauges.WithLabelValues(owner, f.name)) // the successor's count
			}
		}
		if len(f.owners) == 0 && ep.families[f.name] == f {
			delete(ep.families, f.name)
		}
	}
	ep.publish()
}

// release detaches owner and, once no handler is left, stops the
// listener, releasing the port before it returns.
func (ep *endpoint) release(ctx context.Context, log *slog.Logger, owner string, fams []*family, gauges *prom.GaugeVec) error {
	endpoints.mu.Lock()
	ep.detach(owner, fams, gauges)
	ep.refs--
	last := ep.refs == 0 && ep.srv != nil
	if last && endpoints.byAddr[ep.addr] == ep {
		delete(endpoints.byAddr, ep.addr)
	}
	endpoints.mu.Unlock()
	if !last {
		return nil
	}
	// Shutdown closes the listener first, then waits for scrapes in
	// flight; past the caller's deadline they are cut.
	err := ep.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, ep.srv.Close())
	}
	<-ep.served
	log.Info("stopped serving metrics", "addr", ep.addr)
	return err
}

func (ep *endpoint) serve(ln net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prom.GathererFunc(ep.gather), promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
	}))
	ep.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ep.served = make(chan struct{})
	log.Info("serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	go func() {
		defer close(ep.served)
		if err := ep.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "addr", ep.addr, "err", err)
		}
	}()
}

func (ep *endpoint) where() string {
	if ep.addr == "" {
		return "this handler"
	}
	return ep.addr
}

// listen binds addr, retrying for up to bindRetry while the address is in
// use.
func listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	deadline := time.Now().Add(bindRetry)
	for {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return nil, fmt.Errorf("addr: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("addr: %w (%w)", err, ctx.Err())
		case <-time.After(bindRetryPause):
		}
	}
}
