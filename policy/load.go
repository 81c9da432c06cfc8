package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/types"
	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/internal/yamlload"
)

// APIVersion is the apiVersion every document must carry.
const APIVersion = "sidemix.dev/v1"

// Document kinds.
const (
	KindAttributeManifest = "AttributeManifest"
	KindHandler           = "Handler"
	KindInstance          = "Instance"
	KindRule              = "Rule"
	KindQuotaSpec         = "QuotaSpec"
	KindQuotaSpecBinding  = "QuotaSpecBinding"
)

// kinds lists the document kinds, for messages.
var kinds = []string{KindAttributeManifest, KindHandler, KindInstance, KindRule, KindQuotaSpec, KindQuotaSpecBinding}

// Load reads the given files and folders (*.yaml, *.yml; folders
// recursively, files sorted), decodes every document strictly, compiles
// every CEL expression against the manifest, and returns the snapshot, or a
// *LoadError listing every issue of the load.
func Load(paths []string, opts Options) (*Snapshot, error) {
	files, readIssues := yamlload.ReadFiles(paths)
	issues := make([]Issue, 0, len(readIssues))
	for _, is := range readIssues {
		issues = append(issues, Issue(is))
	}
	snap, err := LoadSources(files, opts)
	if len(issues) == 0 {
		return snap, err
	}
	var le *LoadError
	if errors.As(err, &le) {
		issues = append(issues, le.Issues...)
	}
	yamlload.SortIssues(issues)
	return nil, &LoadError{Issues: issues}
}

// LoadSources is Load over in-memory files (name → content), for tests and
// the `validate` command.
func LoadSources(files map[string][]byte, opts Options) (*Snapshot, error) {
	l := &loader{opts: opts}
	if l.opts.Manifest == nil {
		l.opts.Manifest = attribute.DefaultManifest()
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		// Length-prefixed so that file boundaries count.
		fmt.Fprintf(h, "%d:%s\n%d:", len(n), n, len(files[n]))
		h.Write(files[n])
		l.parseFile(n, files[n])
	}
	snap := l.build()
	if len(l.issues) > 0 {
		yamlload.SortIssues(l.issues)
		return nil, &LoadError{Issues: l.issues}
	}
	snap.digest = hex.EncodeToString(h.Sum(nil))
	return snap, nil
}

// document is one decoded YAML document, before its spec is interpreted.
type document struct {
	file      string
	line      int
	kind      string
	name      string
	namespace string
	nameLine  int
	spec      *yaml.Node // nil when absent
}

type loader struct {
	opts     Options
	issues   []Issue
	docs     []*document
	manifest *attribute.Manifest // the base one plus AttributeManifest documents
	compiler *compiler
	sent     map[string]bool // instances some rule sends to a handler
	// maps are the map fields compiled so far: a field with the same
	// entries as an earlier one (Istio's metrics share their dimensions)
	// gets its slice, so evaluations tell them equal at a glance; layouts
	// are their names as template Fields carry them, one per slice.
	maps    [][]namedProgram
	layouts []*template.Layout
}

// layoutOf is the Layout of the names of progs, a slice compileMap
// returned: every field with those entries gets the same one.
func (l *loader) layoutOf(progs []namedProgram) *template.Layout {
	if len(progs) == 0 {
		return nil
	}
	for i, seen := range l.maps {
		if &seen[0] == &progs[0] {
			return l.layouts[i]
		}
	}
	panic("policy: layoutOf a field compileMap did not return")
}

func (l *loader) add(d *document, line int, field, format string, args ...any) {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	l.issues = append(l.issues, Issue{File: d.file, Line: line, Kind: d.kind, Name: d.name, Field: field, Message: msg})
}

func (l *loader) addField(d *document, fi []fieldIssue) {
	for _, f := range fi {
		l.add(d, f.Line, f.Field, "%s", f.Message)
	}
}

// parseFile splits a file into documents and decodes their envelopes.
func (l *loader) parseFile(name string, data []byte) {
	docs, bad := yamlload.Documents(name, data)
	for _, root := range docs {
		l.parseDoc(name, root)
	}
	if bad != nil {
		l.issues = append(l.issues, Issue(*bad))
	}
}

type envelope struct {
	APIVersion string    `yaml:"apiVersion"`
	Kind       string    `yaml:"kind"`
	Metadata   metadata  `yaml:"metadata"`
	Spec       yaml.Node `yaml:"spec"`
}

type metadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func (l *loader) parseDoc(file string, root *yaml.Node) {
	n := resolve(root)
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return // empty document
	}
	d := &document{file: file, line: n.Line}
	if n.Kind != yaml.MappingNode {
		l.add(d, n.Line, "", "a document must be a mapping with apiVersion, kind, metadata and spec")
		return
	}
	var env envelope
	fi, decoded := decodeStrict(n, &env, "")
	d.kind, d.name, d.namespace = env.Kind, env.Metadata.Name, env.Metadata.Namespace
	l.addField(d, fi)
	if !decoded {
		return
	}
	if k := valueNode(n, "apiVersion"); k == nil {
		l.add(d, n.Line, "apiVersion", "required (want %s)", APIVersion)
	} else if env.APIVersion != APIVersion {
		l.add(d, k.Line, "apiVersion", "unknown apiVersion %q (want %s)", env.APIVersion, APIVersion)
	}
	switch {
	case env.Kind == "":
		l.add(d, n.Line, "kind", "required (one of %s)", strings.Join(kinds, ", "))
		return
	case !slices.Contains(kinds, env.Kind):
		l.add(d, lineOf(valueNode(n, "kind"), n.Line), "kind", "unknown kind %q (want one of %s)",
			env.Kind, strings.Join(kinds, ", "))
		return
	}
	meta := valueNode(n, "metadata")
	if nn := valueNode(resolve(meta), "name"); nn != nil {
		d.nameLine = nn.Line
	} else {
		d.nameLine = lineOf(meta, n.Line)
	}
	if env.Metadata.Name == "" {
		l.add(d, d.nameLine, "metadata.name", "required")
		return
	}
	if sn := valueNode(n, "spec"); sn != nil {
		d.spec = resolve(sn)
	}
	l.docs = append(l.docs, d)
}

// specLine is where to point at for a problem with the whole spec.
func (d *document) specLine() int {
	if d.spec != nil && d.spec.Line > 0 {
		return d.spec.Line
	}
	return d.line
}

// expr is a CEL expression as written in YAML, with its position.
type expr struct {
	Text   string
	Line   int
	Column int
	Set    bool
	block  bool // literal or folded block: the text starts on the next line
}

func (e *expr) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a CEL expression (a string)", n.Line)}}
	}
	*e = expr{Text: n.Value, Line: n.Line, Column: n.Column, Set: true,
		block: n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0}
	return nil
}

// fileLine maps a line inside the expression to a line of the file.
func (e *expr) fileLine(exprLine int) int {
	if exprLine == 0 {
		return e.Line
	}
	if e.block {
		return e.Line + exprLine
	}
	if exprLine > 1 {
		// A multi-line plain or quoted scalar: lines follow the file.
		return e.Line + exprLine - 1
	}
	return e.Line
}

// nameRef is a name as written in YAML, with its line.
type nameRef struct {
	Value string
	Line  int
}

func (r *nameRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a name (a string)", n.Line)}}
	}
	*r = nameRef{Value: n.Value, Line: n.Line}
	return nil
}

type manifestSpec struct {
	Attributes map[string]attributeSpec `yaml:"attributes"`
}

type attributeSpec struct {
	ValueType   nameRef `yaml:"valueType"`
	Description string  `yaml:"description"`
}

type handlerSpec struct {
	Adapter nameRef   `yaml:"adapter"`
	Params  yaml.Node `yaml:"params"`
}

type instanceSpec struct {
	Template nameRef   `yaml:"template"`
	Params   yaml.Node `yaml:"params"`
}

type checkNothingParams struct{}

// otlpParams are an otlp Instance's params: only which signal it takes
// (traces or logs; both when empty). The instance is the telemetry as
// received: there is nothing to compute.
type otlpParams struct {
	Signal string `yaml:"signal"`
}

type listEntryParams struct {
	Value expr `yaml:"value"`
}

type authorizationParams struct {
	Subject authzSubjectParams `yaml:"subject"`
	Action  authzActionParams  `yaml:"action"`
}

type authzSubjectParams struct {
	User       expr            `yaml:"user"`
	Groups     expr            `yaml:"groups"`
	Properties map[string]expr `yaml:"properties"`
}

type authzActionParams struct {
	Namespace  expr            `yaml:"namespace"`
	Service    expr            `yaml:"service"`
	Method     expr            `yaml:"method"`
	Path       expr            `yaml:"path"`
	Properties map[string]expr `yaml:"properties"`
}

