package autoscale

import (
	"errors"
	"iter"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// ErrMissingMetrics is what a policy returns (wrapped) when the metrics it needs are
// absent or invalid. The loop then holds each target's count, or uses its
// [Fallback], and records the failure.
var ErrMissingMetrics = errors.New("autoscale: missing metrics")

// RegistryReader is a [Reader] over a [metrics.Registry], as of a fixed time: every
// snapshot it takes ends at that time. It reads the live windows on every call; the
// loop wraps it in a tick's [Snapshot], which reads each figure once. Its
// zero value reads nothing. It is safe for concurrent use.
type RegistryReader struct {
	reg *metrics.Registry
	now time.Time
}

var _ ScopeReader = RegistryReader{}

// NewRegistryReader returns a reader of reg's windows as of now. A nil reg reads
// nothing.
func NewRegistryReader(reg *metrics.Registry, now time.Time) RegistryReader {
	return RegistryReader{reg: reg, now: now}
}

// Snapshot summarizes the window of (scope, key) over span as of the reader's time;
// false when there is no such window.
func (r RegistryReader) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	if r.reg == nil {
		return metrics.Snapshot{}, false
	}
	w, ok := r.reg.Lookup(scope, key)
	if !ok {
		return metrics.Snapshot{}, false
	}
	return w.SnapshotAt(r.now, span), true
}

// Keys lists the keys of a scope, sorted.
func (r RegistryReader) Keys(scope metrics.Scope) []string {
	if r.reg == nil {
		return nil
	}
	return r.reg.Keys(scope)
}

// Scope yields the key and the snapshot over span of every window of scope, in key
// order, without looking each key up.
func (r RegistryReader) Scope(scope metrics.Scope, span time.Duration) iter.Seq2[string, metrics.Snapshot] {
	return func(yield func(string, metrics.Snapshot) bool) {
		if r.reg == nil {
			return
		}
		for w := range r.reg.Windows(scope) {
			if !yield(w.Key(), w.SnapshotAt(r.now, span)) {
				return
			}
		}
	}
}

// ScopeReader is a [Reader] that reads a whole scope in one pass, more cheaply than
// Keys and then Snapshot key by key. [RegistryReader] is one. A tick's [Snapshot] makes
// its first pass over a scope (for [Snapshot.Scope], and so for the Lua aggregates
// m.sum, m.max and m.min) through it when its source offers it.
type ScopeReader interface {
	Reader
	// Scope yields the key and the snapshot over span of every window of scope, in
	// key order: what Snapshot would return for each key Keys lists.
	Scope(scope metrics.Scope, span time.Duration) iter.Seq2[string, metrics.Snapshot]
}

// SourceReader is a [Reader] whose windows are merged from several sources, such as
// the gateway replicas of package metrics/redisshare. The loop records the sources a
// tick read in [Tick.Sources] and in each [Decision.Sources].
type SourceReader interface {
	Reader
	// Sources names the sources merged, sorted.
	Sources() []string
}

// emptyReader reads nothing.
type emptyReader struct{}

func (emptyReader) Snapshot(metrics.Scope, string, time.Duration) (metrics.Snapshot, bool) {
	return metrics.Snapshot{}, false
}
func (emptyReader) Keys(metrics.Scope) []string { return nil }
