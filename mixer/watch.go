package mixer

import (
	"context"
	"errors"
	"strings"

	"github.com/sidemix/sidemix/internal/fswatch"
	"github.com/sidemix/sidemix/policy"
)

// errShuttingDown is what Reload returns once Shutdown began.
var errShuttingDown = errors.New("mixer: shutting down")

// Reload loads the config paths again and, when they are valid and differ
// from the active config, swaps in the new snapshot with freshly created
// handlers, then retires the old ones in the background. An invalid config
// is logged issue by issue, counted, returned, and leaves the active config
// serving. The watcher calls it on every change; cmd may call it on SIGHUP.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.closed {
		return errShuttingDown
	}
	old := s.active.Load()
	snap, err := policy.Load(s.cfg.ConfigPaths, policy.Options{Adapters: s.cfg.Adapters, Now: s.cfg.Now})
	if err != nil {
		issues := issueStrings(err)
		for _, is := range issues {
			s.log.Error("config issue", "issue", is)
		}
		s.log.Error("config reload rejected; the active config keeps serving",
			"issues", len(issues), "active_digest", old.snap.Digest())
		s.lastReload.Store(&reloadStatus{Time: s.cfg.Now(), Success: false, Errors: issues, err: err})
		s.m.reloads.WithLabelValues("failure").Inc()
		s.m.lastReloadSuccess.Set(0)
		return err
	}
	if snap.Digest() == old.snap.Digest() && !old.hasFailedHandlers() {
		// Same sources: keep the handlers, and the state they hold (quota
		// counters, connections).
		s.lastReload.Store(&reloadStatus{Time: s.cfg.Now(), Success: true, Digest: snap.Digest()})
		s.m.lastReloadSuccess.Set(1)
		return nil
	}

	st := s.newState(snap)
	s.active.Store(st)
	s.lastReload.Store(&reloadStatus{Time: s.cfg.Now(), Success: true, Digest: snap.Digest()})
	s.m.reloads.WithLabelValues("success").Inc()
	s.m.lastReloadSuccess.Set(1)
	h, i, r := snap.Counts()
	s.log.Info("config reloaded", "digest", snap.Digest(), "previous_digest", old.snap.Digest(),
		"handlers", h, "instances", i, "rules", r)

	s.retiring.Add(1)
	go func() {
		defer s.retiring.Done()
		ctx, cancel := context.WithTimeout(context.Background(), retireTimeout)
		defer cancel()
		if err := old.retire(ctx); err != nil {
			s.log.Warn("retiring the previous config", "digest", old.snap.Digest(), "error", err)
		}
	}()
	return nil
}

func (st *state) hasFailedHandlers() bool {
	for _, h := range st.order {
		if h.err != nil {
			return true
		}
	}
	return false
}

// issueStrings renders a load error as one line per issue.
func issueStrings(err error) []string {
	var le *policy.LoadError
	if errors.As(err, &le) && len(le.Issues) > 0 {
		out := make([]string, len(le.Issues))
		for i, is := range le.Issues {
			out[i] = is.String()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// watch reloads the config whenever the files change (see
// internal/fswatch: file system events plus a slow poll, debounced).
func (s *Server) watch(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	fswatch.Run(ctx, fswatch.Options{
		Paths:        s.cfg.ConfigPaths,
		PollInterval: s.cfg.ConfigPollInterval,
		Debounce:     s.cfg.ReloadDebounce,
		Logger:       s.log,
		PollOnly:     s.cfg.noFSNotify,
	}, s.filesDigest, func() bool {
		return !errors.Is(s.Reload(), errShuttingDown)
	})
}