type quotaParams struct {
	Dimensions map[string]expr `yaml:"dimensions"`
}

type metricParams struct {
	Value      expr            `yaml:"value"`
	Dimensions map[string]expr `yaml:"dimensions"`
}

type logEntryParams struct {
	Variables map[string]expr `yaml:"variables"`
	Severity  expr            `yaml:"severity"`
	Timestamp expr            `yaml:"timestamp"`
}

// traceSpanParams are a tracespan Instance's params: see the package doc.
type traceSpanParams struct {
	TraceID         expr            `yaml:"traceId"`
	SpanID          expr            `yaml:"spanId"`
	ParentSpanID    expr            `yaml:"parentSpanId"`
	TraceState      expr            `yaml:"traceState"`
	SpanName        expr            `yaml:"spanName"`
	StartTime       expr            `yaml:"startTime"`
	EndTime         expr            `yaml:"endTime"`
	SpanKind        expr            `yaml:"spanKind"`
	Status          expr            `yaml:"status"`
	StatusMessage   expr            `yaml:"statusMessage"`
	HTTPStatusCode  expr            `yaml:"httpStatusCode"`
	SourceName      expr            `yaml:"sourceName"`
	DestinationName expr            `yaml:"destinationName"`
	SpanTags        map[string]expr `yaml:"spanTags"`
}

type ruleSpec struct {
	Match                    expr           `yaml:"match"`
	Actions                  []actionSpec   `yaml:"actions"`
	RequestHeaderOperations  []headerOpSpec `yaml:"requestHeaderOperations"`
	ResponseHeaderOperations []headerOpSpec `yaml:"responseHeaderOperations"`
	FailPolicy               nameRef        `yaml:"failPolicy"`
	Shadow                   bool           `yaml:"shadow"`
}

type actionSpec struct {
	Handler   nameRef   `yaml:"handler"`
	Instances []nameRef `yaml:"instances"`
	Name      string    `yaml:"name"`
}

type headerOpSpec struct {
	Name      nameRef `yaml:"name"`
	Values    []expr  `yaml:"values"`
	Operation nameRef `yaml:"operation"`
}

// build interprets the documents: manifests first (they shape the CEL
// environment), then handlers, instances and rules.
func (l *loader) build() *Snapshot {
	s := &Snapshot{now: l.opts.Now}
	byKind := map[string][]*document{}
	seen := map[string]map[string]*document{}
	for _, d := range l.docs {
		if seen[d.kind] == nil {
			seen[d.kind] = map[string]*document{}
		}
		if prev, dup := seen[d.kind][d.name]; dup {
			l.add(d, d.nameLine, "metadata.name", "%s %q already defined at %s:%d", d.kind, d.name, prev.file, prev.nameLine)
			continue
		}
		seen[d.kind][d.name] = d
		byKind[d.kind] = append(byKind[d.kind], d)
	}

	// Vocabulary.
	manifest := l.opts.Manifest
	s.extraAttributes = map[string]string{}
	for _, d := range byKind[KindAttributeManifest] {
		var spec manifestSpec
		fi, _ := decodeStrict(d.spec, &spec, "spec")
		l.addField(d, fi)
		names := make([]string, 0, len(spec.Attributes))
		for n := range spec.Attributes {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			a := spec.Attributes[n]
			field := "spec.attributes." + n
			line := lineOf(keyNode(resolve(valueNode(d.spec, "attributes")), n), d.specLine())
			if a.ValueType.Value == "" {
				l.add(d, line, field+".valueType", "required")
				continue
			}
			k, err := attribute.ParseKind(a.ValueType.Value)
			if err != nil {
				l.add(d, a.ValueType.Line, field+".valueType", "%v", err)
				continue
			}
			m, err := manifest.With(map[string]attribute.Kind{n: k})
			if err != nil {
				l.add(d, line, field, "%v", err)
				continue
			}
			manifest = m
			s.extraAttributes[n] = k.String()
		}
	}
	s.manifest = manifest
	l.manifest = manifest
	env, err := newEnv(manifest)
	if err != nil {
		l.issues = append(l.issues, Issue{Message: "cannot build the expression environment: " + err.Error()})
		return s
	}
	l.compiler = &compiler{env: env, names: manifest.Names()}

	// Handlers.
	handlers := map[string]*handler{}
	// A broken handler or instance is still entered under its name so that
	// rules naming it do not add "not found" issues of their own.
	for _, d := range byKind[KindHandler] {
		h := l.handler(d)
		handlers[d.name] = h
		s.handlers = append(s.handlers, h)
	}
	// Instances.
	instances := map[string]*instance{}
	for _, d := range byKind[KindInstance] {
		in := l.instance(d)
		instances[d.name] = in
		s.instances = append(s.instances, in)
	}
	// Rules.
	l.sent = map[string]bool{}
	for _, d := range byKind[KindRule] {
		if r := l.rule(d, handlers, instances); r != nil {
			s.rules = append(s.rules, r)
		}
	}
	// Quota specs, then the bindings that name them.
	specs := map[string]*quotaSpec{}
	for _, d := range byKind[KindQuotaSpec] {
		qs := l.quotaSpec(d, instances, l.sent)
		specs[d.name] = qs
		s.quotaSpecs = append(s.quotaSpecs, qs)
	}
	sort.Slice(s.quotaSpecs, func(i, j int) bool { return s.quotaSpecs[i].name < s.quotaSpecs[j].name })
	for i, qs := range s.quotaSpecs {
		qs.index = i
	}
	index := map[string]map[string]map[*quotaSpec]bool{}
	for _, d := range byKind[KindQuotaSpecBinding] {
		s.quotaBindings = append(s.quotaBindings, l.quotaBinding(d, specs, index))
	}
	sort.Slice(s.quotaBindings, func(i, j int) bool { return s.quotaBindings[i].name < s.quotaBindings[j].name })
	s.quotaServices = indexQuotaServices(index)
	sort.Slice(s.handlers, func(i, j int) bool { return s.handlers[i].name < s.handlers[j].name })
	sort.Slice(s.instances, func(i, j int) bool { return s.instances[i].name < s.instances[j].name })
	for i, in := range s.instances {
		in.index = i
	}
	sort.Slice(s.rules, func(i, j int) bool { return s.rules[i].name < s.rules[j].name })
	s.slots, s.readers = l.compiler.readers()
	if l.compiler != nil {
		s.metricsOf = metricsOf(s.instances, len(l.compiler.programs))
	}
	return s
}

