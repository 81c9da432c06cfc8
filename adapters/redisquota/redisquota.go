package redisquota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/internal/quota"
	"github.com/sidemix/sidemix/adapters/template"
)

var (
	_ adapters.QuotaAllocator = (*handler)(nil)
	_ quota.Store             = (*store)(nil)
)

// ErrCircuitOpen is the error of allocations refused without calling Redis
// because the circuit is open; the mixer applies the rule's fail policy.
var ErrCircuitOpen = errors.New("redisquota: circuit open: Redis unavailable")

type handler struct {
	quota.Allocator
	store *store
	m     *metrics
	// outcomes are allocations_total's counters by quota, resolved once.
	outcomes map[string]*outcomes
	once     sync.Once
}

type outcomes struct{ granted, partial, denied, duplicate, err prometheus.Counter }

func (o *outcomes) of(name string) prometheus.Counter {
	switch name {
	case "granted":
		return o.granted
	case "partial":
		return o.partial
	case "denied":
		return o.denied
	case "duplicate":
		return o.duplicate
	}
	return o.err
}

// store is Redis behind a timeout and a circuit breaker.
type store struct {
	name    string
	client  *redis.Client
	timeout time.Duration
	breaker *breaker
	batcher *batcher
	m       *metrics
	// local answers without Redis what it can (local.go); nil when the
	// over-limit cache and leases are both off.
	local     *local
	now       func() time.Time
	flushStop chan struct{}
	flushWG   sync.WaitGroup
}

type metrics struct {
	allocations *prometheus.CounterVec
	errors      *prometheus.CounterVec
	open        *prometheus.GaugeVec
	latency     *prometheus.HistogramVec
	batch       *prometheus.HistogramVec
	local       *prometheus.CounterVec
	leaseUnits  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.allocations, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_redisquota_allocations_total",
		Help: "Quota allocations by redisquota handlers, by quota and outcome (granted, partial, denied, duplicate, error).",
	}, []string{"handler", "quota", "result"})); err != nil {
		return nil, err
	}
	if m.errors, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_redisquota_backend_errors_total",
		Help: "Failed calls from redisquota handlers to Redis (timeouts, connection and script errors); calls refused by an open circuit are not counted.",
	}, []string{"handler"})); err != nil {
		return nil, err
	}
	if m.open, err = handlerkit.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sidemix_redisquota_circuit_open",
		Help: "1 while a redisquota handler's circuit breaker is open (allocations fail without calling Redis), else 0.",
	}, []string{"handler"})); err != nil {
		return nil, err
	}
	if m.latency, err = handlerkit.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sidemix_redisquota_script_duration_seconds",
		Help:    "Time of redisquota's round trips to Redis (one batch of allocations, a script call per counter, in one pipeline), failed ones included.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"handler"})); err != nil {
		return nil, err
	}
	if m.batch, err = handlerkit.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sidemix_redisquota_batch_size",
		Help:    "Allocations redisquota handlers sent to Redis together in one round trip.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	}, []string{"handler"})); err != nil {
		return nil, err
	}
	if m.local, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_redisquota_local_answers_total",
		Help: "Allocations redisquota handlers answered without Redis: from a lease, from the over-limit cache, or as a repeat of a deduplication id they answered.",
	}, []string{"handler", "source"})); err != nil {
		return nil, err
	}
	if m.leaseUnits, err = handlerkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_redisquota_lease_units_total",
		Help: "Units redisquota handlers took from Redis in leases (taken) and gave back unused or charged twice (returned).",
	}, []string{"handler", "kind"})); err != nil {
		return nil, err
	}
	return &m, nil
}

