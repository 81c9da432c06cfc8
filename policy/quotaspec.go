package policy

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// QuotaSpec and QuotaSpecBinding say which quotas, with what charge, the
// requests of a service draw on, so that a proxy need not be told: it asks
// the mixer without naming quotas and learns them from the answer. Their
// fields are Istio's.

type quotaSpecSpec struct {
	Rules []quotaRuleSpec `yaml:"rules"`
}

type quotaRuleSpec struct {
	Match  []attributeMatchSpec `yaml:"match"`
	Quotas []quotaRefSpec       `yaml:"quotas"`
}

type attributeMatchSpec struct {
	Clause map[string]stringMatchSpec `yaml:"clause"`
}

type stringMatchSpec struct {
	Exact  nameRef `yaml:"exact"`
	Prefix nameRef `yaml:"prefix"`
	Regex  nameRef `yaml:"regex"`
}

type quotaRefSpec struct {
	Quota  nameRef `yaml:"quota"`
	Charge *int64  `yaml:"charge"`
}

type quotaSpecBindingSpec struct {
	Services   []namespacedRef `yaml:"services"`
	QuotaSpecs []namespacedRef `yaml:"quotaSpecs"`
}

type namespacedRef struct {
	Name      nameRef `yaml:"name"`
	Namespace nameRef `yaml:"namespace"`
}

// quotaSpec is a compiled QuotaSpec.
type quotaSpec struct {
	name, namespace string
	file            string
	line            int
	index           int // position in Snapshot.quotaSpecs
	rules           []quotaSpecRule
	view            any
}

// quotaSpecRule charges its quotas when any of its clauses holds (always
// when it has none).
type quotaSpecRule struct {
	match   []clause
	charges []QuotaCharge
}

// clause holds when all its conditions do.
type clause []condition

type matchOp uint8

const (
	matchExact matchOp = iota
	matchPrefix
	matchRegex
)

// condition is one attribute (or key of a map attribute) against a string
// match.
type condition struct {
	attr   string
	key    string
	hasKey bool
	op     matchOp
	value  string
	re     *regexp.Regexp
}

type quotaBinding struct {
	name, namespace string
	file            string
	line            int
	view            any
}

// specList is the QuotaSpecs bound to one service, in name order, without
// duplicates.
type specList struct {
	specs      []*quotaSpec
	maxCharges int // charges if every rule matched: the result's capacity
}

// serviceQuotas is what the bindings say about one service name.
type serviceQuotas struct {
	any *specList // bindings that name no namespace; nil when none do
	// byNamespace holds, per namespace some binding names, the specs of
	// those bindings plus any's; nil when no binding names a namespace,
	// so that the namespace is only looked at when it matters.
	byNamespace map[string]*specList
}

