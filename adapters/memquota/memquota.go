package memquota

import (
	"context"
	"reflect"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/internal/quota"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.QuotaAllocator = (*handler)(nil)

type handler struct {
	quota.Allocator
	store   *sharedStore
	once    sync.Once
	results *prometheus.CounterVec
}

func newHandler(set adapters.Settings, cfg adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	qs, err := quota.NewSet(&c.Config)
	if err != nil {
		return nil, err
	}
	results, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_memquota_allocations_total",
		Help: "Quota allocations by memquota handlers, by quota and outcome (granted, partial, denied, duplicate).",
	}, []string{"handler", "quota", "result"}))
	if err != nil {
		return nil, err
	}
	st := acquireStore(set.Registerer, set.Name)
	return &handler{
		Allocator: quota.Allocator{Adapter: Name, Handler: set.Name, Set: qs, Store: st.store, Now: set.Now},
		store:     st,
		results:   results,
	}, nil
}

// Allocate charges args.Amount to the counter of inst's quota and
// dimensions.
func (h *handler) Allocate(ctx context.Context, inst *template.Quota, args adapters.QuotaArgs) (adapters.QuotaResult, error) {
	r, err := h.Allocator.Allocate(ctx, inst, args)
	if err != nil {
		return adapters.QuotaResult{}, err
	}
	h.results.WithLabelValues(h.Handler, inst.Name, r.Outcome(args.Amount)).Inc()
	return r.QuotaResult, nil
}

// Close lets go of the handler's counters; they live on while another
// handler of the same name (the next config's) holds them.
func (h *handler) Close(context.Context) error {
	h.once.Do(h.store.release)
	return nil
}

// stores are the counters of the process's memquota handlers, one store per
// mixer (told apart by its Registerer) and handler name. A reload creates
// the new config's handler before it closes the old one, so the store
// passes from one to the other with its counts.
var stores = struct {
	sync.Mutex
	m map[storeKey]*sharedStore
}{m: make(map[storeKey]*sharedStore)}

type storeKey struct {
	reg  prometheus.Registerer
	name string
}

type sharedStore struct {
	key   storeKey
	store *quota.MemStore
	refs  int // guarded by stores
}

func acquireStore(reg prometheus.Registerer, name string) *sharedStore {
	if !reflect.TypeOf(reg).Comparable() {
		// Cannot be a map key: the handler keeps its counters to itself.
		return &sharedStore{store: quota.NewMemStore(), refs: 1}
	}
	k := storeKey{reg, name}
	stores.Lock()
	defer stores.Unlock()
	s := stores.m[k]
	if s == nil {
		s = &sharedStore{key: k, store: quota.NewMemStore()}
		stores.m[k] = s
	}
	s.refs++
	return s
}

func (s *sharedStore) release() {
	stores.Lock()
	defer stores.Unlock()
	s.refs--
	if s.refs == 0 && stores.m[s.key] == s {
		delete(stores.m, s.key)
	}
}

// AllocateReturnsByDeadline tells the mixer that Allocate never blocks (it
// takes a lock, never waits on I/O): it may run on the request's goroutine.
func (h *handler) AllocateReturnsByDeadline() {}
