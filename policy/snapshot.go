package policy

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// Snapshot is a loaded, compiled configuration. It is immutable and safe for
// concurrent use.
type Snapshot struct {
	manifest        *attribute.Manifest
	extraAttributes map[string]string         // declared by AttributeManifest documents
	handlers        []*handler                // by name
	instances       []*instance               // by name; instance.index is the position
	rules           []*rule                   // by name
	quotaSpecs      []*quotaSpec              // by name; quotaSpec.index is the position
	quotaBindings   []*quotaBinding           // by name
	quotaServices   map[string]*serviceQuotas // by destination.service.name
	digest          string
	now             func() time.Time
	// slots are the compiler's attribute slots; readers lists, by slot,
	// the ids of the programs that read that attribute (Sequence).
	slots   map[string]int
	readers [][]int
	// metricsOf lists, by program id, the metric instances that program
	// is a field of (Sequence).
	metricsOf [][]int
	// plans are the Sequences' deltaPlans, by variety.
	plans [len(rule{}.byVariety)]planCache
}

// HandlerConfig is a configured adapter: what the mixer needs to create the
// handler.
type HandlerConfig struct {
	Name, Namespace string
	Adapter         string
	Factory         adapters.Factory
	Params          adapters.Config // decoded, validated
	Templates       []string        // templates of instances rules send it (sorted)
}

type handler struct {
	name, namespace string
	file            string
	line            int
	adapter         string
	factory         adapters.Factory
	params          adapters.Config
	view            any
	templates       map[string]bool
	broken          bool // had issues; the load fails
}

type namedProgram struct {
	name    string
	program *program
}

type instance struct {
	name, namespace string
	file            string
	line            int
	template        string
	variety         Variety
	index           int
	value           *program         // listentry, metric
	dimensions      []namedProgram   // quota, metric
	variables       []namedProgram   // logentry
	layout          *template.Layout // metric dimensions, logentry variables
	severity        *program         // logentry
	timestamp       *program         // logentry
	authz           *authzPrograms   // authorization
	span            *spanPrograms    // tracespan
	otlpSignal      string           // otlp: "traces", "logs" or "" (both)
	view            any
	broken          bool
}

// authzPrograms are the compiled fields of an authorization instance; nil
// programs are fields the instance leaves out.
type authzPrograms struct {
	user, groups                     *program
	subjectProps                     []namedProgram
	namespace, service, method, path *program
	actionProps                      []namedProgram
}

// spanPrograms are the compiled fields of a tracespan instance; nil
// programs are optional fields the instance leaves out.
type spanPrograms struct {
	traceID, spanID, parentSpanID, traceState, spanName *program
	startTime, endTime                                  *program
	spanKind, status, statusMessage                     *program
	httpStatusCode                                      *program
	sourceName, destinationName                         *program
	tags                                                []namedProgram
}

type action struct {
	handler   *handler
	name      string
	instances []*instance
}

// variedAction is an action restricted to the instances of one variety.
type variedAction struct {
	handler   *handler
	instances []*instance
}

type headerOp struct {
	name   string
	values []*program
	op     HeaderOp
}

type rule struct {
	name, namespace string
	file            string
	line            int
	match           *program // nil: always
	failOpen        bool     // spec.failPolicy: open
	shadow          bool     // spec.shadow
	actions         []*action
	requestOps      []headerOp
	responseOps     []headerOp
	byVariety       [4][]variedAction
}

// index groups the rule's actions by variety and tells each handler which
// templates it receives.
func (r *rule) index() {
	for _, a := range r.actions {
		for v := range r.byVariety {
			var ins []*instance
			for _, in := range a.instances {
				if in.variety == Variety(v) {
					ins = append(ins, in)
				}
			}
			if len(ins) > 0 {
				r.byVariety[v] = append(r.byVariety[v], variedAction{handler: a.handler, instances: ins})
			}
		}
		for _, in := range a.instances {
			a.handler.templates[in.template] = true
		}
	}
}

// Manifest is the vocabulary expressions were checked against: the base
// manifest plus AttributeManifest documents.
func (s *Snapshot) Manifest() *attribute.Manifest { return s.manifest }

// Digest is the sha256 of the sources, hex encoded.
func (s *Snapshot) Digest() string { return s.digest }

// Counts returns how many handlers, instances and rules the snapshot holds.
func (s *Snapshot) Counts() (handlers, instances, rules int) {
	return len(s.handlers), len(s.instances), len(s.rules)
}

// Handlers lists the configured handlers, sorted by name.
func (s *Snapshot) Handlers() []HandlerConfig {
	out := make([]HandlerConfig, len(s.handlers))
	for i, h := range s.handlers {
		tmpls := make([]string, 0, len(h.templates))
		for t := range h.templates {
			tmpls = append(tmpls, t)
		}
		sort.Strings(tmpls)
		out[i] = HandlerConfig{Name: h.name, Namespace: h.namespace, Adapter: h.adapter,
			Factory: h.factory, Params: h.params, Templates: tmpls}
	}
	return out
}

// Uses reports whether some rule has actions of variety v.
func (s *Snapshot) Uses(v Variety) bool {
	if s == nil || v < 0 || int(v) >= len(rule{}.byVariety) {
		return false
	}
	for _, r := range s.rules {
		if len(r.byVariety[v]) > 0 {
			return true
		}
	}
	return false
}