// handler decodes a Handler's params into its adapter's config. It always
// returns a handler; one with problems is marked broken.
func (l *loader) handler(d *document) *handler {
	h := &handler{name: d.name, namespace: d.namespace, file: d.file, line: d.nameLine, templates: map[string]bool{}}
	var spec handlerSpec
	fi, decoded := decodeStrict(d.spec, &spec, "spec")
	l.addField(d, fi)
	params := resolve(&spec.Params)
	if params != nil && (params.Kind == 0 || (params.Kind == yaml.ScalarNode && params.Tag == "!!null")) {
		params = nil
	}
	h.view = nodeToAny(params)
	h.adapter = spec.Adapter.Value
	if !decoded {
		h.broken = true
		return h
	}
	if spec.Adapter.Value == "" {
		l.add(d, d.specLine(), "spec.adapter", "required (one of %s)", strings.Join(l.opts.Adapters.Names(), ", "))
		h.broken = true
		return h
	}
	f, ok := l.opts.Adapters[spec.Adapter.Value]
	if !ok {
		l.add(d, spec.Adapter.Line, "spec.adapter", "unknown adapter %q (registered: %s)",
			spec.Adapter.Value, strings.Join(l.opts.Adapters.Names(), ", "))
		h.broken = true
		return h
	}
	h.factory = f
	paramsLine := lineOf(params, lineOf(keyNode(d.spec, "params"), d.specLine()))
	if f.NewConfig == nil {
		if params != nil {
			l.add(d, paramsLine, "spec.params", "adapter %q takes no params", f.Name)
			h.broken = true
		}
		return h
	}
	cfg := f.NewConfig()
	h.params = cfg
	if params != nil {
		fi, decoded := decodeStrict(params, cfg, "spec.params")
		l.addField(d, fi)
		if len(fi) > 0 {
			h.broken = true
		}
		if !decoded {
			return h // validating half-decoded params would only add noise
		}
	}
	for _, e := range flatten(cfg.Validate()) {
		line, field, msg := paramsLine, "spec.params", e.Error()
		if key, rest, ok := splitKeyPath(msg); ok {
			if n := findPath(params, key); n != nil {
				line, field, msg = n.Line, "spec.params."+key, rest
			} else {
				field = "spec.params." + key
				msg = rest
			}
		}
		l.add(d, line, field, "%s", msg)
		h.broken = true
	}
	return h
}