func newHandler(ctx context.Context, set adapters.Settings, cfg adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	qs, err := quota.NewSet(&c.Config)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(set.Registerer)
	if err != nil {
		return nil, err
	}
	opt, err := c.options()
	if err != nil {
		return nil, fmt.Errorf("redisServerUrl: %v", err)
	}
	opt.DialTimeout = c.Timeout
	opt.ReadTimeout = c.Timeout
	opt.WriteTimeout = c.Timeout
	opt.PoolTimeout = c.Timeout
	opt.ContextTimeoutEnabled = true
	// A retried script may have run already; the breaker, not retries,
	// handles a failing Redis.
	opt.MaxRetries = -1
	// One dial per call: go-redis's default retries a refused dial five
	// times, 100ms apart, which would make a dead Redis cost the whole
	// timeout on every call until the circuit opens.
	opt.DialerRetries = 1
	opt.Protocol = 2
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	log := set.Logger.With("redis", opt.Addr) // never the URL: it may hold a password
	st := &store{name: set.Name, client: redis.NewClient(opt), timeout: c.Timeout, m: m, now: set.Now}
	if c.OverLimitCache || c.LocalLease.MaxFraction > 0 {
		st.local = newLocal(c, localMetrics{
			lease:     m.local.WithLabelValues(set.Name, "lease"),
			overLimit: m.local.WithLabelValues(set.Name, "over_limit"),
			duplicate: m.local.WithLabelValues(set.Name, "duplicate"),
			taken:     m.leaseUnits.WithLabelValues(set.Name, "taken"),
			returned:  m.leaseUnits.WithLabelValues(set.Name, "returned"),
		})
	}
	st.breaker = newBreaker(c.Breaker.FailureThreshold, c.Breaker.ProbeInterval, c.Timeout,
		func(ctx context.Context) error { return st.client.Ping(ctx).Err() },
		func(open bool, cause error) {
			if open {
				m.open.WithLabelValues(set.Name).Set(1)
				if st.local != nil {
					st.local.clearDenials()
				}
				log.Warn("circuit open: allocations fail until Redis answers again", "error", cause, "probe_interval", c.Breaker.ProbeInterval)
			} else {
				m.open.WithLabelValues(set.Name).Set(0)
				log.Info("circuit closed: Redis answers again")
			}
		})
	m.open.WithLabelValues(set.Name).Set(0)
	st.batcher = newBatcher(st)
	if st.local != nil {
		st.flushStop = make(chan struct{})
		st.flushWG.Add(1)
		go st.flushLoop()
	}

	// An unreachable Redis does not fail Create: the handler would stay
	// broken until the next reload. It starts with the circuit open and
	// closes it when Redis comes.
	pctx, cancel := context.WithTimeout(ctx, c.Timeout)
	err = st.client.Ping(pctx).Err()
	cancel()
	if err != nil {
		m.errors.WithLabelValues(set.Name).Inc()
		st.breaker.forceOpen(err)
	}
	log.Debug("redisquota handler created", "quotas", len(c.Quotas), "algorithm", c.RateLimitAlgorithm,
		"over_limit_cache", c.OverLimitCache, "lease_max_fraction", c.LocalLease.MaxFraction, "lease_max_duration", c.LocalLease.MaxDuration)
	h := &handler{
		Allocator: quota.Allocator{Adapter: Name, Handler: set.Name, Set: qs, Store: st, Now: set.Now},
		store:     st,
		m:         m,
		outcomes:  make(map[string]*outcomes, len(c.Quotas)),
	}
	for _, name := range c.QuotaNames() {
		v := func(r string) prometheus.Counter { return m.allocations.WithLabelValues(set.Name, name, r) }
		h.outcomes[name] = &outcomes{v("granted"), v("partial"), v("denied"), v("duplicate"), v("error")}
	}
	return h, nil
}

// Allocate charges args.Amount to the counter of inst's quota and
// dimensions, in Redis.
func (h *handler) Allocate(ctx context.Context, inst *template.Quota, args adapters.QuotaArgs) (adapters.QuotaResult, error) {
	r, err := h.Allocator.Allocate(ctx, inst, args)
	if err != nil {
		if errors.Is(err, ErrCircuitOpen) || errors.As(err, new(*backendError)) {
			h.outcomes[inst.Name].err.Inc()
		}
		return adapters.QuotaResult{}, err
	}
	h.outcomes[inst.Name].of(r.Outcome(args.Amount)).Inc()
	return r.QuotaResult, nil
}

// Close stops the breaker's probe and closes the connections.
func (h *handler) Close(context.Context) error {
	var err error
	h.once.Do(func() {
		st := h.store
		st.batcher.close()
		if st.local != nil {
			// Calls the batcher ran last may have taken leases: give
			// them back, and write the records, after it stopped.
			close(st.flushStop)
			st.flushWG.Wait()
			st.flush(true)
		}
		st.breaker.close()
		err = st.client.Close()
	})
	return err
}

// backendError is a failed call to Redis.
type backendError struct{ err error }

func (e *backendError) Error() string { return "redisquota: " + e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// Allocate implements quota.Store: the allocation goes to Redis with the
// others of its batch, bounded by the timeout, unless the circuit is open.
func (s *store) Allocate(ctx context.Context, req quota.Request) (quota.Result, error) {
	if s.local != nil {
		return s.allocateLocal(ctx, req)
	}
	if !s.breaker.allow() {
		return quota.Result{}, s.openErr()
	}
	c, err := s.batcher.allocate(ctx, req, 0, nil)
	if err != nil {
		return quota.Result{}, err
	}
	return c.res, nil
}

// openErr is the error of an allocation the open circuit refuses.
func (s *store) openErr() error {
	return fmt.Errorf("%w since %s", ErrCircuitOpen, s.breaker.openSince().Format(time.RFC3339))
}

var _ slog.LogValuer = (*Config)(nil)

// AllocateReturnsByDeadline tells the mixer that Allocate returns when its
// context ends, whatever Redis does: it may run on the request's
// goroutine.
func (h *handler) AllocateReturnsByDeadline() {}