// MayMatch reports whether some rule with actions of variety v may match
// a bag that has probe's attributes with probe's values, whatever else it
// holds. It answers false only when every such rule's match, evaluated
// over probe, is false having looked at nothing but attributes probe has:
// then it is false for every such bag, as a check answer cached on its
// referenced attributes holds for every request that agrees on them. A
// match that reads an attribute probe lacks (even inside default()) may
// match. The mixer asks it once per config whether the spans apps export
// over OTLP (all with context.protocol "otlp") need decoding into bags.
func (s *Snapshot) MayMatch(v Variety, probe *attribute.Bag) bool {
	if s == nil || v < 0 || int(v) >= len(rule{}.byVariety) {
		return false
	}
	for _, r := range s.rules {
		if len(r.byVariety[v]) == 0 {
			continue
		}
		if r.match == nil || !neverMatches(r, probe, len(s.instances)) {
			return true
		}
	}
	return false
}

func neverMatches(r *rule, probe *attribute.Bag, instances int) bool {
	var refs attribute.Referenced
	a := getActivation(probe, &refs, instances)
	defer putActivation(a)
	out, err := r.match.eval(a)
	if err != nil || out != types.False || a.absent {
		return false
	}
	for _, ref := range refs.Recorded() {
		if !ref.Present || ref.HasKey {
			return false
		}
	}
	return true
}

// Evaluate runs the rules, in name order, against bag. For each rule with
// actions of variety v (or, for VarietyCheck, header operations) the match
// is evaluated; for a matching rule the instances of those actions are
// built. refs, when not nil, records every attribute and map key that was
// looked at, with its presence.
func (s *Snapshot) Evaluate(bag *attribute.Bag, v Variety, refs *attribute.Referenced) Result {
	var res Result
	if s == nil || v < 0 || int(v) >= len(rule{}.byVariety) {
		return res
	}
	a := getActivation(bag, refs, len(s.instances))
	defer putActivation(a)
	return s.evaluate(a, v)
}

// evaluate is Evaluate with the activation of the bag.
func (s *Snapshot) evaluate(a *activation, v Variety) Result {
	var res Result
	if a.keepResult {
		res.Actions = a.acts[:0]
	}
	for ri, r := range s.rules {
		acts := r.byVariety[v]
		headers := v == VarietyCheck && (len(r.requestOps) > 0 || len(r.responseOps) > 0)
		if len(acts) == 0 && !headers {
			continue
		}
		if r.match != nil {
			out, err := r.match.eval(a)
			if err != nil {
				res.Errors = append(res.Errors, &EvalError{Rule: r.name, Field: "spec.match", Err: err})
				continue
			}
			if out != types.True {
				if a.keepResult {
					a.matched[ri] = false
				}
				continue
			}
		}
		if a.keepResult {
			a.matched[ri] = true
		}
		for _, va := range acts {
			var insts []template.Instance
			start := len(a.insts)
			if a.keepResult {
				insts = a.insts[start:start]
			} else {
				insts = make([]template.Instance, 0, len(va.instances))
			}
			for _, in := range va.instances {
				bi, err := s.instanceFor(a, in)
				if err != nil {
					err.Rule = r.name
					res.Errors = append(res.Errors, err)
				}
				if bi == nil {
					break
				}
				insts = append(insts, bi)
			}
			if a.keepResult {
				a.insts = append(a.insts[:start], insts...)
				insts = a.insts[start:len(a.insts):len(a.insts)]
			}
			if len(insts) < len(va.instances) {
				a.insts = a.insts[:start]
				continue // an instance failed: skip the action
			}
			res.Actions = append(res.Actions, Action{Rule: r.name, Handler: va.handler.name, Instances: insts,
				FailOpen: r.failOpen, Shadow: r.shadow})
		}
		if headers {
			res.RequestHeaderOperations = r.evalOps(a, r.requestOps, res.RequestHeaderOperations, &res, "spec.requestHeaderOperations")
			res.ResponseHeaderOperations = r.evalOps(a, r.responseOps, res.ResponseHeaderOperations, &res, "spec.responseHeaderOperations")
		}
	}
	return res
}

func (r *rule) evalOps(a *activation, ops []headerOp, out []HeaderOperation, res *Result, field string) []HeaderOperation {
	for i, o := range ops {
		if o.op == HeaderRemove {
			out = append(out, HeaderOperation{Name: o.name, Operation: HeaderRemove})
			continue
		}
		vals := make([]string, 0, len(o.values))
		for j, p := range o.values {
			v, err := p.eval(a)
			if err == nil {
				s, ok := v.(types.String)
				if !ok {
					err = fmt.Errorf("value has type %s, want string", v.Type().TypeName())
				}
				vals = append(vals, string(s))
			}
			if err != nil {
				res.Errors = append(res.Errors, &EvalError{Rule: r.name, Field: fmt.Sprintf("%s[%d].values[%d]", field, i, j), Err: err})
				vals = nil
				break
			}
		}
		for j, v := range vals {
			op := o.op
			if op == HeaderReplace && j > 0 {
				op = HeaderAppend // further values of a REPLACE add to the first
			}
			out = append(out, HeaderOperation{Name: o.name, Value: v, Operation: op})
		}
	}
	return out
}

// eval runs a program, once per activation; a CEL error value becomes a
// Go error.
func (p *program) eval(a *activation) (ref.Val, error) {
	m := a.memoOf(p.id)
	if !m.done {
		outer := a.absent
		a.absent = false
		v, err := p.run(a)
		m = a.memoOf(p.id) // run may have grown the memo
		m.done, m.absent, m.val, m.err = true, a.absent, v, err
		if m.stamp == 0 {
			m.stamp = a.newStamp()
		}
		a.absent = a.absent || outer
		return v, err
	}
	if m.absent {
		a.absent = true
	}
	return m.val, m.err
}

