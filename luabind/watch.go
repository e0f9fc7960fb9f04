package luabind

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// Watcher reloads a runtime's script when its file changes. It watches the file's
// directory, so editors that save by renaming a new file over the old one work. It is
// for examples and development; production deployments usually reload on a signal or
// a config push. A Watcher is used by one goroutine, the one calling Run.
type Watcher struct {
	rt   *Runtime
	path string
	// OnReload, when not nil, is called after each reload attempt with its error
	// (nil on success), from Run's goroutine.
	OnReload func(err error)
}

// NewWatcher returns a watcher that reloads rt from path.
func NewWatcher(rt *Runtime, path string) (*Watcher, error) {
	if rt == nil || path == "" {
		return nil, configError("watcher needs a runtime and a path")
	}
	return &Watcher{rt: rt, path: filepath.Clean(path)}, nil
}

// Run watches until ctx ends, then returns nil; it returns an error only when the
// watch cannot be set up or fails. A reload that fails is logged and reported to
// OnReload; the old script keeps running.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("luabind: watch: %w", err)
	}
	defer fw.Close()
	if err := fw.Add(filepath.Dir(w.path)); err != nil {
		return fmt.Errorf("luabind: watch %s: %w", w.path, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			return fmt.Errorf("luabind: watch %s: %w", w.path, err)
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) != w.path || !ev.Has(fsnotify.Write|fsnotify.Create) {
				continue
			}
			src, err := FromFile(w.path)
			if err == nil {
				err = w.rt.Reload(src)
			}
			if err != nil {
				w.rt.cfg.logger.Warn("lua reload failed; the old script keeps running", "path", w.path, "err", err)
			} else {
				w.rt.cfg.logger.Info("lua script reloaded", "path", w.path)
			}
			if w.OnReload != nil {
				w.OnReload(err)
			}
		}
	}
}
