// Package template defines the instance types that rules build from
// attributes and hand to adapters.
//
// A template is a plain Go struct: the policy package fills its fields from
// compiled CEL expressions, adapters read them. There is no generated code.
// Values of expression-typed fields are native Go values: string, int64,
// float64, bool, time.Time, time.Duration, []byte or map[string]string.
// A metric's dimensions and a log entry's variables are Fields: values by
// position in a Layout of names fixed at configuration load.
//
// Instances are read-only once built: one Fields (metric dimensions, log
// variables) or map may be shared by several instances, of one request or
// of successive ones, and handlers may run on several goroutines at once.
package template

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Names of the built-in templates, as written in an Instance's spec.template.
const (
	CheckNothingName  = "checknothing"
	ListEntryName     = "listentry"
	QuotaName         = "quota"
	MetricName        = "metric"
	LogEntryName      = "logentry"
	AuthorizationName = "authorization"
	TraceSpanName     = "tracespan"
	OTLPName          = "otlp"
)

// Instance is a built template instance.
type Instance interface {
	// Template is the template's name, such as "metric".
	Template() string
	// InstanceName is the name of the Instance document it was built from.
	InstanceName() string
}

// CheckNothing carries no data: the handler decides from its own config.
type CheckNothing struct {
	Name string
}

// ListEntry is a value to look up in a list.
type ListEntry struct {
	Name  string
	Value string
}

// Quota names the dimensions an allocation is counted under.
type Quota struct {
	Name       string
	Dimensions map[string]any
}

// Metric is one observation of a metric.
type Metric struct {
	Name       string
	Value      any
	Dimensions Fields
}

// LogEntry is one log record.
type LogEntry struct {
	Name      string
	Variables Fields
	Severity  string
	Timestamp time.Time
}

// Authorization asks whether a subject may perform an action.
type Authorization struct {
	Name    string
	Subject Subject
	Action  Action
}

// Subject is who asks: the caller's principal, its groups, and any other
// properties (by convention "namespace" is the caller's namespace).
type Subject struct {
	User       string
	Groups     []string
	Properties map[string]any
}

// Action is what is asked for: the target service and the operation on it.
type Action struct {
	Namespace  string
	Service    string
	Method     string
	Path       string
	Properties map[string]any
}

// Span kinds and statuses a TraceSpan carries (OpenTelemetry's names, in
// lower case).
const (
	SpanKindServer   = "server"
	SpanKindClient   = "client"
	SpanKindProducer = "producer"
	SpanKindConsumer = "consumer"
	SpanKindInternal = "internal"

	SpanStatusUnset = "unset"
	SpanStatusOK    = "ok"
	SpanStatusError = "error"
)

// TraceSpan is one span of a distributed trace: typically the server span
// an inbound proxy made for a request, or the client span an outbound proxy
// made. Ids are lowercase hex as in W3C trace context: TraceID 32 digits,
// SpanID and ParentSpanID 16 (ParentSpanID empty for a trace's root).
type TraceSpan struct {
	Name            string // instance name
	TraceID         string
	SpanID          string
	ParentSpanID    string
	TraceState      string // W3C tracestate, as received
	SpanName        string
	StartTime       time.Time
	EndTime         time.Time
	SpanKind        string // one of the SpanKind constants
	Status          string // one of the SpanStatus constants
	StatusMessage   string
	HTTPStatusCode  int64 // 0: none
	SourceName      string
	DestinationName string
	// SpanTags are the span's attributes, in key order, each key once:
	// string, int64, float64, bool or time.Time values. The policy
	// package fills them in the order of the instance's spanTags keys,
	// fixed when the config loads, so adapters need neither a map nor a
	// sort; a slice may be shared by several spans (read only).
	SpanTags []SpanTag
}

// SpanTag is one of a span's attributes.
type SpanTag struct {
	Key   string
	Value any
}

// Tag is the value of the span's tag key, and whether it has one.
func (s *TraceSpan) Tag(key string) (any, bool) {
	for _, t := range s.SpanTags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return nil, false
}

// TagMap returns the span's tags as a new map, nil when it has none.
func (s *TraceSpan) TagMap() map[string]any {
	if len(s.SpanTags) == 0 {
		return nil
	}
	m := make(map[string]any, len(s.SpanTags))
	for _, t := range s.SpanTags {
		m[t.Key] = t.Value
	}
	return m
}

