package memquota

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.QuotaAllocator = (*handler)(nil)

const (
	// shardCount spreads counters over locks so that unrelated counters do
	// not contend; each counter is exact under its shard's lock.
	shardCount = 32
	// sweepEvery is how often a shard drops idle counters and stale
	// deduplication entries.
	sweepEvery = time.Second
)

type handler struct {
	name    string
	now     func() time.Time
	dedup   time.Duration
	quotas  map[string]*quota
	seed    maphash.Seed
	shards  [shardCount]shard
	results *prometheus.CounterVec
}

type quota struct {
	name      string
	def       limit
	overrides []override
}

type override struct {
	dims map[string]string
	limit
}

type shard struct {
	mu        sync.Mutex
	windows   map[string]*window
	dedup     map[dedupKey]dedupEntry
	lastSweep time.Time
}

type dedupKey struct{ id, counter string }

type dedupEntry struct {
	result  adapters.QuotaResult
	expires time.Time
}

func newHandler(set adapters.Settings, cfg adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
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
	h := &handler{
		name:    set.Name,
		now:     set.Now,
		dedup:   c.MinDeduplicationDuration,
		quotas:  make(map[string]*quota, len(c.Quotas)),
		seed:    maphash.MakeSeed(),
		results: results,
	}
	for _, q := range c.Quotas {
		def := limit{max: q.MaxAmount, valid: q.ValidDuration}
		qq := &quota{name: q.Name, def: def}
		for _, o := range q.Overrides {
			l := limit{max: o.MaxAmount, valid: o.ValidDuration}
			if l.valid == 0 {
				l.valid = def.valid
			}
			qq.overrides = append(qq.overrides, override{dims: maps.Clone(o.Dimensions), limit: l})
		}
		h.quotas[q.Name] = qq
	}
	for i := range h.shards {
		h.shards[i].windows = make(map[string]*window)
		h.shards[i].dedup = make(map[dedupKey]dedupEntry)
	}
	return h, nil
}

// Allocate charges args.Amount to the counter of inst's quota and
// dimensions.
func (h *handler) Allocate(ctx context.Context, inst *template.Quota, args adapters.QuotaArgs) (adapters.QuotaResult, error) {
	if inst == nil {
		return adapters.QuotaResult{}, errors.New("memquota: nil instance")
	}
	q, ok := h.quotas[inst.Name]
	if !ok {
		return adapters.QuotaResult{}, fmt.Errorf("memquota: handler %s has no quota %q", h.name, inst.Name)
	}
	if args.Amount < 0 {
		return adapters.QuotaResult{}, fmt.Errorf("memquota: quota %q: negative amount %d", inst.Name, args.Amount)
	}
	key := counterKey(q.name, inst.Dimensions)
	now := h.now()

	sh := &h.shards[maphash.String(h.seed, key)%shardCount]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(now)

	dk := dedupKey{args.DeduplicationID, key}
	if args.DeduplicationID != "" && h.dedup > 0 {
		if e, ok := sh.dedup[dk]; ok && now.Before(e.expires) {
			h.count(q.name, "duplicate")
			return e.result, nil
		}
	}
	w := sh.windows[key]
	if w == nil {
		w = newWindow(q.limitFor(inst.Dimensions), now)
		sh.windows[key] = w
	}
	granted, valid := w.allocate(now, args.Amount, args.BestEffort)
	res := adapters.QuotaResult{Amount: granted, ValidDuration: valid}
	if args.DeduplicationID != "" && h.dedup > 0 {
		sh.dedup[dk] = dedupEntry{result: res, expires: now.Add(h.dedup)}
	}
	switch {
	case granted == args.Amount:
		h.count(q.name, "granted")
	case granted > 0:
		h.count(q.name, "partial")
	default:
		h.count(q.name, "denied")
	}
	return res, nil
}

func (h *handler) count(quota, result string) {
	h.results.WithLabelValues(h.name, quota, result).Inc()
}

// Close has nothing to release: the handler starts no goroutines.
func (h *handler) Close(context.Context) error { return nil }

// limitFor returns the limit of the first override whose dimensions dims
// all has.
func (q *quota) limitFor(dims map[string]any) limit {
next:
	for _, o := range q.overrides {
		for k, want := range o.dims {
			v, ok := dims[k]
			if !ok || template.FormatValue(v) != want {
				continue next
			}
		}
		return o.limit
	}
	return q.def
}

// counterKey renders a quota name and its dimensions unambiguously, as
// name{k1="v1",k2="v2"} with keys sorted.
func counterKey(name string, dims map[string]any) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(dims)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(template.FormatValue(dims[k])))
	}
	b.WriteByte('}')
	return b.String()
}

// sweep drops idle counters and expired deduplication entries, at most
// once per sweepEvery, so that memory follows the live counters.
func (s *shard) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < sweepEvery && !now.Before(s.lastSweep) {
		return
	}
	s.lastSweep = now
	for k, w := range s.windows {
		if w.idle(now) {
			delete(s.windows, k)
		}
	}
	for k, e := range s.dedup {
		if !now.Before(e.expires) {
			delete(s.dedup, k)
		}
	}
}
