package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.Reporter = (*handler)(nil)

const defaultSeverity = "INFO"

type handler struct {
	name string
	now  func() time.Time
	log  *slog.Logger
	path string

	mu      sync.Mutex // Report and Close
	out     io.Writer
	file    *os.File // nil for stdout and stderr
	buf     bytes.Buffer
	enc     *json.Encoder // writes to buf
	entries prometheus.Counter
	dropped *prometheus.CounterVec
}

func newHandler(set adapters.Settings, cfg adapters.Config) (*handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	entries, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_accesslog_entries_total",
		Help: "Log entries written by accesslog handlers.",
	}, []string{"handler"}))
	if err != nil {
		return nil, err
	}
	dropped, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_accesslog_dropped_total",
		Help: "Log entries accesslog handlers could not write, by reason.",
	}, []string{"handler", "reason"}))
	if err != nil {
		return nil, err
	}
	h := &handler{
		name:    set.Name,
		now:     set.Now,
		log:     set.Logger,
		path:    c.Path,
		entries: entries.WithLabelValues(set.Name),
		dropped: dropped,
	}
	switch c.Path {
	case Stdout:
		h.out = os.Stdout
	case Stderr:
		h.out = os.Stderr
	default:
		f, err := os.OpenFile(c.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s: path: %w", Name, err)
		}
		h.out, h.file = f, f
	}
	h.enc = json.NewEncoder(&h.buf)
	h.enc.SetEscapeHTML(false) // URLs and queries stay readable
	set.Logger.Info("writing access log", "path", c.Path)
	return h, nil
}

// Report writes one line per log entry, all of them with one write.
func (h *handler) Report(ctx context.Context, insts []template.Instance) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.out == nil {
		return fmt.Errorf("%s: handler %s is closed", Name, h.name)
	}
	h.buf.Reset()
	n := 0
	for _, inst := range insts {
		e, ok := inst.(*template.LogEntry)
		if !ok || e == nil {
			h.drop("wrong_template", 1)
			continue
		}
		if err := h.enc.Encode(h.line(e)); err != nil {
			// Not expected: line holds only JSON-safe values.
			h.drop("encode_error", 1)
			h.log.Debug("log entry dropped", "instance", e.Name, "err", err)
			continue
		}
		n++
	}
	if h.buf.Len() == 0 {
		return nil
	}
	if _, err := h.out.Write(h.buf.Bytes()); err != nil {
		h.drop("write_error", n)
		return fmt.Errorf("%s: write %s: %w", Name, h.path, err)
	}
	h.entries.Add(float64(n))
	return nil
}

func (h *handler) drop(reason string, n int) {
	h.dropped.WithLabelValues(h.name, reason).Add(float64(n))
}

// line is the JSON object of one entry; encoding/json sorts its keys.
func (h *handler) line(e *template.LogEntry) map[string]any {
	m := make(map[string]any, len(e.Variables)+3)
	for k, v := range e.Variables {
		m[k] = jsonValue(v)
	}
	ts := e.Timestamp
	if ts.IsZero() {
		ts = h.now()
	}
	sev := e.Severity
	if sev == "" {
		sev = defaultSeverity
	}
	m["time"] = ts.UTC().Format(time.RFC3339Nano)
	m["severity"] = sev
	m["instance"] = e.Name
	return m
}

// jsonValue keeps JSON types where a value has one and otherwise writes
// the value's text form.
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

// Close closes the file; there is nothing buffered between reports.
func (h *handler) Close(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.out == nil {
		return nil
	}
	h.out = nil
	if h.file == nil {
		return nil
	}
	err := h.file.Close()
	h.file = nil
	if err != nil {
		return fmt.Errorf("%s: close %s: %w", Name, h.path, err)
	}
	return nil
}
