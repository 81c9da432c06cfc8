package mixer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

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

// watch reloads the config whenever the files change: fsnotify events on
// every folder (and the folder of every file) given, plus a slow poll that
// compares names, sizes and modification times, as events get lost (editors
// that rename, network file systems, overflowing queues). Bursts of events
// are gathered for ReloadDebounce into one reload.
func (s *Server) watch(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	w := &pathWatcher{roots: cleanRoots(s.cfg.ConfigPaths)}
	fw, err := fsnotify.NewWatcher()
	if err == nil && s.cfg.noFSNotify {
		fw.Close()
		fw, err = nil, errors.New("disabled")
	}
	if err != nil {
		s.log.Warn("file system events unavailable; polling the config paths only", "error", err,
			"interval", s.cfg.ConfigPollInterval)
	} else {
		defer fw.Close()
		w.fs = fw
		w.addAll(s)
	}
	var events <-chan fsnotify.Event
	var fsErrs <-chan error
	if fw != nil {
		events, fsErrs = fw.Events, fw.Errors
	}

	last := s.filesDigest
	poll := time.NewTicker(s.cfg.ConfigPollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	arm := func() { debounce.Reset(s.cfg.ReloadDebounce) }

	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !w.relevant(ev.Name) {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					w.addTree(s, ev.Name)
				}
			}
			arm()
		case err, ok := <-fsErrs:
			if !ok {
				fsErrs = nil
				continue
			}
			s.log.Debug("file system watcher", "error", err)
			arm() // an overflow loses events: look again
		case <-poll.C:
			if d := w.digest(); d != last {
				arm()
			}
		case <-debounce.C:
			last = w.digest()
			if w.fs != nil {
				w.addAll(s) // folders may have been replaced
			}
			if err := s.Reload(); errors.Is(err, errShuttingDown) {
				return
			}
		}
	}
}

// root is one config path as given: a folder (watched recursively) or a
// file (watched through its folder).
type root struct {
	path  string
	isDir bool
}

type pathWatcher struct {
	roots []root
	fs    *fsnotify.Watcher
}

func cleanRoots(paths []string) []root {
	out := make([]root, 0, len(paths))
	for _, p := range paths {
		p = filepath.Clean(p)
		fi, err := os.Stat(p)
		out = append(out, root{path: p, isDir: err == nil && fi.IsDir()})
	}
	return out
}

// addAll (re-)adds watches on every root; adding a watch twice is harmless.
func (w *pathWatcher) addAll(s *Server) {
	for i, r := range w.roots {
		fi, err := os.Stat(r.path)
		if err == nil {
			w.roots[i].isDir = fi.IsDir()
		}
		if w.roots[i].isDir {
			w.addTree(s, r.path)
			continue
		}
		// Editors and config maps replace files by renaming: watch the
		// folder, not the inode.
		if err := w.fs.Add(filepath.Dir(r.path)); err != nil {
			s.log.Debug("cannot watch", "path", filepath.Dir(r.path), "error", err)
		}
	}
}

func (w *pathWatcher) addTree(s *Server, dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if err := w.fs.Add(p); err != nil {
				s.log.Debug("cannot watch", "path", p, "error", err)
			}
		}
		return nil
	})
}

// relevant reports whether an event on name may change the config.
func (w *pathWatcher) relevant(name string) bool {
	name = filepath.Clean(name)
	for _, r := range w.roots {
		if name == r.path {
			return true
		}
		if r.isDir && strings.HasPrefix(name, r.path+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// digest summarizes names, sizes and modification times under the roots,
// following symlinks to files, so that a poll notices a changed config
// without reading it.
func (w *pathWatcher) digest() string {
	h := sha256.New()
	var buf [8]byte
	put := func(p string, fi os.FileInfo) {
		h.Write([]byte(p))
		h.Write([]byte{0})
		if fi == nil {
			h.Write([]byte{0})
			return
		}
		binary.LittleEndian.PutUint64(buf[:], uint64(fi.Size()))
		h.Write(buf[:])
		binary.LittleEndian.PutUint64(buf[:], uint64(fi.ModTime().UnixNano()))
		h.Write(buf[:])
		binary.LittleEndian.PutUint64(buf[:], uint64(fi.Mode()))
		h.Write(buf[:])
	}
	for _, r := range w.roots {
		fi, err := os.Stat(r.path)
		if err != nil || !fi.IsDir() {
			put(r.path, fi)
			continue
		}
		_ = filepath.WalkDir(r.path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				put(p, nil)
				return nil
			}
			fi, err := os.Stat(p) // follows symlinks
			if err != nil {
				put(p, nil)
				return nil
			}
			if fi.IsDir() {
				h.Write([]byte(p))
				h.Write([]byte{1})
				return nil
			}
			put(p, fi)
			return nil
		})
	}
	return hex.EncodeToString(h.Sum(nil))
}
