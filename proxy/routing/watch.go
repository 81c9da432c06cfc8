package routing

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidemix/sidemix/internal/fswatch"
)

// WatchOptions configure a Watcher.
type WatchOptions struct {
	// PollInterval (default 5s) and Debounce (default 200ms) tune the
	// watch, as the mixer's ConfigPollInterval and ReloadDebounce.
	PollInterval, Debounce time.Duration
	// Logger receives reloads and the issues of rejected ones; nil discards.
	Logger *slog.Logger
	// OnReload is called with every new valid table, from the watching
	// goroutine (and from Reload), once Table returns it.
	OnReload func(*Table)
}

// Watcher keeps the table of a set of paths current: Run reloads it
// whenever the files change; an invalid change is logged with every issue
// (file:line) and the previous table keeps serving.
type Watcher struct {
	paths  []string
	o      WatchOptions
	log    *slog.Logger
	mu     sync.Mutex // serializes reloads
	cur    atomic.Pointer[Table]
	digest string // of the files before the first load
}

// NewWatcher loads paths; an invalid config is an error (there is nothing
// to serve yet).
func NewWatcher(o WatchOptions, paths ...string) (*Watcher, error) {
	if o.PollInterval <= 0 {
		o.PollInterval = 5 * time.Second
	}
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	w := &Watcher{paths: paths, o: o, log: o.Logger}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.digest = fswatch.Digest(paths)
	t, err := Load(paths...)
	if err != nil {
		return nil, err
	}
	w.logWarnings(t)
	w.cur.Store(t)
	return w, nil
}

// Table is the current table.
func (w *Watcher) Table() *Table { return w.cur.Load() }

// Reload loads the paths again and, when they are valid and changed,
// makes the new table current. An invalid config is logged and returned,
// and the current table stays.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.cur.Load()
	t, err := Load(w.paths...)
	if err != nil {
		var le *LoadError
		if errors.As(err, &le) {
			for _, is := range le.Issues {
				w.log.Error("routes issue", "issue", is.String())
			}
		}
		w.log.Error("routes reload rejected; the previous routes keep serving", "paths", w.paths, "active_digest", old.Digest())
		return err
	}
	if t.Digest() == old.Digest() {
		return nil
	}
	w.logWarnings(t)
	w.cur.Store(t)
	if w.o.OnReload != nil {
		w.o.OnReload(t)
	}
	w.log.Info("routes reloaded", "digest", t.Digest(), "previous_digest", old.Digest(), "clusters", len(t.Clusters()))
	return nil
}

func (w *Watcher) logWarnings(t *Table) {
	for _, is := range t.Warnings() {
		w.log.Warn("routes: field not implemented", "issue", is.String())
	}
}

// Run watches the paths until ctx is done, reloading on every change.
func (w *Watcher) Run(ctx context.Context) {
	fswatch.Run(ctx, fswatch.Options{Paths: w.paths, PollInterval: w.o.PollInterval, Debounce: w.o.Debounce, Logger: w.log},
		w.digest, func() bool {
			_ = w.Reload()
			return true
		})
}
