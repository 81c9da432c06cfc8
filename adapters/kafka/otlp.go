package kafka

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sidemix/sidemix/adapters/internal/spans"
	"github.com/sidemix/sidemix/adapters/template"
)

var (
	errWrongTemplate = errors.New("template not accepted")
	errInvalidSpan   = errors.New("span with an invalid trace or span id")
)

// encodeOTLP marshals one instance as OTLP protobuf (TracesData for a
// span, LogsData for a log entry: the wire form of the OTLP export
// requests), what the OpenTelemetry Collector's kafka receiver reads with
// encoding otlp_proto.
func encodeOTLP(inst template.Instance, now time.Time) ([]byte, error) {
	switch i := inst.(type) {
	case *template.LogEntry:
		e := i
		if e.Timestamp.IsZero() {
			c := *e
			c.Timestamp = now
			e = &c
		}
		return (&plog.ProtoMarshaler{}).MarshalLogs(spans.Logs([]*template.LogEntry{e}))
	case *template.TraceSpan:
		td, skipped := spans.Traces([]*template.TraceSpan{i})
		if skipped > 0 {
			return nil, errInvalidSpan
		}
		return (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	}
	return nil, fmt.Errorf("%w: %s", errWrongTemplate, inst.Template())
}