// quotaSpec decodes and checks a QuotaSpec. quotas are the quota instances
// by name; sent says which instances some rule sends to a handler.
func (l *loader) quotaSpec(d *document, instances map[string]*instance, sent map[string]bool) *quotaSpec {
	qs := &quotaSpec{name: d.name, namespace: d.namespace, file: d.file, line: d.nameLine, view: nodeToAny(d.spec)}
	var spec quotaSpecSpec
	fi, decoded := decodeStrict(d.spec, &spec, "spec")
	l.addField(d, fi)
	if !decoded {
		return qs
	}
	for i, r := range spec.Rules {
		field := fmt.Sprintf("spec.rules[%d]", i)
		ruleNode := nodeAt(d.spec, "rules", i)
		qr := quotaSpecRule{}
		for j, m := range r.Match {
			mfield := fmt.Sprintf("%s.match[%d].clause", field, j)
			clauseNode := nodeAt(ruleNode, "match", j, "clause")
			attrs := make([]string, 0, len(m.Clause))
			for a := range m.Clause {
				attrs = append(attrs, a)
			}
			sort.Strings(attrs)
			c := make(clause, 0, len(attrs))
			for _, a := range attrs {
				line := lineOf(keyNode(clauseNode, a), lineOf(clauseNode, d.specLine()))
				if cond, ok := l.condition(d, mfield+"."+a, line, a, m.Clause[a]); ok {
					c = append(c, cond)
				}
			}
			// Cheap tests first: a clause stops at its first failure.
			sort.SliceStable(c, func(a, b int) bool { return c[a].op < c[b].op })
			qr.match = append(qr.match, c)
		}
		if len(r.Quotas) == 0 {
			l.add(d, lineOf(ruleNode, d.specLine()), field+".quotas", "required: the quotas the matching requests draw on")
		}
		for k, q := range r.Quotas {
			qfield := fmt.Sprintf("%s.quotas[%d]", field, k)
			qNode := nodeAt(ruleNode, "quotas", k)
			if q.Quota.Value == "" {
				l.add(d, lineOf(qNode, d.specLine()), qfield+".quota", "required: the name of a quota instance")
				continue
			}
			in, found := instances[q.Quota.Value]
			switch {
			case !found:
				l.add(d, q.Quota.Line, qfield+".quota", "quota instance %q not found", q.Quota.Value)
				continue
			case in.template != template.QuotaName:
				l.add(d, q.Quota.Line, qfield+".quota", "instance %q is of template %q, not quota", q.Quota.Value, in.template)
				continue
			case !sent[q.Quota.Value]:
				// The mixer allocates a quota through the handler a rule
				// sends it to: without one the charge would be dropped.
				l.add(d, q.Quota.Line, qfield+".quota", "quota instance %q is sent to a handler by no rule", q.Quota.Value)
				continue
			}
			charge := int64(1)
			if q.Charge != nil {
				charge = *q.Charge
				if charge <= 0 {
					l.add(d, lineOf(valueNode(qNode, "charge"), lineOf(qNode, d.specLine())), qfield+".charge",
						"must be positive, got %d", charge)
					continue
				}
			}
			qr.charges = append(qr.charges, QuotaCharge{Quota: q.Quota.Value, Charge: charge})
		}
		qs.rules = append(qs.rules, qr)
	}
	return qs
}

// condition checks one clause entry: a STRING attribute, or a key of a
// STRING_MAP one written as request.headers[x-user], against exactly one
// of exact, prefix and regex.
func (l *loader) condition(d *document, field string, line int, attr string, sm stringMatchSpec) (condition, bool) {
	c := condition{attr: attr}
	if i := strings.IndexByte(attr, '['); i > 0 && strings.HasSuffix(attr, "]") {
		c.attr, c.key, c.hasKey = attr[:i], unquote(attr[i+1:len(attr)-1]), true
	}
	kind, known := l.manifest.Kind(c.attr) // with the AttributeManifest documents
	switch {
	case !known:
		msg := fmt.Sprintf("unknown attribute %q", c.attr)
		if s := l.compiler.suggest(c.attr); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		l.add(d, line, field, "%s", msg)
		return c, false
	case c.hasKey && kind != attribute.KindStringMap:
		l.add(d, line, field, "attribute %q is %s, not STRING_MAP: it has no keys", c.attr, kind)
		return c, false
	case !c.hasKey && kind == attribute.KindStringMap:
		l.add(d, line, field, "attribute %q is STRING_MAP: match one key, as %s[key]", c.attr, c.attr)
		return c, false
	case !c.hasKey && kind != attribute.KindString:
		l.add(d, line, field, "attribute %q is %s: clauses match STRING attributes and keys of STRING_MAP ones", c.attr, kind)
		return c, false
	}
	set := 0
	for _, r := range []nameRef{sm.Exact, sm.Prefix, sm.Regex} {
		if r.Line > 0 {
			set++
		}
	}
	if set != 1 {
		l.add(d, line, field, "want exactly one of exact, prefix or regex")
		return c, false
	}
	switch {
	case sm.Exact.Line > 0:
		c.op, c.value = matchExact, sm.Exact.Value
	case sm.Prefix.Line > 0:
		c.op, c.value = matchPrefix, sm.Prefix.Value
	default:
		c.op, c.value = matchRegex, sm.Regex.Value
		if _, err := regexp.Compile(c.value); err != nil {
			msg := err.Error()
			var se *syntax.Error
			if errors.As(err, &se) {
				msg = fmt.Sprintf("%s: %q", se.Code, se.Expr)
			}
			l.add(d, sm.Regex.Line, field+".regex", "invalid RE2 regex: %s", msg)
			return c, false
		}
		// RE2 over the whole value, as Istio's regex matched.
		c.re = regexp.MustCompile(`^(?:` + c.value + `)$`)
	}
	return c, true
}