// evalRaw is eval with the result as a bag value, once per activation.
// ok is false when the result has no bag value that stands for it exactly
// (bytes, maps, lists, null, uint, a timestamp not in UTC): eval says what
// it is. A plain read of an attribute (fastExpr.raw) takes the bag's value
// as it is, making no CEL value: the fields of an instance that change
// with every request (ids, paths, times, sizes) are mostly such reads, and
// boxing each into a CEL value only to unbox it into the instance cost an
// allocation apiece.
func (p *program) evalRaw(a *activation) (v attribute.Value, ok bool, err error) {
	m := a.memoOf(p.id)
	if m.rawDone {
		if m.absent {
			a.absent = true
		}
		return m.raw, m.rawOK, nil
	}
	if p.fast != nil && !m.done {
		outer := a.absent
		a.absent, a.rawSlot = false, -1
		if v, ok := p.fast.raw(a); ok {
			m.raw, m.rawOK, m.rawDone, m.absent = v, true, true, a.absent
			m.rawSlot = a.rawSlot + 1
			m.stamp = a.newStamp()
			a.absent = a.absent || outer
			return v, true, nil
		}
		a.absent = outer
	}
	cv, err := p.eval(a)
	if err != nil {
		return attribute.Value{}, false, err
	}
	v, ok = rawOf(cv)
	m = a.memoOf(p.id)
	m.raw, m.rawOK, m.rawDone, m.rawSlot = v, ok, true, 0
	return v, ok, nil
}

// evalNative is eval with the result as a Go value (native), converted
// once per activation.
func (p *program) evalNative(a *activation) (any, error) {
	m := a.memoOf(p.id)
	if m.natDone {
		if m.absent {
			a.absent = true
		}
		return m.nat, nil
	}
	raw, ok, err := p.evalRaw(a)
	if err != nil {
		return nil, err
	}
	var nat any
	if ok {
		nat = a.rawNative(a.memoOf(p.id), raw) // what native makes of its CEL value
	} else {
		v, _ := p.eval(a) // evalRaw evaluated it
		nat = native(v)
	}
	m = a.memoOf(p.id)
	m.nat, m.natDone = nat, true
	return nat, nil
}

// typeName is the CEL type of p's result, for an error message.
func (p *program) typeName(a *activation) string {
	v, err := p.eval(a)
	if err != nil || v == nil {
		return "error"
	}
	return v.Type().TypeName()
}

// rawOf is the bag value of a CEL value, when one converts back to the
// same CEL and Go values (celValue, native).
func rawOf(v ref.Val) (attribute.Value, bool) {
	switch x := v.(type) {
	case types.String:
		return attribute.StringValue(string(x)), true
	case types.Int:
		return attribute.Int64Value(int64(x)), true
	case types.Double:
		return attribute.DoubleValue(float64(x)), true
	case types.Bool:
		return attribute.BoolValue(bool(x)), true
	case types.Duration:
		return attribute.DurationValue(x.Duration), true
	case types.Timestamp:
		if x.Location() == time.UTC {
			if r := attribute.TimeValue(x.Time); r.Time() == x.Time {
				return r, true
			}
		}
	}
	return attribute.Value{}, false
}

// rawScalar reports whether a bag value of kind k is one rawOf makes.
func rawScalar(k attribute.Kind) bool {
	switch k {
	case attribute.KindString, attribute.KindInt64, attribute.KindDouble, attribute.KindBool,
		attribute.KindDuration, attribute.KindTimestamp:
		return true
	}
	return false
}

// sameRaw is sameValue for the bag values of scalars (rawOf).
func sameRaw(x, y attribute.Value) bool {
	switch k := x.Kind(); {
	case k != y.Kind():
		return false
	case k == attribute.KindString:
		return x.Str() == y.Str()
	case k == attribute.KindDouble:
		return x.Double() == y.Double() // NaN: never the same
	}
	return x.Int64() == y.Int64() // the number of every other scalar
}

// run evaluates a program.
func (p *program) run(a *activation) (ref.Val, error) {
	a.names = p.slots
	if p.fast != nil {
		if v, ok := p.fast.eval(a); ok {
			if err, isErr := v.(*types.Err); isErr {
				return nil, err
			}
			return v, nil
		}
	}
	out, _, err := p.prg.Eval(a)
	if err != nil {
		return nil, err
	}
	if types.IsUnknownOrError(out) {
		return nil, fmt.Errorf("%v", out)
	}
	return out, nil
}

// instanceFor builds an instance once per evaluation. A failed build
// returns the error the first time and nil, nil afterwards.
func (s *Snapshot) instanceFor(a *activation, in *instance) (template.Instance, *EvalError) {
	if b := a.built[in.index]; b != nil {
		return b, nil
	}
	if a.failed[in.index] {
		return nil, nil
	}
	b, err := s.build(a, in)
	if err != nil {
		a.failed[in.index] = true
		return nil, err
	}
	a.built[in.index] = b
	return b, nil
}