// ServiceName is the service the span belongs to: the workload whose proxy
// made it. Client and producer spans are made on the caller's side
// (SourceName), the others on the callee's (DestinationName). An empty
// name is "unknown".
func (s *TraceSpan) ServiceName() string {
	name := s.DestinationName
	if s.SpanKind == SpanKindClient || s.SpanKind == SpanKindProducer {
		name = s.SourceName
	}
	if name == "" {
		return "unknown"
	}
	return name
}

func (*TraceSpan) Template() string       { return TraceSpanName }
func (i *TraceSpan) InstanceName() string { return i.Name }

var _ Instance = (*TraceSpan)(nil)

// Signals an OTLP instance carries.
const (
	SignalTraces = "traces"
	SignalLogs   = "logs"
)

// OTLP is telemetry an app exported to the mixer's OTLP receiver, exactly
// as it arrived: the spans (a ResourceSpans) or the log records (a
// ResourceLogs) of one resource, in protobuf wire form, never decoded. Its
// Instance document's only param is signal (traces or logs; empty takes
// both): there is nothing to compute. Only the mixer's OTLP ingest builds
// these instances, once per resource of an export request, and a bag a
// proxy reported yields none. It is how a mixer forwards apps' telemetry
// unchanged (filtered by rules over the resource), as an OpenTelemetry
// Collector's pipeline does, at a fraction of the cost of a tracespan per
// span.
type OTLP struct {
	Name string // instance name
	// Signal is SignalTraces or SignalLogs. (In what the policy package's
	// evaluation returns, it is the Instance's signal param: the signal
	// the instance takes, "" for both.)
	Signal string
	// Data is the resource's message as field 1 of a TracesData
	// (LogsData): its tag, its length and its bytes as received, unknown
	// fields included. The Data of several instances of one signal,
	// concatenated, are a TracesData (LogsData): the value of an OTLP
	// record, the body of an OTLP export request. Handlers share it: read
	// only.
	Data []byte
	// Items is the spans (log records) in Data.
	Items int
	// ServiceName and ServiceNamespace are the resource's service.name and
	// service.namespace attributes ("" when absent).
	ServiceName, ServiceNamespace string
	// Release, when not nil, lets Data's buffer be reused for another
	// request: a handler that has copied what it needs of Data (and holds
	// no reference to it) calls it once for each time it was given the
	// instance, and reads Data no more. A handler that keeps Data, or
	// never calls Release, leaves the buffer to the garbage collector.
	Release func()
}

func (*OTLP) Template() string       { return OTLPName }
func (i *OTLP) InstanceName() string { return i.Name }

var _ Instance = (*OTLP)(nil)

func (*Authorization) Template() string       { return AuthorizationName }
func (i *Authorization) InstanceName() string { return i.Name }

var _ Instance = (*Authorization)(nil)

func (*CheckNothing) Template() string { return CheckNothingName }
func (*ListEntry) Template() string    { return ListEntryName }
func (*Quota) Template() string        { return QuotaName }
func (*Metric) Template() string       { return MetricName }
func (*LogEntry) Template() string     { return LogEntryName }

func (i *CheckNothing) InstanceName() string { return i.Name }
func (i *ListEntry) InstanceName() string    { return i.Name }
func (i *Quota) InstanceName() string        { return i.Name }
func (i *Metric) InstanceName() string       { return i.Name }
func (i *LogEntry) InstanceName() string     { return i.Name }

var (
	_ Instance = (*CheckNothing)(nil)
	_ Instance = (*ListEntry)(nil)
	_ Instance = (*Quota)(nil)
	_ Instance = (*Metric)(nil)
	_ Instance = (*LogEntry)(nil)
)

// FormatValue renders an instance field value as text, the way it appears in
// metric labels and quota keys.
func FormatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case []byte:
		return formatBytes(x)
	default:
		return fmt.Sprint(x)
	}
}

// formatBytes prints 4- and 16-byte values as IP addresses (the wire form of
// ip attributes) and anything else as hex.
func formatBytes(b []byte) string {
	if ip, ok := netip.AddrFromSlice(b); ok {
		return ip.Unmap().String()
	}
	return fmt.Sprintf("%x", b)
}
