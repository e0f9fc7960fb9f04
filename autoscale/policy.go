package autoscale

import (
	"context"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// A Policy decides, every tick, what to do. It is a function of its input (plus whatever
// state the policy keeps itself): that is what makes it testable, replayable and
// simulatable. Decide must not block on I/O; the loop calls it from one goroutine at a
// time.
//
// Decide may return actions together with an error: the loop applies the actions, and
// every target without a valid Scale action among them counts as failed on this tick
// (it holds, or falls back; see [Safety]). Return an error wrapping [ErrMissingMetrics]
// when the metrics a decision needs are absent. A panic in Decide is recovered and
// treated as an error.
type Policy interface {
	Decide(ctx context.Context, in *Input) ([]Action, error)
}

// PolicyFunc adapts a function to [Policy].
type PolicyFunc func(ctx context.Context, in *Input) ([]Action, error)

// Decide calls f.
func (f PolicyFunc) Decide(ctx context.Context, in *Input) ([]Action, error) { return f(ctx, in) }

// Input is what a policy sees on one tick.
type Input struct {
	// Now is the tick's time, from the loop's clock.
	Now time.Time
	// Tick is the loop's period.
	Tick time.Duration
	// Targets are the loop's targets, sorted by name.
	Targets []TargetState
	// Metrics is the tick's view of the metric windows as of Now: every read of it
	// within the tick returns the same figure (see [Snapshot]). Nil reads nothing.
	Metrics *Snapshot
}

// Target returns the state of the named target.
func (in *Input) Target(name string) (TargetState, bool) {
	for _, t := range in.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return TargetState{}, false
}

// TargetState is what the loop knows of a target at a tick.
type TargetState struct {
	Name string
	// Replicas is the current count as last read from the actuator (or last applied
	// when the actuator cannot report it); -1 when unknown.
	Replicas int
	// Desired is the last count the loop decided on; -1 before the first decision.
	Desired int
	// Min and Max bound the count.
	Min, Max int
	// Ready is the count of ready replicas last reported with [Loop.SetReady]; -1 when
	// nobody reports it.
	Ready int
	// Pending is the count of replicas asked for and not ready yet (Replicas - Ready);
	// 0 when Ready or Replicas is unknown.
	Pending int
	// Held is the count of replicas that requests held for a cold start need (see
	// [Loop.Wake]); 0 when none are held.
	Held int
}

// Reader is a source of metric windows: what [WithReader] supplies for each tick and a
// [Snapshot] memoises. Policies do not read a Reader: they read the tick's Snapshot.
type Reader interface {
	// Snapshot summarizes the window of (scope, key) over span (zero means the whole
	// window) as of the tick; false when there is no such window.
	Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool)
	// Keys lists the keys of a scope, sorted.
	Keys(scope metrics.Scope) []string
}