// unquote strips one pair of matching quotes from a map key.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// quotaBinding decodes and checks a QuotaSpecBinding and enters it into
// index (service name → namespace ("" for any) → specs).
func (l *loader) quotaBinding(d *document, specs map[string]*quotaSpec, index map[string]map[string]map[*quotaSpec]bool) *quotaBinding {
	b := &quotaBinding{name: d.name, namespace: d.namespace, file: d.file, line: d.nameLine, view: nodeToAny(d.spec)}
	var spec quotaSpecBindingSpec
	fi, decoded := decodeStrict(d.spec, &spec, "spec")
	l.addField(d, fi)
	if !decoded {
		return b
	}
	if len(spec.Services) == 0 {
		l.add(d, d.specLine(), "spec.services", "required: the services whose requests draw on the specs")
	}
	if len(spec.QuotaSpecs) == 0 {
		l.add(d, d.specLine(), "spec.quotaSpecs", "required: the QuotaSpecs the services draw on")
	}
	var bound []*quotaSpec
	for i, r := range spec.QuotaSpecs {
		field := fmt.Sprintf("spec.quotaSpecs[%d]", i)
		if r.Name.Value == "" {
			l.add(d, lineOf(nodeAt(d.spec, "quotaSpecs", i), d.specLine()), field+".name", "required")
			continue
		}
		qs, found := specs[r.Name.Value]
		switch {
		case !found:
			l.add(d, r.Name.Line, field+".name", "QuotaSpec %q not found", r.Name.Value)
			continue
		case r.Namespace.Value != "" && qs.namespace != "" && r.Namespace.Value != qs.namespace:
			l.add(d, r.Namespace.Line, field+".namespace", "QuotaSpec %q is in namespace %q, not %q",
				r.Name.Value, qs.namespace, r.Namespace.Value)
			continue
		}
		bound = append(bound, qs)
	}
	for i, svc := range spec.Services {
		if svc.Name.Value == "" {
			l.add(d, lineOf(nodeAt(d.spec, "services", i), d.specLine()), fmt.Sprintf("spec.services[%d].name", i),
				"required: a destination.service.name")
			continue
		}
		byNS := index[svc.Name.Value]
		if byNS == nil {
			byNS = map[string]map[*quotaSpec]bool{}
			index[svc.Name.Value] = byNS
		}
		set := byNS[svc.Namespace.Value]
		if set == nil {
			set = map[*quotaSpec]bool{}
			byNS[svc.Namespace.Value] = set
		}
		for _, qs := range bound {
			set[qs] = true
		}
	}
	return b
}

// indexQuotaServices turns the bindings' index into the lookup table
// QuotaCharges uses.
func indexQuotaServices(index map[string]map[string]map[*quotaSpec]bool) map[string]*serviceQuotas {
	if len(index) == 0 {
		return nil
	}
	list := func(sets ...map[*quotaSpec]bool) *specList {
		seen := map[*quotaSpec]bool{}
		out := &specList{}
		for _, set := range sets {
			for qs := range set {
				if !seen[qs] {
					seen[qs] = true
					out.specs = append(out.specs, qs)
				}
			}
		}
		sort.Slice(out.specs, func(i, j int) bool { return out.specs[i].index < out.specs[j].index })
		for _, qs := range out.specs {
			for _, r := range qs.rules {
				out.maxCharges += len(r.charges)
			}
		}
		return out
	}
	out := make(map[string]*serviceQuotas, len(index))
	for name, byNS := range index {
		sq := &serviceQuotas{}
		if anyNS, ok := byNS[""]; ok {
			sq.any = list(anyNS)
		}
		for ns, set := range byNS {
			if ns == "" {
				continue
			}
			if sq.byNamespace == nil {
				sq.byNamespace = map[string]*specList{}
			}
			sq.byNamespace[ns] = list(byNS[""], set)
		}
		out[name] = sq
	}
	return out
}

