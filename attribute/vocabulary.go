package attribute

import (
	"fmt"
	"sort"
	"strings"
)

// Kind is the type of an attribute.
type Kind uint8

// The attribute kinds. IPAddress values travel and are stored as Bytes
// (4 or 16 bytes); the distinct kind tells the policy language and tools how
// to print and parse them.
const (
	KindInvalid Kind = iota
	KindString
	KindInt64
	KindDouble
	KindBool
	KindTimestamp
	KindDuration
	KindBytes
	KindStringMap
	KindIPAddress
)

var kindNames = [...]string{
	KindInvalid:   "INVALID",
	KindString:    "STRING",
	KindInt64:     "INT64",
	KindDouble:    "DOUBLE",
	KindBool:      "BOOL",
	KindTimestamp: "TIMESTAMP",
	KindDuration:  "DURATION",
	KindBytes:     "BYTES",
	KindStringMap: "STRING_MAP",
	KindIPAddress: "IP_ADDRESS",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// ValueKind is the kind a value of this attribute kind has in a Bag.
func (k Kind) ValueKind() Kind {
	if k == KindIPAddress {
		return KindBytes
	}
	return k
}

// ParseKind reads a kind name as written in an AttributeManifest
// (case-insensitive; "ip" and "map" accepted as short forms).
func ParseKind(s string) (Kind, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	switch u {
	case "IP", "IP_ADDR":
		return KindIPAddress, nil
	case "MAP":
		return KindStringMap, nil
	}
	for k, n := range kindNames {
		if k != int(KindInvalid) && n == u {
			return Kind(k), nil
		}
	}
	return KindInvalid, fmt.Errorf("unknown attribute type %q (want one of STRING, INT64, DOUBLE, BOOL, TIMESTAMP, DURATION, BYTES, STRING_MAP, IP_ADDRESS)", s)
}

// The standard attribute vocabulary.
const (
	SourceUID               = "source.uid"
	SourceIP                = "source.ip"
	SourceName              = "source.name"
	SourceNamespace         = "source.namespace"
	SourcePrincipal         = "source.principal"
	SourceLabels            = "source.labels"
	SourceWorkloadName      = "source.workload.name"
	SourceWorkloadNamespace = "source.workload.namespace"
	SourceWorkloadUID       = "source.workload.uid"

	DestinationUID               = "destination.uid"
	DestinationIP                = "destination.ip"
	DestinationName              = "destination.name"
	DestinationNamespace         = "destination.namespace"
	DestinationPrincipal         = "destination.principal"
	DestinationLabels            = "destination.labels"
	DestinationWorkloadName      = "destination.workload.name"
	DestinationWorkloadNamespace = "destination.workload.namespace"
	DestinationWorkloadUID       = "destination.workload.uid"
	DestinationServiceHost       = "destination.service.host"
	DestinationServiceName       = "destination.service.name"
	DestinationServiceNamespace  = "destination.service.namespace"
	DestinationPort              = "destination.port"

	RequestHeaders     = "request.headers"
	RequestID          = "request.id"
	RequestPath        = "request.path"
	RequestURLPath     = "request.url_path"
	RequestQueryParams = "request.query_params"
	RequestHost        = "request.host"
	RequestMethod      = "request.method"
	RequestScheme      = "request.scheme"
	RequestSize        = "request.size"
	RequestTotalSize   = "request.total_size"
	RequestTime        = "request.time"
	RequestUserAgent   = "request.useragent"

	ResponseCode       = "response.code"
	ResponseSize       = "response.size"
	ResponseTotalSize  = "response.total_size"
	ResponseHeaders    = "response.headers"
	ResponseDuration   = "response.duration"
	ResponseTime       = "response.time"
	ResponseGRPCStatus = "response.grpc_status"

	ConnectionID                  = "connection.id"
	ConnectionMTLS                = "connection.mtls"
	ConnectionRequestedServerName = "connection.requested_server_name"

	ContextProtocol       = "context.protocol"
	ContextReporterKind   = "context.reporter.kind"
	ContextReporterUID    = "context.reporter.uid"
	ContextTime           = "context.time"
	ContextProxyErrorCode = "context.proxy_error_code"

	// The span the reporting proxy made for the request (W3C trace context
	// ids in lowercase hex): its trace, its own id, its parent's id (absent
	// for a trace's root) and whether the trace is sampled.
	RequestTraceID      = "request.trace.id"
	RequestSpanID       = "request.trace.span_id"
	RequestParentSpanID = "request.trace.parent_span_id"
	RequestTraceSampled = "request.trace.sampled"
	RequestTraceState   = "request.trace.state"

	// A span or log record an app sent to the mixer over OTLP (the mixer's
	// OTLP ingest; the proxies never set these): the span's name, its kind
	// (server, client, producer, consumer or internal), its status (unset,
	// ok or error) and its attributes as text. A log record's body and
	// severity text and its attributes as text.
	SpanName       = "span.name"
	SpanKind       = "span.kind"
	SpanStatus     = "span.status"
	SpanAttributes = "span.attributes"
	LogBody        = "log.body"
	LogSeverity    = "log.severity"
	LogAttributes  = "log.attributes"

	// A TCP connection a proxy passed through (Istio's names): the event
	// being reported (open, continue while it lasts, close), the bytes the
	// destination received from the source and sent back since the
	// previous report of the connection and in total, and how long it has
	// been open.
	ConnectionEvent              = "connection.event"
	ConnectionReceivedBytes      = "connection.received.bytes"
	ConnectionReceivedBytesTotal = "connection.received.bytes_total"
	ConnectionSentBytes          = "connection.sent.bytes"
	ConnectionSentBytesTotal     = "connection.sent.bytes_total"
	ConnectionDuration           = "connection.duration"

	// The route a proxy's routing chose for the request (proxy/routing):
	// the VirtualService's http[].name, else VIRTUALSERVICE.INDEX (the
	// route's 0-based place in http[]), or the host for a ServiceEntry's
	// default route.
	RouteName = "route.name"
)

// standard is the built-in manifest, in the order its names enter the global
// dictionary. Append only: the dictionary is versioned by its length, and
// names past namesBeforeValues follow the common values there (wire.go).
var standard = []struct {
	name string
	kind Kind
}{
	{SourceUID, KindString},
	{SourceIP, KindIPAddress},
	{SourceName, KindString},
	{SourceNamespace, KindString},
	{SourcePrincipal, KindString},
	{SourceLabels, KindStringMap},
	{SourceWorkloadName, KindString},
	{SourceWorkloadNamespace, KindString},
	{SourceWorkloadUID, KindString},
	{DestinationUID, KindString},
	{DestinationIP, KindIPAddress},
	{DestinationName, KindString},
	{DestinationNamespace, KindString},
	{DestinationPrincipal, KindString},
	{DestinationLabels, KindStringMap},
	{DestinationWorkloadName, KindString},
	{DestinationWorkloadNamespace, KindString},
	{DestinationWorkloadUID, KindString},
	{DestinationServiceHost, KindString},
	{DestinationServiceName, KindString},
	{DestinationServiceNamespace, KindString},
	{DestinationPort, KindInt64},
	{RequestHeaders, KindStringMap},
	{RequestID, KindString},
	{RequestPath, KindString},
	{RequestURLPath, KindString},
	{RequestQueryParams, KindStringMap},
	{RequestHost, KindString},
	{RequestMethod, KindString},
	{RequestScheme, KindString},
	{RequestSize, KindInt64},
	{RequestTotalSize, KindInt64},
	{RequestTime, KindTimestamp},
	{RequestUserAgent, KindString},
	{ResponseCode, KindInt64},
	{ResponseSize, KindInt64},
	{ResponseTotalSize, KindInt64},
	{ResponseHeaders, KindStringMap},
	{ResponseDuration, KindDuration},
	{ResponseTime, KindTimestamp},
	{ResponseGRPCStatus, KindString},
	{ConnectionID, KindString},
	{ConnectionMTLS, KindBool},
	{ConnectionRequestedServerName, KindString},
	{ContextProtocol, KindString},
	{ContextReporterKind, KindString},
	{ContextReporterUID, KindString},
	{ContextTime, KindTimestamp},
	{ContextProxyErrorCode, KindString},
	{RequestTraceID, KindString},
	{RequestSpanID, KindString},
	{RequestParentSpanID, KindString},
	{RequestTraceSampled, KindBool},
	{RequestTraceState, KindString},
	{SpanName, KindString},
	{SpanKind, KindString},
	{SpanStatus, KindString},
	{SpanAttributes, KindStringMap},
	{LogBody, KindString},
	{LogSeverity, KindString},
	{LogAttributes, KindStringMap},
	{ConnectionEvent, KindString},
	{ConnectionReceivedBytes, KindInt64},
	{ConnectionReceivedBytesTotal, KindInt64},
	{ConnectionSentBytes, KindInt64},
	{ConnectionSentBytesTotal, KindInt64},
	{ConnectionDuration, KindDuration},
	{RouteName, KindString},
}

// Manifest maps attribute names to kinds. It is immutable once built.
type Manifest struct {
	kinds map[string]Kind
}

// NewManifest builds a manifest from a name → kind map.
func NewManifest(kinds map[string]Kind) *Manifest {
	m := &Manifest{kinds: make(map[string]Kind, len(kinds))}
	for n, k := range kinds {
		m.kinds[n] = k
	}
	return m
}

var defaultManifest = func() *Manifest {
	kinds := make(map[string]Kind, len(standard))
	for _, a := range standard {
		kinds[a.name] = a.kind
	}
	return NewManifest(kinds)
}()

// DefaultManifest is the standard vocabulary.
func DefaultManifest() *Manifest { return defaultManifest }

// Kind returns the kind of an attribute and whether it is declared.
func (m *Manifest) Kind(name string) (Kind, bool) {
	k, ok := m.kinds[name]
	return k, ok
}

// Len is the number of declared attributes.
func (m *Manifest) Len() int { return len(m.kinds) }

// Names lists the declared attributes, sorted.
func (m *Manifest) Names() []string {
	names := make([]string, 0, len(m.kinds))
	for n := range m.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// With returns a manifest that declares the extra attributes too. It fails
// when an extra attribute redeclares an existing one with another kind.
func (m *Manifest) With(extra map[string]Kind) (*Manifest, error) {
	out := NewManifest(m.kinds)
	for n, k := range extra {
		if old, ok := out.kinds[n]; ok && old != k {
			return nil, fmt.Errorf("attribute %q is already declared as %s, not %s", n, old, k)
		}
		out.kinds[n] = k
	}
	return out, nil
}

// CheckBag reports the first attribute of bag that is undeclared or has a
// value of the wrong kind.
func (m *Manifest) CheckBag(bag *Bag) error {
	for i := range bag.entries {
		e := &bag.entries[i]
		k, ok := m.kinds[e.name]
		if !ok {
			continue // unknown attributes are carried, never evaluated
		}
		if k.ValueKind() != e.value.kind {
			return fmt.Errorf("attribute %q has a %s value, declared %s", e.name, e.value.kind, k)
		}
	}
	return nil
}

// CheckChanged is CheckBag for a bag whose attributes other than changed
// are those of a bag CheckBag accepted: only changed are checked.
func (m *Manifest) CheckChanged(bag *Bag, changed []string) error {
	for _, name := range changed {
		k, ok := m.kinds[name]
		if !ok {
			continue
		}
		v, ok := bag.Get(name)
		if ok && k.ValueKind() != v.kind {
			return fmt.Errorf("attribute %q has a %s value, declared %s", name, v.kind, k)
		}
	}
	return nil
}