func (s *Snapshot) build(a *activation, in *instance) (template.Instance, *EvalError) {
	fail := func(field string, err error) *EvalError {
		return &EvalError{Instance: in.name, Field: field, Err: err}
	}
	switch in.template {
	case template.CheckNothingName:
		return &template.CheckNothing{Name: in.name}, nil
	case template.ListEntryName:
		v, err := in.value.eval(a)
		if err != nil {
			return nil, fail("spec.params.value", err)
		}
		var text string
		switch x := v.(type) {
		case types.String:
			text = string(x)
		case types.Bytes:
			text = template.FormatValue([]byte(x))
		default:
			return nil, fail("spec.params.value", fmt.Errorf("value has type %s, want string or bytes", v.Type().TypeName()))
		}
		return &template.ListEntry{Name: in.name, Value: text}, nil
	case template.AuthorizationName:
		return buildAuthorization(a, in)
	case template.QuotaName:
		dims, err := evalMap(a, in.dimensions, "spec.params.dimensions", true)
		if err != nil {
			err.Instance = in.name
			return nil, err
		}
		return &template.Quota{Name: in.name, Dimensions: dims}, nil
	case template.MetricName:
		val, err := in.value.evalNative(a)
		if err != nil {
			return nil, fail("spec.params.value", err)
		}
		switch val.(type) {
		case int64, float64, time.Duration:
		default:
			return nil, fail("spec.params.value", fmt.Errorf("value has type %s, want int, double or duration", in.value.typeName(a)))
		}
		dims, derr := evalFields(a, in.dimensions, in.layout, "spec.params.dimensions", true)
		if derr != nil {
			derr.Instance = in.name
			return nil, derr
		}
		m := a.newMetric()
		m.Name, m.Value, m.Dimensions = in.name, val, dims
		return m, nil
	case template.LogEntryName:
		vars, err := evalFields(a, in.variables, in.layout, "spec.params.variables", false)
		if err != nil {
			err.Instance = in.name
			return nil, err
		}
		le := a.newLogEntry()
		le.Name, le.Variables, le.Severity = in.name, vars, "info"
		if in.severity != nil {
			v, err := in.severity.eval(a)
			if err != nil {
				return nil, fail("spec.params.severity", err)
			}
			sv, ok := v.(types.String)
			if !ok {
				return nil, fail("spec.params.severity", fmt.Errorf("value has type %s, want string", v.Type().TypeName()))
			}
			le.Severity = string(sv)
		}
		if in.timestamp != nil {
			v, err := in.timestamp.eval(a)
			if err != nil {
				return nil, fail("spec.params.timestamp", err)
			}
			ts, ok := v.(types.Timestamp)
			if !ok {
				return nil, fail("spec.params.timestamp", fmt.Errorf("value has type %s, want timestamp", v.Type().TypeName()))
			}
			le.Timestamp = ts.Time
		} else if t, ok := a.bag.Time(attribute.ContextTime); ok {
			if a.refs != nil {
				a.refs.Add(attribute.ContextTime, true)
			}
			le.Timestamp = t
		} else {
			if a.refs != nil {
				a.refs.Add(attribute.ContextTime, false)
			}
			if s.now != nil {
				le.Timestamp = s.now()
			} else {
				le.Timestamp = time.Now()
			}
		}
		return le, nil
	case template.TraceSpanName:
		return buildTraceSpan(a, in)
	case template.OTLPName:
		return &template.OTLP{Name: in.name, Signal: in.otlpSignal}, nil
	}
	return nil, &EvalError{Instance: in.name, Field: "spec.template", Err: fmt.Errorf("unknown template %q", in.template)}
}

