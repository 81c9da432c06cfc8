package mixer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/policy"
)

// handler is one created handler of a state, or the error that kept it
// from being created.
type handler struct {
	name    string
	adapter string
	h       adapters.Handler // nil when err != nil
	err     error            // Create's error; the handler's rules fail per their failPolicy

	checker adapters.Checker
	quota   adapters.QuotaAllocator
	queue   *reportQueue // set when the handler is a Reporter

	// Call latency by role, resolved once: looking a series up by its
	// labels on every call costs more than the call to a fast handler.
	checkDuration, quotaDuration prometheus.Observer
	quotas                       sync.Map // quota instance name → *quotaCounters
}

// quotaCounters are one handler's series for one quota instance.
type quotaCounters struct {
	results [3]prometheus.Counter // granted, denied, error
	granted prometheus.Counter
	// byRule holds the quota's series of sidemix_mixer_denials_total by
	// rule (rule name → prometheus.Counter), and exhausted the denial's
	// message: a Check denied for quota costs no label lookup and no
	// string building (mixer/quota.go).
	byRule    sync.Map
	exhausted string
}

const (
	quotaResultGranted = iota
	quotaResultDenied
	quotaResultError
)

// quotaCounters returns the handler's series for a quota instance,
// resolved once per state.
func (h *handler) quotaCounters(m *metrics, name string) *quotaCounters {
	if c, ok := h.quotas.Load(name); ok {
		return c.(*quotaCounters)
	}
	c := &quotaCounters{granted: m.quotaGranted.WithLabelValues(h.name, name), exhausted: exhaustedMessage(name)}
	for i, r := range []string{allocGranted, allocDenied, allocError} {
		c.results[i] = m.quotaAllocations.WithLabelValues(h.name, name, r)
	}
	v, _ := h.quotas.LoadOrStore(name, c)
	return v.(*quotaCounters)
}

// unavailable is the error every call to a handler that could not be
// created fails with.
func (h *handler) unavailable() error {
	return fmt.Errorf("handler %q unavailable: %v", h.name, h.err)
}

// state is what one config snapshot runs on: the snapshot, its handlers and
// their report queues. Requests acquire it for their duration; a reload
// swaps in a new state and retires the old one once its last request is
// done.
type state struct {
	snap     *policy.Snapshot
	otlp     otlpPlan // what OTLP ingest does under this config
	handlers map[string]*handler
	order    []*handler // by name
	loadedAt time.Time

	rules sync.Map // rule name → *ruleCounters, filled as rules answer
	// refs holds the wire form of the referenced-attribute lists answers
	// carry.
	refs refsCache

	holders  atomic.Int64
	closing  atomic.Bool
	idle     chan struct{} // closed once closing and no request holds it
	idleOnce sync.Once
	retired  sync.Once
}

// newState creates every handler of snap and starts its report queues. A
// handler whose Create fails is kept with its error: it is logged and
// counted, and the rules that use it fail per their failPolicy.
func (s *Server) newState(snap *policy.Snapshot) *state {
	st := &state{
		snap:     snap,
		otlp:     otlpPlanOf(snap),
		handlers: make(map[string]*handler),
		loadedAt: s.cfg.Now(),
		idle:     make(chan struct{}),
	}
	for _, hc := range snap.Handlers() {
		h := &handler{name: hc.Name, adapter: hc.Adapter}
		log := s.log.With("handler", hc.Name)
		set := adapters.Settings{
			Name:       hc.Name,
			Logger:     log,
			Registerer: s.reg,
			Now:        s.cfg.Now,
		}
		h.h, h.err = createHandler(hc, set)
		if h.err != nil {
			s.m.handlerCreateFails.WithLabelValues(hc.Name).Inc()
			log.Error("handler creation failed; its rules fail per their failPolicy", "adapter", hc.Adapter,
				"error", redactURLs(h.err.Error()))
		} else {
			h.checker, _ = h.h.(adapters.Checker)
			h.quota, _ = h.h.(adapters.QuotaAllocator)
			if h.checker != nil {
				h.checkDuration = s.m.handlerDuration.WithLabelValues(hc.Name, roleCheck)
			}
			if h.quota != nil {
				h.quotaDuration = s.m.handlerDuration.WithLabelValues(hc.Name, roleQuota)
			}
			if rep, ok := h.h.(adapters.Reporter); ok {
				h.queue = newReportQueue(hc.Name, rep, s.cfg.ReportQueueSize, s.cfg.ReportBatchSize,
					s.cfg.ReportTimeout, s.m, log, s.cfg.Now)
				h.queue.start()
			}
		}
		st.handlers[hc.Name] = h
		st.order = append(st.order, h)
	}
	return st
}

func createHandler(hc policy.HandlerConfig, set adapters.Settings) (h adapters.Handler, err error) {
	if hc.Factory.Create == nil {
		return nil, fmt.Errorf("adapter %q has no Create function", hc.Adapter)
	}
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("adapter %q panicked in Create: %v", hc.Adapter, r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), handlerCreateTimeout)
	defer cancel()
	h, err = hc.Factory.Create(ctx, set, hc.Params)
	if err == nil && h == nil {
		err = fmt.Errorf("adapter %q created no handler", hc.Adapter)
	}
	return h, err
}

// ruleCounters are one rule's series of the rule metrics.
type ruleCounters struct {
	results [ruleDeny + 1]prometheus.Counter // by ruleResult
	shadow  prometheus.Counter
}

// ruleCounters returns the rule's series, resolved once per state.
func (st *state) ruleCounters(m *metrics, rule string) *ruleCounters {
	if c, ok := st.rules.Load(rule); ok {
		return c.(*ruleCounters)
	}
	c := &ruleCounters{shadow: m.shadowDenials.WithLabelValues(rule)}
	for r := range c.results {
		c.results[r] = m.ruleChecks.WithLabelValues(rule, ruleResult(r).String())
	}
	v, _ := st.rules.LoadOrStore(rule, c)
	return v.(*ruleCounters)
}

// acquire returns the active state, held until release.
func (s *Server) acquire() *state {
	for {
		st := s.active.Load()
		st.holders.Add(1)
		if !st.closing.Load() {
			return st
		}
		// Retired between Load and Add: let it go and take the new one.
		st.release()
	}
}

func (st *state) release() {
	if st.holders.Add(-1) == 0 && st.closing.Load() {
		st.idleOnce.Do(func() { close(st.idle) })
	}
}

// retire waits for the requests holding st, drains its report queues and
// closes its handlers. ctx bounds all of it; what is still queued when it
// ends is dropped and counted.
func (st *state) retire(ctx context.Context) error {
	var err error
	st.retired.Do(func() { err = st.doRetire(ctx) })
	return err
}

func (st *state) doRetire(ctx context.Context) error {
	st.closing.Store(true)
	if st.holders.Load() == 0 {
		st.idleOnce.Do(func() { close(st.idle) })
	}
	var errs []error
	select {
	case <-st.idle:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("requests still running: %w", ctx.Err()))
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, h := range st.order {
		if h.queue == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.queue.drain(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	closeCtx := ctx
	if ctx.Err() != nil {
		// Close must run even when time is up: give handlers a moment to
		// release listeners and connections.
		var cancel context.CancelFunc
		closeCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), handlerCloseTimeoutFallback)
		defer cancel()
	}
	for _, h := range st.order {
		if h.h == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := closeHandler(closeCtx, h.h); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("handler %q: close: %w", h.name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func closeHandler(ctx context.Context, h adapters.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panicked: %v", r)
		}
	}()
	return h.Close(ctx)
}
