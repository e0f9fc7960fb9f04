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
// snapshot it takes ends at that time, so a tick's reads agree with each other. Its
// zero value reads nothing. It is safe for concurrent use.
type RegistryReader struct {
	reg *metrics.Registry
	now time.Time
}

var (
	_ ScopeReader = RegistryReader{}
	_ ScopeReader = (*recorder)(nil)
)

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
// Keys and then Snapshot key by key. [RegistryReader] is one. Code that reduces a scope
// (the Lua aggregates m.sum, m.max and m.min) reads through [ScopeSnapshots], which uses
// it when a reader offers it.
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

// ScopeSnapshots yields the key and the snapshot over span of every window of scope, in
// key order: through r's Scope when r is a [ScopeReader], else by Keys and Snapshot
// (skipping keys whose window is gone).
func ScopeSnapshots(r Reader, scope metrics.Scope, span time.Duration) iter.Seq2[string, metrics.Snapshot] {
	if sr, ok := r.(ScopeReader); ok {
		return sr.Scope(scope, span)
	}
	return func(yield func(string, metrics.Snapshot) bool) {
		if r == nil {
			return
		}
		for _, k := range r.Keys(scope) {
			if s, ok := r.Snapshot(scope, k, span); ok && !yield(k, s) {
				return
			}
		}
	}
}

// recorder is a Reader that records the reads made through it. It is used by one
// policy call at a time.
type recorder struct {
	r     Reader
	reads []Read
	on    bool
}

func (c *recorder) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	if c.r == nil {
		return metrics.Snapshot{}, false
	}
	s, ok := c.r.Snapshot(scope, key, span)
	if c.on {
		c.reads = append(c.reads, Read{Scope: scope, Key: key, Span: span, Found: ok, Snapshot: s})
	}
	return s, ok
}

func (c *recorder) Keys(scope metrics.Scope) []string {
	if c.r == nil {
		return nil
	}
	return c.r.Keys(scope)
}

func (c *recorder) Scope(scope metrics.Scope, span time.Duration) iter.Seq2[string, metrics.Snapshot] {
	return func(yield func(string, metrics.Snapshot) bool) {
		for k, s := range ScopeSnapshots(c.r, scope, span) {
			if c.on {
				c.reads = append(c.reads, Read{Scope: scope, Key: k, Span: span, Found: true, Snapshot: s})
			}
			if !yield(k, s) {
				return
			}
		}
	}
}

// emptyReader reads nothing.
type emptyReader struct{}

func (emptyReader) Snapshot(metrics.Scope, string, time.Duration) (metrics.Snapshot, bool) {
	return metrics.Snapshot{}, false
}
func (emptyReader) Keys(metrics.Scope) []string { return nil }