// buildAuthorization fills an authorization instance. Unlike the other
// templates, a field whose expression fails because an attribute or map key
// it reads is absent takes its zero value ("", no groups, the property left
// out) instead of failing the instance: a failed instance skips its action,
// and a skipped authorization check would let the request through, while
// an empty subject is denied by any adapter that checks it. Other failures
// (a wrong type at run time, an invalid ip()) still fail the instance.
func buildAuthorization(a *activation, in *instance) (template.Instance, *EvalError) {
	p := in.authz
	out := &template.Authorization{Name: in.name}
	var err *EvalError
	str := func(field string, prg *program) string {
		if err != nil {
			return ""
		}
		v, e := evalOptional(a, prg)
		if e != nil {
			err = &EvalError{Instance: in.name, Field: field, Err: e}
			return ""
		}
		if v == nil {
			return ""
		}
		s, ok := v.(types.String)
		if !ok {
			err = &EvalError{Instance: in.name, Field: field, Err: fmt.Errorf("value has type %s, want string", v.Type().TypeName())}
		}
		return string(s)
	}
	props := func(field string, progs []namedProgram) map[string]any {
		if err != nil || len(progs) == 0 {
			return nil
		}
		m := make(map[string]any, len(progs))
		for _, np := range progs {
			v, e := evalOptional(a, np.program)
			if e != nil {
				err = &EvalError{Instance: in.name, Field: field + "." + np.name, Err: e}
				return nil
			}
			if v == nil {
				continue
			}
			nv := native(v)
			switch nv.(type) {
			case map[string]string, map[string]any, []any:
				err = &EvalError{Instance: in.name, Field: field + "." + np.name, Err: errors.New("value is not a scalar")}
				return nil
			}
			m[np.name] = nv
		}
		if len(m) == 0 {
			return nil
		}
		return m
	}
	out.Subject.User = str("spec.params.subject.user", p.user)
	if err == nil && p.groups != nil {
		v, e := evalOptional(a, p.groups)
		if e == nil && v != nil {
			out.Subject.Groups, e = groupsOf(v)
		}
		if e != nil {
			err = &EvalError{Instance: in.name, Field: "spec.params.subject.groups", Err: e}
		}
	}
	out.Subject.Properties = props("spec.params.subject.properties", p.subjectProps)
	out.Action.Namespace = str("spec.params.action.namespace", p.namespace)
	out.Action.Service = str("spec.params.action.service", p.service)
	out.Action.Method = str("spec.params.action.method", p.method)
	out.Action.Path = str("spec.params.action.path", p.path)
	out.Action.Properties = props("spec.params.action.properties", p.actionProps)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// The values a tracespan's spanKind and status may take (in any case).
var (
	spanKinds = []string{template.SpanKindServer, template.SpanKindClient, template.SpanKindProducer,
		template.SpanKindConsumer, template.SpanKindInternal}
	spanStatuses = []string{template.SpanStatusUnset, template.SpanStatusOK, template.SpanStatusError}
)

// spanFieldTypes name the CEL type of each kind of a tracespan's fields.
var spanFieldTypes = map[attribute.Kind]string{attribute.KindString: "string",
	attribute.KindTimestamp: "timestamp", attribute.KindInt64: "int"}

// buildTraceSpan fills a tracespan instance. Like metric and logentry (and
// unlike authorization) a field over an absent attribute fails the
// instance, so a span is never sent with half its ids: optional fields say
// what to do on absence with default().
func buildTraceSpan(a *activation, in *instance) (template.Instance, *EvalError) {
	p := in.span
	// The span this activation built last for the instance: a field whose
	// program's memo entry still has the stamp it had then is the same
	// (in a Sequence, a field over attributes the bag did not change).
	k := a.keptSpanOf(in)
	out := k.newSpan()
	if k.span != nil {
		*out = *k.span
	} else {
		*out = template.TraceSpan{Name: in.name, SpanKind: template.SpanKindInternal, Status: template.SpanStatusUnset}
	}
	progs := p.fields()
	if k.idx.first == nil {
		ids := make([]int, 0, spanFields+len(p.tags))
		for _, prg := range progs {
			ids = append(ids, idOf(prg))
		}
		k.idx = makeFieldIndex(append(ids, idsOf(p.tags)...))
	}
	// The fields evaluated are those whose value may have changed: in
	// order, so that the first to fail is the one a full build fails on.
	tag := -1 // the first tag to evaluate, by position in p.tags
	fresh := k.span != nil && a.fresh(true, k.step)
	if fresh {
		// Built for the previous bag: the fields and tags of the programs
		// forgotten since are all that may differ.
		if k.idx.mark(a.forgotten) {
			for i := k.idx.pop(); i >= 0; i = k.idx.pop() {
				if i >= spanFields {
					tag = i - spanFields
					break
				}
				if err := k.setField(a, in, out, i, progs[i]); err != nil {
					k.span = nil
					return nil, err
				}
			}
		}
	} else {
		for i, prg := range progs {
			if prg == nil {
				continue
			}
			if m := a.memoOf(prg.id); k.span != nil && m.stamp != 0 && m.stamp == k.stamps[i] {
				continue
			}
			if err := k.setField(a, in, out, i, prg); err != nil {
				k.span = nil
				return nil, err
			}
		}
		tag = 0
	}
	tags, terr := spanTags(a, k, p, tag, fresh)
	if terr != nil {
		k.span = nil
		terr.Instance = in.name
		return nil, terr
	}
	out.SpanTags = tags
	k.span, k.step = out, a.step
	return out, nil
}

// fields are the programs of a tracespan's fields, in the order
// buildTraceSpan evaluates them (spanFieldNames).
func (p *spanPrograms) fields() [spanFields]*program {
	return [spanFields]*program{p.traceID, p.spanID, p.parentSpanID, p.traceState, p.spanName,
		p.startTime, p.endTime, p.spanKind, p.status, p.statusMessage, p.httpStatusCode,
		p.sourceName, p.destinationName}
}

// spanFieldNames and spanFieldKinds are the names of a tracespan's
// fields and the kinds of their values, in spanPrograms.fields' order.
var (
	spanFieldNames = [spanFields]string{"spec.params.traceId", "spec.params.spanId", "spec.params.parentSpanId",
		"spec.params.traceState", "spec.params.spanName", "spec.params.startTime", "spec.params.endTime",
		"spec.params.spanKind", "spec.params.status", "spec.params.statusMessage", "spec.params.httpStatusCode",
		"spec.params.sourceName", "spec.params.destinationName"}
	spanFieldKinds = [spanFields]attribute.Kind{attribute.KindString, attribute.KindString, attribute.KindString,
		attribute.KindString, attribute.KindString, attribute.KindTimestamp, attribute.KindTimestamp,
		attribute.KindString, attribute.KindString, attribute.KindString, attribute.KindInt64,
		attribute.KindString, attribute.KindString}
)

// setField evaluates field i of a tracespan (program prg) into out,
// recording its memo stamp. The fields are read as bag values (evalRaw):
// a span's ids and times change with every request, and most are plain
// attribute reads.
func (k *keptSpan) setField(a *activation, in *instance, out *template.TraceSpan, i int, prg *program) *EvalError {
	v, ok, err := prg.evalRaw(a)
	k.stamps[i] = a.memoOf(prg.id).stamp
	if err != nil {
		return &EvalError{Instance: in.name, Field: spanFieldNames[i], Err: err}
	}
	if want := spanFieldKinds[i]; !ok || v.Kind() != want {
		return &EvalError{Instance: in.name, Field: spanFieldNames[i],
			Err: fmt.Errorf("value has type %s, want %s", prg.typeName(a), spanFieldTypes[want])}
	}
	if !putSpanField(out, i, &v) {
		return oneOf(in, i, v.Str(), spanFieldAllowed(i))
	}
	return nil
}

// putSpanField sets field i of a tracespan (in buildTraceSpan's order)
// to v, of the field's kind (spanFieldKinds). It reports false, setting
// nothing, when a spanKind or status is not one of its allowed values
// (spanFieldAllowed).
func putSpanField(out *template.TraceSpan, i int, v *attribute.Value) bool {
	switch i {
	case 0:
		out.TraceID = v.Str()
	case 1:
		out.SpanID = v.Str()
	case 2:
		out.ParentSpanID = v.Str()
	case 3:
		out.TraceState = v.Str()
	case 4:
		out.SpanName = v.Str()
	case 5:
		out.StartTime = v.Time()
	case 6:
		out.EndTime = v.Time()
	case 7:
		return lowerOneOf(v.Str(), &out.SpanKind, spanKinds)
	case 8:
		return lowerOneOf(v.Str(), &out.Status, spanStatuses)
	case 9:
		out.StatusMessage = v.Str()
	case 10:
		out.HTTPStatusCode = v.Int64()
	case 11:
		out.SourceName = v.Str()
	case 12:
		out.DestinationName = v.Str()
	}
	return true
}

// spanFieldAllowed is the values span field i may take (nil: any).
func spanFieldAllowed(i int) []string {
	switch i {
	case 7:
		return spanKinds
	case 8:
		return spanStatuses
	}
	return nil
}

// lowerOneOf sets *dst to s in lower case when that is one of allowed.
func lowerOneOf(s string, dst *string, allowed []string) bool {
	v := strings.ToLower(s)
	if !slices.Contains(allowed, v) {
		return false
	}
	*dst = v
	return true
}

// oneOf is the error of span field i, whose value s is not one of
// allowed.
func oneOf(in *instance, i int, s string, allowed []string) *EvalError {
	return &EvalError{Instance: in.name, Field: spanFieldNames[i],
		Err: fmt.Errorf("%q is not one of %s", s, strings.Join(allowed, ", "))}
}

// spanFields is how many fields of a tracespan have programs, in the
// order buildTraceSpan evaluates them.
const spanFields = 13

// keptSpan is the span an activation built last for a tracespan instance,
// with the memo stamps of its fields' values.
type keptSpan struct {
	in     *instance
	span   *template.TraceSpan
	stamps [spanFields]uint64
	// The values of span's tags as bag values (tagRaw[i] when
	// tagRawOK[i]) and their memo stamps, by position in p.tags.
	tagRaw    []attribute.Value
	tagRawOK  []bool
	tagStamps []uint64
	// idx finds the fields (then the tags, at spanFields + their
	// position) of forgotten programs; step is the activation's when
	// span was built (activation.fresh).
	idx  fieldIndex
	step uint64
	// spanChunk and tagChunk are where new spans and tag slices are cut
	// from: one allocation for many spans instead of one or two each.
	// (The spans of a chunk are sent together and outlive it together.)
	spanChunk []template.TraceSpan
	tagChunk  []template.SpanTag
}

// chunkSpans is how many spans (and their tags) a keptSpan's chunks hold.
const chunkSpans = 32

// newSpan returns a span of its own, cut from k's chunk.
func (k *keptSpan) newSpan() *template.TraceSpan {
	return &cut(&k.spanChunk, 1, chunkSpans)[0]
}

// spanTags evaluates a tracespan's spanTags in key order (p.tags is
// sorted), from position first (-1: none). A tag whose program's memo
// entry still has the stamp it had when k's span was built, or whose
// value is the same as then, keeps that value; when every tag does, the
// kept span's slice is used again (spans only read it), else a copy with
// the changed values. With marked (a span fresh for the bag:
// buildTraceSpan), the tags after first are those k.idx has marked, else
// all of them.
func spanTags(a *activation, k *keptSpan, p *spanPrograms, first int, marked bool) ([]template.SpanTag, *EvalError) {
	n := len(p.tags)
	if n == 0 {
		return nil, nil
	}
	var kept []template.SpanTag
	if k.span != nil && len(k.tagStamps) == n {
		kept = k.span.SpanTags
	} else {
		k.tagRaw, k.tagRawOK, k.tagStamps = make([]attribute.Value, n), make([]bool, n), make([]uint64, n)
		first, marked = 0, false
	}
	var out []template.SpanTag // nil while every value is kept's
	for i := first; i >= 0 && i < n; {
		np := p.tags[i]
		if m := a.memoOf(np.program.id); kept != nil && m.stamp != 0 && m.stamp == k.tagStamps[i] {
			if m.absent {
				a.absent = true
			}
		} else if nv, set, err := k.tagValue(a, i, np, kept != nil); err != nil {
			return nil, err
		} else if set {
			if out == nil {
				out = k.newTags(n)
				if kept != nil {
					copy(out, kept)
				} else {
					for j, np := range p.tags {
						out[j].Key = np.name
					}
				}
			}
			out[i].Value = nv
		}
		if !marked {
			i++
		} else if i = k.idx.pop(); i >= 0 {
			i -= spanFields
		}
	}
	if out == nil {
		return kept, nil
	}
	return out, nil
}

// tagValue evaluates tag i of a tracespan (np), recording its memo stamp
// and value: set is false when the value is the same as the kept span's.
func (k *keptSpan) tagValue(a *activation, i int, np namedProgram, kept bool) (nv any, set bool, _ *EvalError) {
	raw, ok, err := np.program.evalRaw(a)
	if err != nil {
		return nil, false, &EvalError{Field: "spec.params.spanTags." + np.name, Err: err}
	}
	k.tagStamps[i] = a.memoOf(np.program.id).stamp
	if ok && kept && k.tagRawOK[i] && (sameRaw(raw, k.tagRaw[i])) {
		return nil, false, nil
	}
	k.tagRaw[i], k.tagRawOK[i] = raw, ok
	if ok {
		nv = a.rawNative(a.memoOf(np.program.id), raw) // what native makes of its CEL value
	} else {
		v, _ := np.program.eval(a) // evalRaw evaluated it
		nv = native(v)
	}
	switch nv.(type) {
	case map[string]string, map[string]any, []any:
		return nil, false, &EvalError{Field: "spec.params.spanTags." + np.name, Err: errors.New("value is not a scalar")}
	case []byte, time.Duration:
		// Span attributes are strings, numbers, bools or times:
		// bytes (ip attributes) and durations become their text.
		nv = template.FormatValue(nv)
	}
	return nv, true, nil
}

// newTags returns a slice of n tags of its own, cut from k's chunk.
func (k *keptSpan) newTags(n int) []template.SpanTag {
	return cut(&k.tagChunk, n, n*chunkSpans)
}

// evalOptional evaluates p (nil: not set). It returns a nil value and no
// error when the evaluation failed on an absent attribute or map key.
func evalOptional(a *activation, p *program) (ref.Val, error) {
	if p == nil {
		return nil, nil
	}
	a.absent = false
	v, err := p.eval(a)
	if err != nil {
		if a.absent {
			return nil, nil
		}
		return nil, err
	}
	return v, nil
}

// groupsOf reads subject.groups: a list of strings, or one string of
// comma-separated groups (the form a label or header carries). Blank
// entries are dropped.
func groupsOf(v ref.Val) ([]string, error) {
	switch x := v.(type) {
	case types.String:
		var out []string
		for g := range strings.SplitSeq(string(x), ",") {
			if g = strings.TrimSpace(g); g != "" {
				out = append(out, g)
			}
		}
		return out, nil
	case traits.Lister:
		n, _ := x.Size().(types.Int)
		out := make([]string, 0, int(n))
		for it := x.Iterator(); it.HasNext() == types.True; {
			e := it.Next()
			s, ok := e.(types.String)
			if !ok {
				return nil, fmt.Errorf("group has type %s, want string", e.Type().TypeName())
			}
			if s != "" {
				out = append(out, string(s))
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("value has type %s, want string or list(string)", v.Type().TypeName())
}

// evalMap builds the map of a map-valued field (the quota template's
// dimensions). Instances with the same entries get the same
// map, built once per evaluation: adapters only read instances. When
// every entry has the value it had when the activation last built this
// map, for an earlier bag, that map is used again (see diffKept).
func evalMap(a *activation, progs []namedProgram, field string, scalar bool) (map[string]any, *EvalError) {
	if len(progs) == 0 {
		return nil, nil
	}
	for _, bm := range a.builtMaps {
		if !bm.fields && bm.scalar == scalar && sameEntries(bm.progs, progs) {
			return bm.m, nil
		}
	}
	last, changed, err := a.diffKept(progs, field, scalar, false)
	if err != nil {
		return nil, err
	}
	if changed == 0 {
		a.builtMaps = append(a.builtMaps, builtMap{progs: progs, scalar: scalar, m: last.m})
		return last.m, nil
	}
	// A map with a few values changed (an access log's request id, path
	// and sizes) is a copy of the last one with those set: copying a
	// map's table costs less than hashing every entry into a new one.
	var out map[string]any
	cloned := changed < len(progs)/2
	if cloned {
		out = maps.Clone(last.m)
	} else {
		out = make(map[string]any, len(progs))
	}
	last.done, last.m = false, nil // kept only once complete
	for i, np := range progs {
		if cloned && !last.diff[i] {
			continue
		}
		nv, err := evalEntry(a, np, field, scalar)
		if err != nil {
			return nil, err
		}
		out[np.name] = nv
	}
	last.done, last.m = true, out
	a.builtMaps = append(a.builtMaps, builtMap{progs: progs, scalar: scalar, m: out})
	return out, nil
}

// evalFields is evalMap for the fields of a metric's dimensions or a log
// entry's variables, whose names are layout: the values go in a slice, by
// position, so a bag that changed a few of them (an access log's request
// id, path and sizes) costs a copy of the last slice and those values, and
// adapters read them without hashing names.
func evalFields(a *activation, progs []namedProgram, layout *template.Layout, field string, scalar bool) (template.Fields, *EvalError) {
	if len(progs) == 0 {
		return template.Fields{}, nil
	}
	for _, bm := range a.builtMaps {
		if bm.fields && bm.scalar == scalar && sameEntries(bm.progs, progs) {
			return bm.f, nil
		}
	}
	last, changed, err := a.diffKept(progs, field, scalar, true)
	if err != nil {
		return template.Fields{}, err
	}
	if changed == 0 {
		a.builtMaps = append(a.builtMaps, builtMap{progs: progs, scalar: scalar, fields: true, f: last.f})
		return last.f, nil
	}
	vals := a.values(len(progs))
	complete := last.done
	last.done = false // kept only once complete
	for i, np := range progs {
		if complete && !last.diff[i] {
			vals[i] = last.f.At(i)
			continue
		}
		nv, err := evalEntry(a, np, field, scalar)
		if err != nil {
			return template.Fields{}, err
		}
		vals[i] = nv
	}
	last.done, last.f = true, template.MakeFields(layout, vals)
	a.builtMaps = append(a.builtMaps, builtMap{progs: progs, scalar: scalar, fields: true, f: last.f})
	return last.f, nil
}

// evalEntry is the native value of one entry of a map-valued field.
func evalEntry(a *activation, np namedProgram, field string, scalar bool) (any, *EvalError) {
	nv, err := np.program.evalNative(a)
	if err != nil {
		return nil, &EvalError{Field: field + "." + np.name, Err: err}
	}
	if scalar {
		switch nv.(type) {
		case map[string]string, map[string]any, []any:
			return nil, &EvalError{Field: field + "." + np.name, Err: errors.New("value is not a scalar")}
		}
	}
	return nv, nil
}

// diffKept compares the values of progs for the bag with those the
// activation last built this field from, for an earlier bag: it returns
// the field's keptMap with diff telling which values differ, and how
// many (all of them when the kept map is not complete). A value the
// activation has kept since (a Sequence's, of an attribute the bag did
// not change) is the same without being evaluated; a proxy's reports of
// one edge mostly repeat their metric dimensions, and a map of 15 entries
// costs more to build than to check.
func (a *activation) diffKept(progs []namedProgram, field string, scalar, fields bool) (*keptMap, int, *EvalError) {
	last := a.lastMap(progs, scalar, fields)
	changed := 0
	// Built for the previous bag, the entries of the programs forgotten
	// since are all that may differ; otherwise every entry whose memo
	// stamp moved is evaluated again.
	fresh := a.fresh(last.done, last.step)
	if fresh {
		clear(last.diff)
		last.idx.mark(a.forgotten)
	}
	for i := last.idx.start(fresh); i >= 0 && i < len(progs); i = last.idx.step(i, fresh) {
		np := progs[i]
		if m := a.memoOf(np.program.id); !fresh && last.done && m.stamp != 0 && m.stamp == last.stamps[i] {
			if m.absent {
				a.absent = true
			}
			last.diff[i] = false
			continue
		}
		diff, err := a.diffEntry(last, i, np, field)
		if err != nil {
			return nil, 0, err
		}
		if diff {
			changed++
		}
	}
	last.step = a.step
	return last, changed, nil
}

// diffEntry evaluates entry i of last's field and reports whether its
// value differs from the one kept (last.diff[i]), which it replaces.
func (a *activation) diffEntry(last *keptMap, i int, np namedProgram, field string) (bool, *EvalError) {
	// Scalars are compared as bag values (evalRaw), others as CEL's.
	raw, ok, err := np.program.evalRaw(a)
	if err != nil {
		last.done, last.m = false, nil // vals no longer match it
		return false, &EvalError{Field: field + "." + np.name, Err: err}
	}
	last.stamps[i] = a.memoOf(np.program.id).stamp
	var same bool
	if ok {
		same = last.rawOK[i] && sameRaw(raw, last.raws[i])
		last.raws[i], last.vals[i] = raw, nil
	} else {
		v, _ := np.program.eval(a) // evalRaw evaluated it
		same = !last.rawOK[i] && sameValue(v, last.vals[i])
		last.raws[i], last.vals[i] = attribute.Value{}, v
	}
	last.rawOK[i] = ok
	last.diff[i] = !last.done || !same
	return last.diff[i], nil
}

// sameValue reports whether x and y are the same scalar value, one that
// converts to the same Go value (native). Other values (bytes, maps,
// lists) are never the same, so maps holding them are always built anew.
func sameValue(x, y ref.Val) bool {
	switch x := x.(type) {
	case types.String:
		y, ok := y.(types.String)
		return ok && x == y
	case types.Int:
		y, ok := y.(types.Int)
		return ok && x == y
	case types.Uint:
		y, ok := y.(types.Uint)
		return ok && x == y
	case types.Double:
		y, ok := y.(types.Double)
		return ok && x == y // NaN: never the same
	case types.Bool:
		y, ok := y.(types.Bool)
		return ok && x == y
	case types.Duration:
		y, ok := y.(types.Duration)
		return ok && x.Duration == y.Duration
	case types.Timestamp:
		y, ok := y.(types.Timestamp)
		return ok && x.Time == y.Time // the same instant and location
	case types.Null:
		_, ok := y.(types.Null)
		return ok
	}
	return false
}

// builtMap is a map evalMap (or Fields evalFields) built in this
// evaluation.
type builtMap struct {
	progs  []namedProgram
	scalar bool
	fields bool // f, not m
	m      map[string]any
	f      template.Fields
}

// keptMap is the map evalMap (or Fields evalFields) last built for a
// field in an activation, with the values it was built from; done is
// false until one is complete.
type keptMap struct {
	progs  []namedProgram
	scalar bool
	fields bool // f, not m
	done   bool
	// The values, by entry: raws[i] when rawOK[i], else vals[i].
	raws  []attribute.Value
	rawOK []bool
	vals  []ref.Val
	// stamps are the values' memo stamps: a value whose memo entry still
	// has its stamp is the same computation's.
	stamps []uint64
	m      map[string]any
	f      template.Fields
	diff   []bool // scratch: which values differ from vals
	// idx finds the entries of forgotten programs; step is the
	// activation's when the field was last built (activation.fresh).
	idx  fieldIndex
	step uint64
}

func sameEntries(a, b []namedProgram) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true // the same field's entries
	}
	for i := range a {
		if a[i].program != b[i].program || a[i].name != b[i].name {
			return false
		}
	}
	return true
}

var (
	stringMapType = reflect.TypeFor[map[string]string]()
	anyMapType    = reflect.TypeFor[map[string]any]()
	anySliceType  = reflect.TypeFor[[]any]()
)

// native converts a CEL value to the Go value templates carry: string,
// int64, float64, bool, time.Time, time.Duration, []byte,
// map[string]string; other maps and lists become map[string]any and []any.
func native(v ref.Val) any {
	switch x := v.(type) {
	case types.String:
		return string(x)
	case types.Int:
		return int64(x)
	case types.Uint:
		return int64(x)
	case types.Double:
		return float64(x)
	case types.Bool:
		return bool(x)
	case types.Bytes:
		return []byte(x)
	case types.Timestamp:
		return x.Time
	case types.Duration:
		return x.Duration
	case types.Null:
		return nil
	case *mapVal:
		return x.Value()
	case traits.Mapper:
		if m, err := x.ConvertToNative(stringMapType); err == nil {
			return m
		}
		if m, err := x.ConvertToNative(anyMapType); err == nil {
			return m
		}
	case traits.Lister:
		if l, err := x.ConvertToNative(anySliceType); err == nil {
			return l
		}
	}
	return v.Value()
}
