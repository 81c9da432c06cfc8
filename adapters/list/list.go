package list

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

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
	match     matcher
	blacklist bool
	allow     adapters.CheckResult // Code OK, with the caching bounds
	allowed   prometheus.Counter
	denied    prometheus.Counter
}

func newHandler(set adapters.Settings, cfg adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	m, err := newMatcher(c.EntryType, c.Overrides)
	if err != nil {
		return nil, err
	}
	checks, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_list_checks_total",
		Help: "Values looked up by list handlers, by outcome.",
	}, []string{"handler", "result"}))
	if err != nil {
		return nil, err
	}
	return &handler{
		match:     m,
		blacklist: c.Blacklist,
		allow: adapters.CheckResult{
			Code:          codes.OK,
			ValidDuration: c.CachingInterval,
			ValidUseCount: c.CachingUseCount,
		},
		allowed: checks.WithLabelValues(set.Name, "allowed"),
		denied:  checks.WithLabelValues(set.Name, "denied"),
	}, nil
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
	found, ok, why := h.match(e.Value)
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

func (h *handler) Close(context.Context) error { return nil }
