package autoscale

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/autoscalelua/autoscalelua/actuator"
)

// target is a target's runtime state.
type target struct {
	cfg      Target
	ref      actuator.Target
	act      actuator.Actuator
	reader   actuator.ReplicaReader
	up, down *Rules
	period   time.Duration // the longest rate period
	window   time.Duration // the longest stabilization window

	mu       sync.Mutex // guards the fields below
	current  int
	desired  int
	pending  *job               // dispatched, not started
	inflight *job               // being applied
	running  bool               // a worker runs
	cancel   context.CancelFunc // cancels the running worker's calls; set by dispatch
	stopJob  context.CancelFunc // cancels inflight's calls when a newer request supersedes it
	upEv     []timed
	downEv   []timed
	last     time.Time // time of the last applied change
	wake     chan struct{}
	cold     cold

	// Guarded by Loop.stepMu.
	recs     []timed
	seeded   bool
	failures int

	// Telemetry attributes, fixed at construction.
	attrs    metric.MeasurementOption
	dirAttrs map[Direction]metric.MeasurementOption
	clampAtt map[string]metric.MeasurementOption
}

type timed struct {
	t time.Time
	n int
}

func newTarget(cfg Target) *target {
	t := &target{
		cfg: cfg, ref: cfg.ref(), act: cfg.Actuator,
		up: cfg.Safety.ScaleUp, down: cfg.Safety.ScaleDown,
		current: -1, desired: -1,
		wake: make(chan struct{}, 1),
		cold: cold{ready: -1},
	}
	if rr, ok := cfg.Actuator.(actuator.ReplicaReader); ok {
		t.reader = rr
	}
	if t.up == nil {
		t.up = DefaultScaleUp()
	}
	if t.down == nil {
		t.down = DefaultScaleDown()
	}
	for _, r := range []*Rules{t.up, t.down} {
		t.window = max(t.window, r.StabilizationWindow)
		for _, p := range r.Policies {
			t.period = max(t.period, p.Period)
		}
	}
	return t
}

func (t *target) state() TargetState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TargetState{
		Name: t.cfg.Name, Replicas: t.current, Desired: t.desired, Min: t.cfg.Min, Max: t.cfg.Max,
		Ready: t.cold.ready, Pending: t.pendingLocked(t.current), Held: t.cold.demand,
	}
}

// latest returns the newest dispatched request not yet finished.
func (t *target) latest() *job {
	if t.pending != nil {
		return t.pending
	}
	return t.inflight
}

// outstanding reports whether n is being applied.
func (t *target) outstanding(n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	j := t.latest()
	return j != nil && j.req.Replicas == n
}

// outstandingOther reports whether a count other than n is being applied.
func (t *target) outstandingOther(n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	j := t.latest()
	return j != nil && j.req.Replicas != n
}

// applied records a change the actuator made, decided at time at.
func (t *target) applied(at time.Time, from, to int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.current = to
	if from < 0 || from == to {
		return
	}
	if to > from {
		t.upEv = append(t.upEv, timed{at, to - from})
	} else {
		t.downEv = append(t.downEv, timed{at, from - to})
	}
	if at.After(t.last) {
		t.last = at
	}
}

// periodStart returns the count at the start of a rate period ending at now: the
// current count less the changes made within it, as the HPA computes it.
func (t *target) periodStart(now time.Time, current int) func(time.Duration) int {
	return func(period time.Duration) int {
		cutoff := now.Add(-period)
		n := current
		for _, e := range t.upEv {
			if e.t.After(cutoff) {
				n -= e.n
			}
		}
		for _, e := range t.downEv {
			if e.t.After(cutoff) {
				n += e.n
			}
		}
		return n
	}
}

func prune(ev []timed, cutoff time.Time) []timed {
	i := 0
	for i < len(ev) && !ev[i].t.After(cutoff) {
		i++
	}
	if i == 0 {
		return ev
	}
	return append(ev[:0], ev[i:]...)
}

// safe passes one tick's policy output for the target through the safety layer and
// returns the final count (-1 when there is nothing to do) and the steps taken. It runs
// under Loop.stepMu.
func (t *target) safe(now time.Time, current int, out PolicyOutput) (int, []SafetyStep) {
	steps := make([]SafetyStep, 0, 4)
	add := func(name string, before, after int, format string, args ...any) int {
		steps = append(steps, SafetyStep{Name: name, Before: before, After: after, Note: fmt.Sprintf(format, args...)})
		return after
	}
	desired := t.policySteps(now, current, out, add)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.coldSteps(now, current, desired, add), steps
}

