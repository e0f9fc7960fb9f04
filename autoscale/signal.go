package autoscale

import (
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Signal reads the figure a policy scales on from a window's snapshot, in the unit a
// Lua policy reads the same field of its snapshot view (luabind/REFERENCE.md): rates
// per second, latencies in milliseconds, fractions 0..1. A TargetValue therefore means
// the same number in a Go policy and in its Lua twin.
type Signal func(metrics.Snapshot) float64

// SignalConcurrency is the time-weighted average of requests in flight: what Knative's
// autoscaler scales on.
func SignalConcurrency(s metrics.Snapshot) float64 { return s.Concurrency }

// SignalRate is requests per second.
func SignalRate(s metrics.Snapshot) float64 { return s.Rate }

// SignalInFlight is the number of requests in flight at the snapshot's time.
func SignalInFlight(s metrics.Snapshot) float64 { return float64(s.InFlight) }

// SignalP99 is the 99th percentile of latency, in milliseconds (a Lua snapshot's p99).
func SignalP99(s metrics.Snapshot) float64 { return millis(s.P99) }

// SignalMean is the mean latency, in milliseconds (a Lua snapshot's mean).
func SignalMean(s metrics.Snapshot) float64 { return millis(s.Mean) }

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// SignalErrorRate is the fraction of requests that failed.
func SignalErrorRate(s metrics.Snapshot) float64 { return s.ErrorRate }

// Source says where a policy reads its signal for a target.
type Source struct {
	// Scope is the window's scope. Zero means [metrics.ScopeRoute].
	Scope metrics.Scope
	// Key is the window's key. Empty means the target's name.
	Key string
	// Signal is the figure read. Nil means [SignalConcurrency].
	Signal Signal
}

// read returns the signal of t's window over span.
func (s Source) read(in *Input, t string, span time.Duration) (float64, error) {
	scope, key, sig := s.Scope, s.Key, s.Signal
	if scope == "" {
		scope = metrics.ScopeRoute
	}
	if key == "" {
		key = t
	}
	if sig == nil {
		sig = SignalConcurrency
	}
	if in.Metrics == nil {
		return 0, fmt.Errorf("%w: no metrics reader", ErrMissingMetrics)
	}
	snap, ok := in.Metrics.Snapshot(scope, key, span)
	if !ok {
		return 0, fmt.Errorf("%w: no window %s/%s", ErrMissingMetrics, scope, key)
	}
	v := sig(snap)
	if !finite(v) || v < 0 {
		return 0, fmt.Errorf("%w: window %s/%s reads %v", ErrMissingMetrics, scope, key, v)
	}
	return v, nil
}