// instanceChecker returns h's params as an adapters.InstanceChecker, when
// h is known, its params were read and they implement it.
func instanceChecker(h *handler) (adapters.InstanceChecker, bool) {
	if h == nil || h.broken || h.params == nil {
		return nil, false
	}
	ic, ok := h.params.(adapters.InstanceChecker)
	return ic, ok
}

// quotaNamer returns h's params as a QuotaNamer, when h is known and they
// are one.
func quotaNamer(h *handler) (adapters.QuotaNamer, bool) {
	if h == nil {
		return nil, false
	}
	qn, ok := h.params.(adapters.QuotaNamer)
	return qn, ok
}

// flatten splits joined errors into their parts.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

var keyPathRE = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_-]*(?:\[\d+\]|\.[A-Za-z_][A-Za-z0-9_-]*)*): (.+)$`)

// splitKeyPath splits "quotas[0].maxAmount: must be positive" into the key
// path and the rest.
func splitKeyPath(msg string) (path, rest string, ok bool) {
	m := keyPathRE.FindStringSubmatch(msg)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

var pathSegRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_-]*|\[\d+\]`)

// findPath finds the key node a path such as quotas[0].maxAmount names.
func findPath(n *yaml.Node, path string) *yaml.Node {
	var found *yaml.Node
	for _, seg := range pathSegRE.FindAllString(path, -1) {
		n = resolve(n)
		if n == nil {
			return nil
		}
		if strings.HasPrefix(seg, "[") {
			i, _ := strconv.Atoi(seg[1 : len(seg)-1])
			if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return nil
			}
			n = n.Content[i]
			found = n
			continue
		}
		k := keyNode(n, seg)
		if k == nil {
			return nil
		}
		found = k
		n = valueNode(n, seg)
	}
	return found
}

