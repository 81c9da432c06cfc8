// Package policy is sidemix's policy language: it loads Kubernetes-style
// YAML documents, checks every field and expression up front, and compiles
// them into an immutable [Snapshot] that answers, for one attribute bag,
// "which rules match, which instances to build, which handlers to call".
// It is pure: no network, no goroutines, no clocks it was not given.
//
// # Documents
//
// Every document has apiVersion sidemix.dev/v1, a kind, metadata.name
// (unique per kind; metadata.namespace is informational) and a spec. A file
// may hold several documents separated by "---"; empty documents are
// skipped. Six kinds exist:
//
//   - AttributeManifest extends the built-in vocabulary
//     ([attribute.DefaultManifest]) with more attributes and their types.
//   - Handler configures an adapter: spec.adapter names a factory of
//     [Options].Adapters and spec.params is decoded strictly into the
//     factory's config (unknown keys are errors) and validated.
//   - Instance fills a template (checknothing, listentry, authorization,
//     quota, metric, logentry, tracespan, otlp) whose fields are CEL
//     expressions over attributes.
//   - Rule has a CEL match (empty means always), actions (a handler and the
//     instances to send it) and optional request/response header
//     operations (REPLACE, REMOVE, APPEND; values are CEL strings).
//     spec.failPolicy (open or closed, any case; default closed) says
//     whether a handler of the rule that errors, times out or could not be
//     created lets the request through; spec.shadow: true makes the rule's
//     denials counted, never enforced. Both are copied onto every [Action].
//   - QuotaSpec lists rules of quotas to charge (quotas[]{quota, charge},
//     charge default 1) and when (match[], an OR of clauses; a clause maps
//     attributes to {exact|prefix|regex} and holds when all do; no match
//     means always). A clause names STRING attributes, or one key of a
//     STRING_MAP attribute as request.headers[x-tier]; regex is RE2 over
//     the whole value; an absent attribute matches nothing. Each quota
//     must name a quota Instance some Rule sends to a handler: a mixer
//     allocates it through that handler.
//   - QuotaSpecBinding binds QuotaSpecs (quotaSpecs[]{name, namespace}) to
//     services (services[]{name, namespace}): a request whose
//     destination.service.name is a service's name (and whose
//     destination.service.namespace is its namespace, when it gives one)
//     draws on those specs. [Snapshot.QuotaCharges] answers which quotas,
//     with what charge; a mixer uses it when a Check names no quotas.
//
// QuotaSpec and QuotaSpecBinding use Istio's field names, so Istio's files
// load as written once their quota instances and rules exist here.
//
// A small example, a rule that denies /admin:
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: deny-admin}
//	spec:
//	  adapter: denier
//	  params: {status: PERMISSION_DENIED, message: admin is closed}
//	---
//	apiVersion: sidemix.dev/v1
//	kind: Instance
//	metadata: {name: nothing}
//	spec: {template: checknothing}
//	---
//	apiVersion: sidemix.dev/v1
//	kind: Rule
//	metadata: {name: no-admin}
//	spec:
//	  match: request.path.startsWith("/admin")
//	  actions:
//	  - {handler: deny-admin, instances: [nothing]}
//
// # Expressions
//
// Expressions are CEL. Every attribute of the manifest is a variable with
// its dotted name (request.path, source.workload.name): STRING is string,
// INT64 int, DOUBLE double, BOOL bool, TIMESTAMP timestamp, DURATION
// duration, BYTES and IP_ADDRESS bytes, STRING_MAP map(string, string).
// Beyond CEL's standard library and its string extensions there are the
// mesh helpers:
//
//	ip("10.0.0.1")               bytes of an IP address (an error if invalid)
//	match(s, "glob*")            Istio glob: "*" matches all, "abc*" prefix, "*abc" suffix, else equality
//	conditional(c, a, b)         a if c else b; a and b have one type; the branch not taken may fail
//	default(a, b)                a, unless a cannot be evaluated (an absent attribute or map key): then b
//	dnsName(s), email(s), uri(s) s, or an error if s is not one
//
// Each expression is parsed and type-checked at load time, and its result
// type checked for its field: a match is a bool; a metric value an int,
// double or duration; a listentry value a string or bytes (bytes of 4 or 16
// are rendered as an IP address); a severity a string; a timestamp a
// timestamp; dimensions and properties anything but a map or list; the
// authorization fields subject.user, action.namespace, action.service,
// action.method and action.path strings, and subject.groups a list of
// strings or one string of comma-separated groups. A logentry without a
// severity says "info"; without a timestamp it takes context.time, else the
// load's clock ([Options].Now).
//
// A tracespan (a report template, [template.TraceSpan]) takes traceId,
// spanId, spanName, startTime and endTime (required), and parentSpanId,
// traceState, spanKind, status, statusMessage, httpStatusCode, sourceName,
// destinationName and spanTags (a map of name to expression). Ids, names,
// kind, status and message are strings, the times timestamps,
// httpStatusCode an int, tags scalars (bytes such as an ip attribute and
// durations are carried as text), in the span as a slice in key order,
// fixed when the config loads. spanKind must evaluate to server,
// client, producer, consumer or internal (default internal) and status to
// unset, ok or error (default unset), in any case; another value fails the
// instance at run time, or the load when the expression reads no attribute
// (a literal such as '"server"'). As for metric and logentry, a field over an absent
// attribute fails the instance unless wrapped in default(). The span a
// proxy made is described by the request.trace.* attributes; see
// examples/default/tracing.yaml.
//
// An otlp instance (a report template, [template.OTLP]) is the telemetry
// an app exported to the mixer over OTLP, as received, one resource at a
// time; its only param is signal (traces or logs; empty takes both). Only the mixer's OTLP ingest builds it, through
// [VarietyOTLP]; a proxy's bag never yields one. A rule that sends one is
// evaluated once per resource, over [OTLPAttributes] only, so its match
// may read nothing else: a match over a span's or a request's attributes
// is a load error (spec.match: reads span.name, but the rule sends otlp
// instance ...) rather than a rule that would never, or always, match.
//
// # Errors
//
// A load reports every issue at once, sorted by file and line, each as
// file:line: Kind/name: field: message, for example:
//
//	rules.yaml:14: Rule/no-admin: spec.match: ERROR: <input>:1:8: undeclared reference to 'request.pth' (did you mean 'request.path'?)
//	handlers.yaml:3: Handler/h: spec.params.sttus: unknown field
//	rules.yaml:9: Rule/r: spec.actions[0].handler: handler "nope" not found
//
// An adapter's Validate errors that begin with a key path ("quotas[0].max:
// must be positive") point at that key's line.
//
// # Evaluation
//
// [Snapshot.Evaluate] runs the rules in name order. Only rules with work for
// the asked [Variety] are looked at (for VarietyCheck, also rules with
// header operations), so a check records no attributes that only telemetry
// reads. It records into an [attribute.Referenced] every attribute the
// evaluation looked at, with its presence, and for map attributes each key
// looked up (index, "in", has()); whole-map uses (size, iteration,
// equality) record the whole map. A proxy keys its check cache on exactly
// these. An expression that fails at run time (an absent attribute outside
// default(), a bad ip()) makes the rule not match or skips the action, and
// is returned as an [EvalError]; it never fails the whole evaluation.
//
// Evaluation allocates little: activations are pooled, each attribute and
// map key is converted once per evaluation, and an instance several actions
// use is built once. A map field (dimensions, variables; likewise a
// span's tags) whose values all equal those it had for the last bag the
// activation built it for is that bag's map again: instances are read-only, and a proxy's
// reports of one edge mostly repeat their metric dimensions. Map fields
// with the same entries (Istio's metrics share their dimensions) are one
// field, built once per bag. Metric dimensions and logentry variables are
// template.Fields, values in the order of a Layout of their names made at
// load: a bag that changes a few of them (an access log's request id, path
// and sizes) costs a copy of the last values with those set, and adapters
// read them by position. Metric and logentry instances, and their values'
// slices, are cut from slabs the activation allocates now and then; so
// are the boxes of the strings and numbers a field takes from the bag.
//
// A field that is a plain read — an attribute, or default() of attributes
// and literals — or a concatenation of such reads (or default() of such
// concatenations, as a span name) takes the bag's value as it is (a
// string, a number, a time) without making a CEL value first: the fields
// that change with every request (ids, paths, times, sizes) are mostly
// such reads, and each CEL value cost an allocation only to be unboxed
// into the instance. The programs that read one attribute as it is share
// its Go value for the bag. It reads, records and fails exactly as CEL
// would (fast_test.go compares the three ways).
//
// A Sequence (the report path: the bags of one batch in order) keeps every
// value none of whose attributes the next bag changed; a map field whose
// values are all kept values is known unchanged without comparing them.
// Of a field built for the bag before (metric dimensions, logentry
// variables, a span's fields and tags), only the entries whose programs
// read a changed attribute are evaluated again, found through an index
// of the field's programs, not by a walk over all its entries; the others
// are copied from the last build.
//
// After a bag whose evaluation had no errors, a Sequence does not
// evaluate the next one's rules at all: a plan made once per snapshot
// lists, by attribute, the uses of the programs that read it (a rule's
// match, an instance's field, an entry of a map field, a span's field or
// tag), and the bag's changed attributes mark the few to evaluate again.
// The actions are the last bag's while no marked match decides otherwise;
// an instance none of whose fields is marked is the last bag's instance
// again (instances are read-only), another is a copy of it with the
// marked fields evaluated, plain reads straight from the bag. A match
// that decides otherwise, or a field that fails, makes the bag evaluated
// as above, which reports the error as Evaluate does.
package policy
