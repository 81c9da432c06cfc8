package kafka

import (
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

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
	case *template.OTLP:
		// One resource's field 1 entry is a TracesData (LogsData) by itself.
		return i.Data, nil
	}
	return nil, fmt.Errorf("%w: %s", errWrongTemplate, inst.Template())
}

// otlpJSON is the OTLP JSON form of the telemetry an otlp instance holds.
func otlpJSON(i *template.OTLP) ([]byte, error) {
	switch i.Signal {
	case template.SignalTraces:
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(i.Data)
		if err != nil {
			return nil, err
		}
		return (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	case template.SignalLogs:
		ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(i.Data)
		if err != nil {
			return nil, err
		}
		return (&plog.JSONMarshaler{}).MarshalLogs(ld)
	}
	return nil, fmt.Errorf("otlp instance of unknown signal %q", i.Signal)
}

// itemsOf is how many spans or log entries inst stands for in
// sidemix_kafka_instances_sent_total.
func itemsOf(inst template.Instance) int {
	if o, ok := inst.(*template.OTLP); ok {
		return o.Items
	}
	return 1
}

// recordKey is a record's key, told apart from no key.
type recordKey struct {
	key  string
	none bool
}

// otlpGroup is the spans and log entries of one report with one key, in
// the order reported.
type otlpGroup struct {
	key   []byte
	spans []*template.TraceSpan
	logs  []*template.LogEntry
	// raw are otlp instances, by signal: traces, logs.
	raw [2][]*template.OTLP
}

// otlpRecords turns a report's instances into OTLP records: the spans of
// one key go into one TracesData record and the log entries of one key
// into one LogsData record, as the OpenTelemetry Collector's kafka
// exporter writes a batch, so a record is marshalled (and sent, and
// acknowledged) per key and report instead of per instance. A record
// above batchBytes is split in halves until each fits; a single instance
// that does not fit is dropped as too large.
func (h *handler) otlpRecords(insts []template.Instance, now time.Time) []kafkago.Message {
	var order []recordKey
	groups := map[recordKey]*otlpGroup{}
	var last lastKey // records of one key share its bytes and where it is
	for _, inst := range insts {
		switch i := inst.(type) {
		case *template.TraceSpan, *template.LogEntry:
		case *template.OTLP:
			if i.Signal != template.SignalTraces && i.Signal != template.SignalLogs {
				h.count(resultWrongTemplate, 1)
				continue
			}
		default:
			h.count(resultWrongTemplate, 1)
			continue
		}
		var key []byte
		if h.key != nil {
			var err error
			if key, err = h.key.eval(inst, &last); err != nil {
				h.keyErrors.Inc()
				h.log.Debug("record sent without a key", "instance", inst.InstanceName(), "key", h.key.text, "error", err)
			}
		}
		rk := recordKey{key: string(key), none: key == nil}
		g := groups[rk]
		if g == nil {
			g = &otlpGroup{key: key}
			groups[rk] = g
			order = append(order, rk)
		}
		switch i := inst.(type) {
		case *template.TraceSpan:
			g.spans = append(g.spans, i)
		case *template.LogEntry:
			if i.Timestamp.IsZero() {
				c := *i
				c.Timestamp = now
				i = &c
			}
			g.logs = append(g.logs, i)
		case *template.OTLP:
			sig := 0
			if i.Signal == template.SignalLogs {
				sig = 1
			}
			g.raw[sig] = append(g.raw[sig], i)
		}
	}
	var msgs []kafkago.Message
	for _, rk := range order {
		g := groups[rk]
		if len(g.spans) > 0 {
			msgs = h.spanRecords(msgs, g.key, g.spans, now)
		}
		if len(g.logs) > 0 {
			msgs = h.logRecords(msgs, g.key, g.logs, now)
		}
		for _, raw := range g.raw {
			if len(raw) > 0 {
				msgs = h.rawRecords(msgs, g.key, raw, now)
			}
		}
	}
	return msgs
}

// rawRecords writes otlp instances of one signal and key: their resources,
// concatenated as received, are a TracesData (LogsData), cut between
// resources so that each record fits batchBytes. A resource larger than
// that alone is dropped as too large. Once a record holds a copy of an
// instance's Data, the instance is released (template.OTLP.Release), so
// the receiver can reuse its buffer.
func (h *handler) rawRecords(msgs []kafkago.Message, key []byte, insts []*template.OTLP, now time.Time) []kafkago.Message {
	room := h.batchBytes - int64(len(key)+recordOverhead)
	parts := make([][]byte, 0, len(insts))
	var in []*template.OTLP // the instances of parts
	size, items := int64(0), 0
	releases := false
	flush := func() {
		if len(parts) == 0 {
			return
		}
		// One resource nobody asks back is written as received (kafka-go
		// only reads a value), and so is one too large, to be dropped;
		// joinValue copies several (or one whose buffer is to be reused)
		// into a pooled buffer.
		value, data := parts[0], any(items)
		if len(parts) > 1 || releases && size <= room {
			value, data = joinValue(parts, int(size), items)
		}
		msgs = h.appendRecord(msgs, kafkago.Message{Key: key, Value: value, Time: now, WriterData: data})
		for _, i := range in {
			if i.Release != nil {
				i.Release()
			}
		}
		clear(in)
		parts, in, size, items, releases = parts[:0], in[:0], 0, 0, false
	}
	for _, i := range insts {
		if size > 0 && size+int64(len(i.Data)) > room {
			flush()
		}
		parts = append(parts, i.Data)
		in = append(in, i)
		size += int64(len(i.Data))
		items += i.Items
		releases = releases || i.Release != nil
	}
	flush()
	return msgs
}

// recordOverhead is kafka-go's framing of a record, counted against
// batchBytes with its key and value.
const recordOverhead = 23

func (h *handler) spanRecords(msgs []kafkago.Message, key []byte, ss []*template.TraceSpan, now time.Time) []kafkago.Message {
	td, skipped := spans.Traces(ss)
	h.count(resultEncodeError, skipped)
	n := len(ss) - skipped
	if n == 0 {
		return msgs
	}
	value, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		h.count(resultEncodeError, n)
		h.log.Debug("records dropped: cannot encode", "spans", n, "error", err)
		return msgs
	}
	if int64(len(key)+len(value)+recordOverhead) > h.batchBytes && len(ss) > 1 {
		half := len(ss) / 2
		msgs = h.spanRecords(msgs, key, ss[:half], now)
		return h.spanRecords(msgs, key, ss[half:], now)
	}
	return h.appendRecord(msgs, kafkago.Message{Key: key, Value: value, Time: now, WriterData: n})
}

func (h *handler) logRecords(msgs []kafkago.Message, key []byte, es []*template.LogEntry, now time.Time) []kafkago.Message {
	value, err := (&plog.ProtoMarshaler{}).MarshalLogs(spans.Logs(es))
	if err != nil {
		h.count(resultEncodeError, len(es))
		h.log.Debug("records dropped: cannot encode", "log entries", len(es), "error", err)
		return msgs
	}
	if int64(len(key)+len(value)+recordOverhead) > h.batchBytes && len(es) > 1 {
		half := len(es) / 2
		msgs = h.logRecords(msgs, key, es[:half], now)
		return h.logRecords(msgs, key, es[half:], now)
	}
	return h.appendRecord(msgs, kafkago.Message{Key: key, Value: value, Time: now, WriterData: len(es)})
}

// appendRecord appends m unless it is too large for batchBytes.
func (h *handler) appendRecord(msgs []kafkago.Message, m kafkago.Message) []kafkago.Message {
	if size := int64(len(m.Key) + len(m.Value) + recordOverhead); size > h.batchBytes {
		h.tooLarge(m, fmt.Errorf("%d bytes, batchBytes is %d", size, h.batchBytes))
		releaseValues(m)
		return msgs
	}
	return append(msgs, m)
}
