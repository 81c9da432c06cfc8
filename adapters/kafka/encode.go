package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
)

// encoder turns one instance into one record value.
type encoder func(inst template.Instance, now time.Time) ([]byte, error)

func newEncoder(encoding string) encoder {
	if encoding == EncodingOTLPProto {
		return encodeOTLP
	}
	return encodeJSON
}

// encodeJSON writes a log entry the way the accesslog adapter writes a
// line, and a span as an object of its fields.
func encodeJSON(inst template.Instance, now time.Time) ([]byte, error) {
	var v any
	switch i := inst.(type) {
	case *template.LogEntry:
		v = logObject(i, now)
	case *template.TraceSpan:
		v = spanObject(i)
	default:
		return nil, fmt.Errorf("%w: %s", errWrongTemplate, inst.Template())
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // URLs and queries stay readable
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// logObject is "time", "severity", "instance" and every variable, keys
// sorted by encoding/json.
func logObject(e *template.LogEntry, now time.Time) map[string]any {
	m := make(map[string]any, len(e.Variables)+3)
	for k, v := range e.Variables {
		m[k] = jsonValue(v)
	}
	ts := e.Timestamp
	if ts.IsZero() {
		ts = now
	}
	sev := e.Severity
	if sev == "" {
		sev = "INFO"
	}
	m["time"] = ts.UTC().Format(time.RFC3339Nano)
	m["severity"] = sev
	m["instance"] = e.Name
	return m
}

// spanJSON is a span's JSON form.
type spanJSON struct {
	Instance        string         `json:"instance"`
	TraceID         string         `json:"traceId"`
	SpanID          string         `json:"spanId"`
	ParentSpanID    string         `json:"parentSpanId,omitempty"`
	TraceState      string         `json:"traceState,omitempty"`
	Name            string         `json:"name"`
	Kind            string         `json:"kind"`
	StartTime       string         `json:"startTime"`
	EndTime         string         `json:"endTime"`
	Status          string         `json:"status"`
	StatusMessage   string         `json:"statusMessage,omitempty"`
	HTTPStatusCode  int64          `json:"httpStatusCode,omitempty"`
	ServiceName     string         `json:"serviceName"`
	SourceName      string         `json:"sourceName"`
	DestinationName string         `json:"destinationName"`
	Tags            map[string]any `json:"tags,omitempty"`
}

func spanObject(s *template.TraceSpan) spanJSON {
	out := spanJSON{
		Instance: s.Name, TraceID: s.TraceID, SpanID: s.SpanID, ParentSpanID: s.ParentSpanID,
		TraceState: s.TraceState, Name: s.SpanName, Kind: s.SpanKind,
		StartTime: s.StartTime.UTC().Format(time.RFC3339Nano), EndTime: s.EndTime.UTC().Format(time.RFC3339Nano),
		Status: s.Status, StatusMessage: s.StatusMessage, HTTPStatusCode: s.HTTPStatusCode,
		ServiceName: s.ServiceName(), SourceName: s.SourceName, DestinationName: s.DestinationName,
	}
	if len(s.SpanTags) > 0 {
		out.Tags = make(map[string]any, len(s.SpanTags))
		for k, v := range s.SpanTags {
			out.Tags[k] = jsonValue(v)
		}
	}
	return out
}

// jsonValue keeps JSON types where a value has one and otherwise writes
// the value's text form (as the accesslog adapter does).
func jsonValue(v any) any {
	switch x := v.(type) {
	case nil, string, bool, int64, int, map[string]string:
		return x
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return template.FormatValue(x)
		}
		return x
	default: // time.Duration, time.Time, []byte (IPs) and anything else
		return template.FormatValue(x)
	}
}