// instance decodes and compiles an Instance.
func (l *loader) instance(d *document) *instance {
	var spec instanceSpec
	fi, decoded := decodeStrict(d.spec, &spec, "spec")
	l.addField(d, fi)
	in := &instance{name: d.name, namespace: d.namespace, file: d.file, line: d.nameLine, template: spec.Template.Value}
	if !decoded {
		in.broken = true
		return in
	}
	params := resolve(&spec.Params)
	if params != nil && (params.Kind == 0 || (params.Kind == yaml.ScalarNode && params.Tag == "!!null")) {
		params = nil
	}
	in.view = nodeToAny(params)
	paramsLine := lineOf(params, d.specLine())
	ok := true
	compileField := func(field string, e expr, want typeRule) *program {
		if !e.Set {
			return nil
		}
		p, iss := l.compiler.compile(e.Text, want)
		for _, c := range iss {
			l.add(d, e.fileLine(c.line), field, "%s", c.String())
			ok = false
		}
		return p
	}
	compileMap := func(field string, m map[string]expr, want typeRule) []namedProgram {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]namedProgram, 0, len(keys))
		for _, k := range keys {
			if p := compileField(field+"."+k, m[k], want); p != nil {
				out = append(out, namedProgram{name: k, program: p})
			}
		}
		if len(out) == 0 {
			return out
		}
		for _, seen := range l.maps {
			if sameEntries(seen, out) {
				return seen
			}
		}
		names := make([]string, len(out))
		for i, np := range out {
			names[i] = np.name
		}
		layout, err := template.NewLayout(names...)
		if err != nil { // map keys are unique
			panic(err)
		}
		l.maps = append(l.maps, out)
		l.layouts = append(l.layouts, layout)
		return out
	}
	// decode decodes the params into out; when they cannot be decoded at
	// all the instance is broken and compiling its fields would only add
	// noise.
	decode := func(out any) bool {
		if params == nil {
			return true
		}
		fi, decoded := decodeStrict(params, out, "spec.params")
		l.addField(d, fi)
		if len(fi) > 0 {
			ok = false
		}
		if !decoded {
			in.broken = true
		}
		return decoded
	}
	require := func(key string, e expr) {
		if !e.Set {
			l.add(d, paramsLine, "spec.params."+key, "required")
			ok = false
		}
	}
	switch spec.Template.Value {
	case "":
		l.add(d, d.specLine(), "spec.template", "required (one of %s)", strings.Join(templateNames, ", "))
		in.broken = true
		return in
	case template.CheckNothingName:
		in.variety = VarietyCheck
		decode(&checkNothingParams{})
	case template.ListEntryName:
		in.variety = VarietyCheck
		var p listEntryParams
		if !decode(&p) {
			return in
		}
		require("value", p.Value)
		in.value = compileField("spec.params.value", p.Value, wantListValue)
	case template.AuthorizationName:
		in.variety = VarietyCheck
		var p authorizationParams
		if !decode(&p) {
			return in
		}
		in.authz = &authzPrograms{
			user:         compileField("spec.params.subject.user", p.Subject.User, wantString),
			groups:       compileField("spec.params.subject.groups", p.Subject.Groups, wantGroups),
			subjectProps: compileMap("spec.params.subject.properties", p.Subject.Properties, wantScalar),
			namespace:    compileField("spec.params.action.namespace", p.Action.Namespace, wantString),
			service:      compileField("spec.params.action.service", p.Action.Service, wantString),
			method:       compileField("spec.params.action.method", p.Action.Method, wantString),
			path:         compileField("spec.params.action.path", p.Action.Path, wantString),
			actionProps:  compileMap("spec.params.action.properties", p.Action.Properties, wantScalar),
		}
	case template.QuotaName:
		in.variety = VarietyQuota
		var p quotaParams
		if !decode(&p) {
			return in
		}
		in.dimensions = compileMap("spec.params.dimensions", p.Dimensions, wantScalar)
	case template.MetricName:
		in.variety = VarietyReport
		var p metricParams
		if !decode(&p) {
			return in
		}
		require("value", p.Value)
		in.value = compileField("spec.params.value", p.Value, wantNumber)
		in.dimensions = compileMap("spec.params.dimensions", p.Dimensions, wantScalar)
		in.layout = l.layoutOf(in.dimensions)
	case template.LogEntryName:
		in.variety = VarietyReport
		var p logEntryParams
		if !decode(&p) {
			return in
		}
		in.variables = compileMap("spec.params.variables", p.Variables, wantAny)
		in.layout = l.layoutOf(in.variables)
		in.severity = compileField("spec.params.severity", p.Severity, wantString)
		in.timestamp = compileField("spec.params.timestamp", p.Timestamp, wantTimestamp)
	case template.TraceSpanName:
		in.variety = VarietyReport
		var p traceSpanParams
		if !decode(&p) {
			return in
		}
		require("traceId", p.TraceID)
		require("spanId", p.SpanID)
		require("spanName", p.SpanName)
		require("startTime", p.StartTime)
		require("endTime", p.EndTime)
		in.span = &spanPrograms{
			traceID:         compileField("spec.params.traceId", p.TraceID, wantString),
			spanID:          compileField("spec.params.spanId", p.SpanID, wantString),
			parentSpanID:    compileField("spec.params.parentSpanId", p.ParentSpanID, wantString),
			traceState:      compileField("spec.params.traceState", p.TraceState, wantString),
			spanName:        compileField("spec.params.spanName", p.SpanName, wantString),
			startTime:       compileField("spec.params.startTime", p.StartTime, wantTimestamp),
			endTime:         compileField("spec.params.endTime", p.EndTime, wantTimestamp),
			spanKind:        compileField("spec.params.spanKind", p.SpanKind, wantString),
			status:          compileField("spec.params.status", p.Status, wantString),
			statusMessage:   compileField("spec.params.statusMessage", p.StatusMessage, wantString),
			httpStatusCode:  compileField("spec.params.httpStatusCode", p.HTTPStatusCode, wantInt),
			sourceName:      compileField("spec.params.sourceName", p.SourceName, wantString),
			destinationName: compileField("spec.params.destinationName", p.DestinationName, wantString),
			tags:            compileMap("spec.params.spanTags", p.SpanTags, wantScalar),
		}
		if !l.constantOneOf(d, "spec.params.spanKind", p.SpanKind, in.span.spanKind, spanKinds) ||
			!l.constantOneOf(d, "spec.params.status", p.Status, in.span.status, spanStatuses) {
			ok = false
		}
	case template.OTLPName:
		in.variety = VarietyOTLP
		var p otlpParams
		if !decode(&p) {
			return in
		}
		switch p.Signal {
		case "", template.SignalTraces, template.SignalLogs:
			in.otlpSignal = p.Signal
		default:
			l.add(d, paramsLine, "spec.params.signal", "unknown signal %q (want %s or %s; empty takes both)",
				p.Signal, template.SignalTraces, template.SignalLogs)
			ok = false
		}
	default:
		l.add(d, spec.Template.Line, "spec.template", "unknown template %q (want one of %s)",
			spec.Template.Value, strings.Join(templateNames, ", "))
		in.broken = true
		return in
	}
	in.broken = !ok
	return in
}