// nodeAt walks a YAML tree by mapping keys (string) and sequence indices
// (int); nil when a step is missing.
func nodeAt(n *yaml.Node, steps ...any) *yaml.Node {
	for _, s := range steps {
		n = resolve(n)
		if n == nil {
			return nil
		}
		switch s := s.(type) {
		case string:
			n = valueNode(n, s)
		case int:
			if n.Kind != yaml.SequenceNode || s < 0 || s >= len(n.Content) {
				return nil
			}
			n = n.Content[s]
		}
	}
	return resolve(n)
}

// QuotaCharges returns the quotas a request draws on according to the
// QuotaSpecs bound (by QuotaSpecBinding) to the request's destination
// service (destination.service.name, destination.service.namespace), with
// their charges, in QuotaSpec and rule order; a quota named by several
// matching spec rules is charged once per rule. bound reports whether any
// binding covers the service at all: when it is false the caller falls back
// to charging every matching quota rule 1. refs, when not nil, records the
// attributes the choice looked at.
func (s *Snapshot) QuotaCharges(bag *attribute.Bag, refs *attribute.Referenced) (charges []QuotaCharge, bound bool) {
	if s == nil || len(s.quotaServices) == 0 {
		return nil, false // no bindings: the answer depends on no attribute
	}
	name, ok := lookupString(bag, attribute.DestinationServiceName, refs)
	if !ok {
		return nil, false
	}
	sq := s.quotaServices[name]
	if sq == nil {
		return nil, false
	}
	list := sq.any
	if sq.byNamespace != nil {
		if ns, ok := lookupString(bag, attribute.DestinationServiceNamespace, refs); ok {
			if l, found := sq.byNamespace[ns]; found {
				list = l
			}
		}
	}
	if list == nil {
		return nil, false
	}
	for _, qs := range list.specs {
		for i := range qs.rules {
			r := &qs.rules[i]
			if !r.matches(bag, refs) {
				continue
			}
			if charges == nil {
				charges = make([]QuotaCharge, 0, list.maxCharges)
			}
			charges = append(charges, r.charges...)
		}
	}
	return charges, true
}

// lookupString reads a STRING attribute and records the lookup.
func lookupString(bag *attribute.Bag, name string, refs *attribute.Referenced) (string, bool) {
	v, present := bag.Get(name)
	if refs != nil {
		refs.Add(name, present)
	}
	if !present || v.Kind() != attribute.KindString {
		return "", false
	}
	return v.Str(), true
}

// matches reports whether any clause holds; it stops at the first that
// does, so refs holds only what the outcome depended on.
func (r *quotaSpecRule) matches(bag *attribute.Bag, refs *attribute.Referenced) bool {
	if len(r.match) == 0 {
		return true
	}
	for _, c := range r.match {
		if c.holds(bag, refs) {
			return true
		}
	}
	return false
}

func (c clause) holds(bag *attribute.Bag, refs *attribute.Referenced) bool {
	for i := range c {
		if !c[i].holds(bag, refs) {
			return false
		}
	}
	return true
}

// holds looks the attribute (or map key) up, recording it as the CEL
// activation would, and matches it. An absent value matches nothing.
func (c *condition) holds(bag *attribute.Bag, refs *attribute.Referenced) bool {
	var s string
	if c.hasKey {
		v, present := bag.Get(c.attr)
		if !present || v.Kind() != attribute.KindStringMap {
			if refs != nil {
				refs.Add(c.attr, present)
			}
			return false
		}
		var found bool
		s, found = v.StringMap()[c.key]
		if refs != nil {
			refs.AddMapKey(c.attr, c.key, found)
		}
		if !found {
			return false
		}
	} else {
		var ok bool
		if s, ok = lookupString(bag, c.attr, refs); !ok {
			return false
		}
	}
	switch c.op {
	case matchExact:
		return s == c.value
	case matchPrefix:
		return strings.HasPrefix(s, c.value)
	}
	return c.re.MatchString(s)
}
