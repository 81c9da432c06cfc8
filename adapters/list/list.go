package list

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.Checker = (*handler)(nil)

// matcher reports whether a value is on the list; ok is false when the value
// cannot be compared with the entries at all, with why saying what is wrong.
type matcher func(value string) (found, ok bool, why string)

type handler struct {
	// match holds the overrides' matcher, or with a provider the one built
	// from the overrides and the last fetched list.
	match     atomic.Pointer[list]
	remote    *remote // nil without a provider
	blacklist bool
	allow     adapters.CheckResult // Code OK, with the caching bounds

	allowed, denied, unavailable prometheus.Counter
}

// list is the matcher in force and, with a provider, when the provider last
// answered.
type list struct {
	match   matcher
	fetched time.Time // zero until the first fetch succeeds
	entries int       // the provider's
}

func newHandler(ctx context.Context, set adapters.Settings, cfg adapters.Config, client *http.Client) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	checks, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_list_checks_total",
		Help: "Values looked up by list handlers, by outcome: allowed, denied, or unavailable (the provider's list expired).",
	}, []string{"handler", "result"}))
	if err != nil {
		return nil, err
	}
	h := &handler{
		blacklist: c.Blacklist,
		allow: adapters.CheckResult{
			Code:          codes.OK,
			ValidDuration: c.CachingInterval,
			ValidUseCount: c.CachingUseCount,
		},
		allowed:     checks.WithLabelValues(set.Name, "allowed"),
		denied:      checks.WithLabelValues(set.Name, "denied"),
		unavailable: checks.WithLabelValues(set.Name, "unavailable"),
	}
	if c.ProviderURL == "" {
		m, err := newMatcher(c.EntryType, c.Overrides)
		if err != nil {
			return nil, err
		}
		h.match.Store(&list{match: m})
		return h, nil
	}
	if h.remote, err = newRemote(set, c, client, &h.match); err != nil {
		return nil, err
	}
	h.remote.start(ctx)
	return h, nil
}

func newMatcher(entryType string, entries []string) (matcher, error) {
	switch entryType {
	case Strings:
		set := make(map[string]struct{}, len(entries))
		for _, e := range entries {
			set[e] = struct{}{}
		}
		return func(v string) (bool, bool, string) {
			_, found := set[v]
			return found, true, ""
		}, nil
	case CaseInsensitiveStrings:
		set := make(map[string]struct{}, len(entries))
		for _, e := range entries {
			set[strings.ToLower(e)] = struct{}{}
		}
		return func(v string) (bool, bool, string) {
			_, found := set[strings.ToLower(v)]
			return found, true, ""
		}, nil
	case Regex:
		if len(entries) == 0 {
			return func(string) (bool, bool, string) { return false, true, "" }, nil
		}
		// One alternation runs in a single pass over the value however
		// long the list is.
		alts := make([]string, len(entries))
		for i, e := range entries {
			alts[i] = "(?:" + e + ")"
		}
		re, err := regexp.Compile(`^(?:` + strings.Join(alts, "|") + `)$`)
		if err != nil {
			return nil, fmt.Errorf("overrides: %w", err)
		}
		return func(v string) (bool, bool, string) { return re.MatchString(v), true, "" }, nil
	case IPAddresses:
		prefixes := make([]netip.Prefix, len(entries))
		for i, e := range entries {
			p, err := parsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("overrides[%d]: %w", i, err)
			}
			prefixes[i] = p
		}
		return func(v string) (bool, bool, string) {
			a, err := netip.ParseAddr(v)
			if err != nil {
				return false, false, fmt.Sprintf("%q is not an IP address", v)
			}
			a = a.Unmap()
			for _, p := range prefixes {
				if p.Contains(a) {
					return true, true, ""
				}
			}
			return false, true, ""
		}, nil
	}
	return nil, fmt.Errorf("entryType: unknown entry type %q", entryType)
}

// Check looks the instance's value up.
func (h *handler) Check(ctx context.Context, inst template.Instance) (adapters.CheckResult, error) {
	e, ok := inst.(*template.ListEntry)
	if !ok || e == nil {
		return adapters.CheckResult{}, fmt.Errorf("%s: unsupported instance %T", Name, inst)
	}
	l := h.match.Load()
	if h.remote != nil {
		if err := h.remote.usable(l); err != nil {
			h.unavailable.Inc()
			return adapters.CheckResult{}, err
		}
	}
	found, ok, why := l.match(e.Value)
	switch {
	case !ok:
		return h.deny(why), nil
	case h.blacklist && found:
		return h.deny(fmt.Sprintf("%q is blacklisted", e.Value)), nil
	case !h.blacklist && !found:
		return h.deny(fmt.Sprintf("%q is not whitelisted", e.Value)), nil
	}
	h.allowed.Inc()
	return h.allow, nil
}

func (h *handler) deny(msg string) adapters.CheckResult {
	h.denied.Inc()
	r := h.allow
	r.Code = codes.PermissionDenied
	r.Message = msg
	return r
}

// Close stops the refreshes.
func (h *handler) Close(context.Context) error {
	if h.remote != nil {
		h.remote.stop()
	}
	return nil
}