// constantOneOf checks an expression that reads no attribute (a literal
// such as '"server"') at load time, so that a misspelt value is a load
// error rather than an instance failing on every request. Expressions over
// attributes are checked when evaluated.
func (l *loader) constantOneOf(d *document, field string, e expr, p *program, allowed []string) bool {
	if p == nil {
		return true
	}
	var refs attribute.Referenced
	a := getActivation(attribute.NewBuilder(0).Build(), &refs, 0)
	defer putActivation(a)
	v, err := p.eval(a)
	if err != nil || refs.Len() > 0 || a.absent {
		return true
	}
	s, isString := v.(types.String)
	if !isString || slices.Contains(allowed, strings.ToLower(string(s))) {
		return true
	}
	l.add(d, e.Line, field, "%q is not one of %s", string(s), strings.Join(allowed, ", "))
	return false
}

// templateNames lists the templates an Instance may fill, check ones first.
var templateNames = []string{template.CheckNothingName, template.ListEntryName, template.AuthorizationName,
	template.QuotaName, template.MetricName, template.LogEntryName, template.TraceSpanName, template.OTLPName}

// rule decodes and compiles a Rule and resolves its references.
func (l *loader) rule(d *document, handlers map[string]*handler, instances map[string]*instance) *rule {
	var spec ruleSpec
	fi, decoded := decodeStrict(d.spec, &spec, "spec")
	l.addField(d, fi)
	if !decoded {
		return nil
	}
	r := &rule{name: d.name, namespace: d.namespace, file: d.file, line: d.nameLine, shadow: spec.Shadow}
	ok := len(fi) == 0
	switch strings.ToLower(spec.FailPolicy.Value) {
	case "", "closed":
	case "open":
		r.failOpen = true
	default:
		l.add(d, spec.FailPolicy.Line, "spec.failPolicy", "unknown fail policy %q (want open or closed)", spec.FailPolicy.Value)
		ok = false
	}
	if spec.Match.Set && strings.TrimSpace(spec.Match.Text) != "" {
		p, iss := l.compiler.compile(spec.Match.Text, wantBool)
		for _, c := range iss {
			l.add(d, spec.Match.fileLine(c.line), "spec.match", "%s", c.String())
			ok = false
		}
		r.match = p
	}
	if len(spec.Actions) == 0 && len(spec.RequestHeaderOperations) == 0 && len(spec.ResponseHeaderOperations) == 0 {
		l.add(d, d.specLine(), "spec.actions", "a rule needs at least one action or header operation")
		ok = false
	}
	actionsLine := lineOf(valueNode(d.spec, "actions"), d.specLine())
	for i, a := range spec.Actions {
		field := fmt.Sprintf("spec.actions[%d]", i)
		line := actionsLine
		if an := resolve(valueNode(d.spec, "actions")); an != nil && an.Kind == yaml.SequenceNode && i < len(an.Content) {
			line = an.Content[i].Line
		}
		if a.Handler.Value == "" {
			l.add(d, line, field+".handler", "required")
			ok = false
			continue
		}
		h, found := handlers[a.Handler.Value]
		if !found {
			l.add(d, a.Handler.Line, field+".handler", "handler %q not found", a.Handler.Value)
			ok = false
		}
		if len(a.Instances) == 0 {
			l.add(d, line, field+".instances", "required: the instances to send to the handler")
			ok = false
			continue
		}
		ca := &action{handler: h, name: a.Name}
		for _, ir := range a.Instances {
			l.sent[ir.Value] = true
		}
		for j, ir := range a.Instances {
			ifield := fmt.Sprintf("%s.instances[%d]", field, j)
			in, found := instances[ir.Value]
			if !found {
				l.add(d, ir.Line, ifield, "instance %q not found", ir.Value)
				ok = false
				continue
			}
			if h != nil && h.factory.Name != "" && slices.Contains(templateNames, in.template) && !h.factory.Accepts(in.template) {
				l.add(d, ir.Line, ifield, "handler %q (adapter %s) does not accept template %q (accepts %s)",
					h.name, h.adapter, in.template, strings.Join(h.factory.Templates, ", "))
				ok = false
				continue
			}
			if ic, isChecker := instanceChecker(h); isChecker {
				if err := ic.CheckInstance(in.template, in.otlpSignal); err != nil {
					l.add(d, ir.Line, ifield, "handler %q (adapter %s) cannot take instance %q: %v", h.name, h.adapter, in.name, err)
					ok = false
					continue
				}
			}
			if qn, isQuota := quotaNamer(h); isQuota && in.template == template.QuotaName {
				if names := qn.QuotaNames(); !slices.Contains(names, in.name) {
					l.add(d, ir.Line, ifield, "handler %q has no quota named %q (its quotas: %s): a quota instance draws on the handler's quota of the same name",
						h.name, in.name, strings.Join(names, ", "))
					ok = false
					continue
				}
			}
			ca.instances = append(ca.instances, in)
		}
		if ok && h != nil {
			r.actions = append(r.actions, ca)
		}
	}
	compileOps := func(field string, ops []headerOpSpec) []headerOp {
		var out []headerOp
		for i, o := range ops {
			f := fmt.Sprintf("%s[%d]", field, i)
			op := headerOp{name: o.Name.Value}
			if op.name == "" {
				l.add(d, d.specLine(), f+".name", "required")
				ok = false
				continue
			}
			switch strings.ToUpper(o.Operation.Value) {
			case "", "REPLACE":
				op.op = HeaderReplace
			case "REMOVE":
				op.op = HeaderRemove
			case "APPEND":
				op.op = HeaderAppend
			default:
				l.add(d, o.Operation.Line, f+".operation", "unknown operation %q (want REPLACE, REMOVE or APPEND)", o.Operation.Value)
				ok = false
				continue
			}
			if op.op != HeaderRemove && len(o.Values) == 0 {
				l.add(d, o.Name.Line, f+".values", "required for %s", strings.ToUpper(cmpOr(o.Operation.Value, "REPLACE")))
				ok = false
				continue
			}
			for j, v := range o.Values {
				p, iss := l.compiler.compile(v.Text, wantString)
				for _, c := range iss {
					l.add(d, v.fileLine(c.line), fmt.Sprintf("%s.values[%d]", f, j), "%s", c.String())
					ok = false
				}
				if p != nil {
					op.values = append(op.values, p)
				}
			}
			out = append(out, op)
		}
		return out
	}
	r.requestOps = compileOps("spec.requestHeaderOperations", spec.RequestHeaderOperations)
	r.responseOps = compileOps("spec.responseHeaderOperations", spec.ResponseHeaderOperations)
	if ok && r.match != nil {
		ok = l.otlpMatch(d, spec.Match, r)
	}
	if !ok {
		return nil
	}
	r.index()
	return r
}

