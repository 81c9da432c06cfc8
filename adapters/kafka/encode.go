package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/jsonline"
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
		return encodeLogJSON(i, now), nil
	case *template.TraceSpan:
		v = spanObject(i)
	case *template.OTLP:
		return otlpJSON(i)
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

// logEncoders are jsonline encoders: reports may run concurrently, so
// each encoding takes one.
var logEncoders = sync.Pool{New: func() any { return new(jsonline.Encoder) }}

// encodeLogJSON returns e's JSON line, in an array of its own. (The
// handler writes log entries' records with a lineWriter instead.)
func encodeLogJSON(e *template.LogEntry, now time.Time) []byte {
	enc := logEncoders.Get().(*jsonline.Encoder)
	value := enc.AppendLogEntry(nil, e, now)
	logEncoders.Put(enc)
	return value
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
		for _, t := range s.SpanTags {
			out.Tags[t.Key] = jsonline.Value(t.Value)
		}
	}
	return out
}
