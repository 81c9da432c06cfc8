package accesslog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/internal/jsonline"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.BatchReleaser = (*handler)(nil)

// maxKeptBuffer bounds the buffer kept from one report to the next: a
// mixerclient batch (1000 entries) of typical access-log lines is well
// under 1 MiB.
const maxKeptBuffer = 4 << 20

type handler struct {
	name string
	now  func() time.Time
	log  *slog.Logger
	path string

	mu      sync.Mutex // Report and Close
	out     io.Writer
	file    *os.File         // nil for stdout and stderr
	buf     []byte           // one report's lines, kept for the next
	enc     jsonline.Encoder // appends to buf, copying from the line before
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
	set.Logger.Info("writing access log", "path", c.Path)
	return h, nil
}

// ReportReleasesBatch says Report keeps nothing of the slice it is
// handed (adapters.BatchReleaser).
func (h *handler) ReportReleasesBatch() {}

// Report writes one line per log entry, all of them with one write.
func (h *handler) Report(ctx context.Context, insts []template.Instance) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.out == nil {
		return fmt.Errorf("%s: handler %s is closed", Name, h.name)
	}
	buf := h.buf[:0]
	h.enc.Forget() // the last line, in buf, is overwritten
	now := h.now()
	n := 0
	for _, inst := range insts {
		e, ok := inst.(*template.LogEntry)
		if !ok || e == nil {
			h.drop("wrong_template", 1)
			continue
		}
		buf = h.enc.AppendLine(buf, e, now)
		buf = append(buf, '\n')
		n++
	}
	if cap(buf) <= maxKeptBuffer {
		h.buf = buf
	} else {
		h.buf = nil // an outsized batch: do not hold on to its memory
	}
	if len(buf) == 0 {
		return nil
	}
	if _, err := h.out.Write(buf); err != nil {
		h.drop("write_error", n)
		return fmt.Errorf("%s: write %s: %w", Name, h.path, err)
	}
	h.entries.Add(float64(n))
	return nil
}

func (h *handler) drop(reason string, n int) {
	h.dropped.WithLabelValues(h.name, reason).Add(float64(n))
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
