// Package fswatch tells a config loader when its files change: fsnotify
// events on every folder (and the folder of every file) given, plus a slow
// poll that compares names, sizes and modification times, as events get
// lost (editors that rename, network file systems, overflowing queues).
// Bursts of events are gathered for a debounce interval into one reload.
// The mixer's policy config and the proxy's routes both use it.
package fswatch

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Options configure Run.
type Options struct {
	// Paths are the files and folders (watched recursively) to watch.
	Paths []string
	// PollInterval is how often names, sizes and modification times are
	// compared; Debounce how long a burst of changes is gathered.
	PollInterval, Debounce time.Duration
	// Logger receives the watcher's troubles (debug level); nil discards.
	Logger *slog.Logger
	// PollOnly leaves file system events out (tests of the fallback).
	PollOnly bool
}

// Digest summarizes names, sizes and modification times under paths,
// following symlinks to files, so that a poll notices a change without
// reading the files. Take it before loading the files, and give it to Run.
func Digest(paths []string) string {
	return (&pathWatcher{roots: cleanRoots(paths)}).digest()
}

// Run calls reload after every change of the paths since last (a Digest)
// until ctx is done or reload returns false.
func Run(ctx context.Context, o Options, last string, reload func() bool) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &pathWatcher{roots: cleanRoots(o.Paths), log: log}
	var fw *fsnotify.Watcher
	var err error
	if !o.PollOnly {
		fw, err = fsnotify.NewWatcher()
	}
	switch {
	case o.PollOnly:
	case err != nil:
		log.Warn("file system events unavailable; polling the config paths only", "error", err,
			"interval", o.PollInterval)
	default:
		defer fw.Close()
		w.fs = fw
		w.addAll()
	}
	var events <-chan fsnotify.Event
	var fsErrs <-chan error
	if w.fs != nil {
		events, fsErrs = fw.Events, fw.Errors
	}

	poll := time.NewTicker(o.PollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	arm := func() { debounce.Reset(o.Debounce) }
	// A change made after last was taken but before the watches above were
	// in place raised no event: compare once now instead of at the first
	// poll, which may be far off.
	if w.digest() != last {
		arm()
	}

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
					w.addTree(ev.Name)
				}
			}
			arm()
		case err, ok := <-fsErrs:
			if !ok {
				fsErrs = nil
				continue
			}
			log.Debug("file system watcher", "error", err)
			arm() // an overflow loses events: look again
		case <-poll.C:
			if d := w.digest(); d != last {
				arm()
			}
		case <-debounce.C:
			last = w.digest()
			if w.fs != nil {
				w.addAll() // folders may have been replaced
			}
			if !reload() {
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
	log   *slog.Logger
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
func (w *pathWatcher) addAll() {
	for i, r := range w.roots {
		fi, err := os.Stat(r.path)
		if err == nil {
			w.roots[i].isDir = fi.IsDir()
		}
		if w.roots[i].isDir {
			w.addTree(r.path)
			continue
		}
		// Editors and config maps replace files by renaming: watch the
		// folder, not the inode.
		if err := w.fs.Add(filepath.Dir(r.path)); err != nil {
			w.log.Debug("cannot watch", "path", filepath.Dir(r.path), "error", err)
		}
	}
}

func (w *pathWatcher) addTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if err := w.fs.Add(p); err != nil {
				w.log.Debug("cannot watch", "path", p, "error", err)
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