// policySteps runs the safety steps on the policy's ask, from fallback to cooldown.
func (t *target) policySteps(now time.Time, current int, out PolicyOutput, add func(string, int, int, string, ...any) int) int {
	s := &t.cfg.Safety

	failed := !out.Present && out.Err != ""
	fallback := false
	desired := current
	if out.Present {
		desired = out.Replicas
	}
	if failed {
		t.failures++
		fb := s.Fallback
		if fb == nil || t.failures < fb.FailureThreshold {
			if fb == nil {
				add(StepHold, current, current, "policy failed (%d in a row): hold", t.failures)
			} else {
				add(StepHold, current, current, "policy failed (%d in a row, fallback after %d): hold", t.failures, fb.FailureThreshold)
			}
			if current < 0 {
				return -1
			}
			return current
		}
		fallback = true
		desired = add(StepFallback, current, fb.Replicas, "policy failed %d times in a row: fallback", t.failures)
	} else {
		t.failures = 0
	}

	if current < 0 && !out.Present && !fallback {
		return -1 // nothing known, nothing asked
	}
	if current >= 0 && (current > t.cfg.Max || current < t.cfg.Min) {
		// The HPA's first rule (horizontal.go, reconcileAutoscaler): a count outside
		// the bounds goes to the bound at once, whatever the policy asks, before the
		// tolerance, stabilization and rate limits. (The HPA leaves a target at zero
		// with Min > 0 alone, as disabled; the loop raises it to Min.)
		if current > t.cfg.Max {
			return add(StepMax, desired, t.cfg.Max, "current %d above max %d: to the bound at once", current, t.cfg.Max)
		}
		return add(StepMin, desired, t.cfg.Min, "current %d below min %d: to the bound at once", current, t.cfg.Min)
	}
	if desired < t.cfg.Min {
		desired = add(StepMin, desired, t.cfg.Min, "min %d", t.cfg.Min)
	}
	if desired > t.cfg.Max {
		desired = add(StepMax, desired, t.cfg.Max, "max %d", t.cfg.Max)
	}
	if current < 0 {
		// Without a current count there is no band, no direction and no rate.
		return desired
	}

	if tol := s.Tolerance; tol > 0 && !fallback && desired != current {
		if diff := desired - current; float64(max(diff, -diff)) <= tol*float64(current) {
			desired = add(StepTolerance, desired, current, "within %.0f%% of %d", tol*100, current)
		}
	}

	// Stabilization: the HPA's stabilizeRecommendationWithBehaviors.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.window > 0 {
		if !t.seeded {
			// Start with the current count as a recommendation, so a (re)started loop
			// does not scale down before its down window has passed.
			t.seeded = true
			t.recs = append(t.recs, timed{now, current})
		}
		t.recs = prune(t.recs, now.Add(-t.window))
		upRec, downRec := desired, desired
		upCut, downCut := now.Add(-t.up.StabilizationWindow), now.Add(-t.down.StabilizationWindow)
		for _, r := range t.recs {
			if r.t.After(upCut) {
				upRec = min(upRec, r.n)
			}
			if r.t.After(downCut) {
				downRec = max(downRec, r.n)
			}
		}
		t.recs = append(t.recs, timed{now, desired})
		stab := max(current, upRec)
		stab = min(stab, downRec)
		switch {
		case desired > current && t.up.StabilizationWindow > 0:
			desired = add(StepStabilizeUp, desired, stab, "lowest recommendation in %v", t.up.StabilizationWindow)
		case desired < current && t.down.StabilizationWindow > 0:
			desired = add(StepStabilizeDown, desired, stab, "highest recommendation in %v", t.down.StabilizationWindow)
		}
	}

	if out.Panic && desired < current {
		desired = add(StepPanic, desired, current, "policy in panic: no scale-down")
	}
	desired = t.pendingStep(current, desired, add)

	// Rate: the HPA's convertDesiredReplicasWithBehaviorRate.
	if t.period > 0 {
		t.upEv = prune(t.upEv, now.Add(-t.period))
		t.downEv = prune(t.downEv, now.Add(-t.period))
	}
	start := t.periodStart(now, current)
	switch {
	case desired > current:
		limit := max(t.up.limit(start, current, true), current)
		if desired > limit {
			desired = add(StepRateUp, desired, limit, "scale-up limit %d (select %s)", limit, t.up.Select)
		}
	case desired < current:
		limit := min(t.down.limit(start, current, false), current)
		if desired < limit {
			desired = add(StepRateDown, desired, limit, "scale-down limit %d (select %s)", limit, t.down.Select)
		}
	}

	if cd := s.Cooldown; cd > 0 && desired != current && !t.last.IsZero() && now.Sub(t.last) < cd {
		desired = add(StepCooldown, desired, current, "last change %v ago, cooldown %v", now.Sub(t.last), cd)
	}
	return desired
}