// otlpMatch checks the match of a rule that sends otlp instances: it is
// evaluated once per resource of an OTLP export, over a bag of
// OTLPAttributes, so an expression over a span's or a request's
// attributes could never hold there. That is a load error rather than a
// rule that silently never matches (or always takes a default()).
func (l *loader) otlpMatch(d *document, match expr, r *rule) bool {
	var otlpInstance string
	for _, a := range r.actions {
		for _, in := range a.instances {
			if in.template == template.OTLPName && otlpInstance == "" {
				otlpInstance = in.name
			}
		}
	}
	if otlpInstance == "" {
		return true
	}
	var bad []string
	for _, name := range r.match.reads {
		if !slices.Contains(OTLPAttributes, name) {
			bad = append(bad, name)
		}
	}
	if len(bad) == 0 {
		return true
	}
	l.add(d, match.Line, "spec.match", "reads %s, but the rule sends otlp instance %q: it decides once per resource of an OTLP export, before any span or log record is decoded, and may read only %s",
		strings.Join(bad, ", "), otlpInstance, strings.Join(OTLPAttributes, ", "))
	return false
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// nodeToAny turns a YAML node into plain values with string map keys, so
// that it marshals as JSON too.
func nodeToAny(n *yaml.Node) any {
	return nodeToAnyDepth(n, 0)
}

func nodeToAnyDepth(n *yaml.Node, depth int) any {
	n = resolve(n)
	if n == nil || depth > 64 {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = nodeToAnyDepth(n.Content[i+1], depth+1)
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, c := range n.Content {
			s[i] = nodeToAnyDepth(c, depth+1)
		}
		return s
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return n.Value
		}
		switch v.(type) {
		case string, int, int64, float64, bool, nil:
			return v
		}
		return n.Value
	}
	return nil
}
