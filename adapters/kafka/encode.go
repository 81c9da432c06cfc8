package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
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
		return appendLogJSON(nil, i, now), nil
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

// appendLogJSON appends the JSON object of a log entry: "time",
// "severity", "instance" and every variable, keys sorted, exactly as
// encoding/json (without HTML escaping) writes the same map, but without
// reflection: this is the hot path of a busy mesh.
func appendLogJSON(b []byte, e *template.LogEntry, now time.Time) []byte {
	keys := make([]string, 0, len(e.Variables)+3)
	keys = append(keys, "instance", "severity", "time")
	for k := range e.Variables {
		if k != "instance" && k != "severity" && k != "time" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	ts := e.Timestamp
	if ts.IsZero() {
		ts = now
	}
	sev := e.Severity
	if sev == "" {
		sev = "INFO"
	}
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		switch k {
		case "instance":
			b = appendJSONString(b, e.Name)
		case "severity":
			b = appendJSONString(b, sev)
		case "time":
			b = append(b, '"')
			b = ts.UTC().AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		default:
			b = appendJSONValue(b, e.Variables[k])
		}
	}
	return append(b, '}')
}

// appendJSONValue appends v as jsonValue(v) encodes.
func appendJSONValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendJSONString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return appendJSONString(b, template.FormatValue(x))
		}
		return appendJSONFloat(b, x)
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, x[k])
		}
		return append(b, '}')
	default:
		return appendJSONString(b, template.FormatValue(x))
	}
}

// appendJSONFloat formats f as encoding/json does.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString quotes s. Plain printable ASCII, what nearly every
// value is, is copied as is; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s) // a string always encodes
			return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
