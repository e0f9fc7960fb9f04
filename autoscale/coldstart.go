package autoscale

import (
	"errors"
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Safety step names of scale from and to zero ([SafetyStep.Name]).
const (
	// StepPending holds a scale-up while replicas asked for earlier are not ready yet:
	// they report no metrics, so the policy would ask again for the same load.
	StepPending = "pending"
	// StepWake raises the count to what requests held for a cold start need (see
	// [Loop.Wake]); it runs last but one, past the rate limits and cooldown.
	StepWake = "wake"
	// StepIdle scales to zero after [ScaleToZero.After] without requests.
	StepIdle = "idle-to-zero"
)

// ScaleToZero scales a target with Min 0 to zero after a period without requests, for
// any policy: the safety layer's last step. Activity is read from one window each tick
// (a request ended in the last tick, or one is in flight) and from [Loop.Wake].
type ScaleToZero struct {
	// After is how long the target must be idle, 1 s..24 h.
	After time.Duration
	// Cooldown is the least time from the last wake (a scale-up from zero, or held
	// requests) to the next scale to zero, 0..24 h; zero means After alone decides.
	Cooldown time.Duration
	// Scope and Key name the window that shows the target's traffic. A zero Scope means
	// [metrics.ScopeRoute]; an empty Key means the target's name.
	Scope metrics.Scope
	Key   string
}

// Validate reports every problem with the settings at once.
func (z *ScaleToZero) Validate() error {
	var errs []error
	if z.After < time.Second || z.After > 24*time.Hour {
		errs = append(errs, fmt.Errorf("scale to zero after %v out of [1s, 24h]", z.After))
	}
	if z.Cooldown < 0 || z.Cooldown > 24*time.Hour {
		errs = append(errs, fmt.Errorf("scale to zero cooldown %v out of [0, 24h]", z.Cooldown))
	}
	return errors.Join(errs...)
}

// coldStartWeight is the weight of a new cold-start observation in the target's
// average: the last few wakes dominate, one slow start does not.
const coldStartWeight = 0.5

// cold is a target's scale-from-zero state, guarded by target.mu.
type cold struct {
	ready      int       // ready replicas, -1 when nobody reported
	demand     int       // replicas held requests need, 0 when none wait
	wokeAt     time.Time // when a scale-up from zero ready was asked, zero when none waits for readiness
	lastWake   time.Time // last time held requests woke the target
	lastActive time.Time // last time the target's window showed traffic, or a wake
	coldStart  time.Duration
	observed   int // cold starts observed
}

// Wake tells the loop that requests for target are held until it has replicas: replicas
// is the count those requests need (0 when none are held any more). The count is a
// floor of the target's next decisions, past the rate limits, stabilization and
// cooldown (step [StepWake]), until a later Wake lowers it; and a running loop ([Loop.Run])
// steps at once rather than at its next tick. Wake does not block and is safe for
// concurrent use; middleware.Activator calls it. It fails for an unknown target or a
// negative count.
func (l *Loop) Wake(target string, replicas int) error {
	t, err := l.target(target)
	if err != nil {
		return err
	}
	if replicas < 0 {
		return fmt.Errorf("autoscale: wake %q: negative replicas %d", target, replicas)
	}
	now := l.clock.Now()
	t.mu.Lock()
	raise := replicas > t.cold.demand
	t.cold.demand = replicas
	if replicas > 0 {
		t.cold.lastWake, t.cold.lastActive = now, now
	}
	t.mu.Unlock()
	if raise {
		select {
		case l.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	return nil
}

// SetReady tells the loop how many of target's replicas are ready to serve (from
// EndpointSlices, the balancer pool or the actuator), so that it counts replicas asked
// for but not ready as pending (see [StepPending] and [Decision.Pending]) and measures
// cold starts: the time from a scale-up from zero ready replicas to the first ready
// one (see [Loop.ColdStart]). It is safe for concurrent use.
func (l *Loop) SetReady(target string, ready int) error {
	t, err := l.target(target)
	if err != nil {
		return err
	}
	if ready < 0 {
		return fmt.Errorf("autoscale: ready %q: negative count %d", target, ready)
	}
	now := l.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if ready > 0 && t.cold.ready <= 0 && !t.cold.wokeAt.IsZero() {
		d := max(now.Sub(t.cold.wokeAt), 0)
		if t.cold.observed == 0 {
			t.cold.coldStart = d
		} else {
			t.cold.coldStart = time.Duration(coldStartWeight*float64(d) + (1-coldStartWeight)*float64(t.cold.coldStart))
		}
		t.cold.observed++
		t.cold.wokeAt = time.Time{}
	}
	t.cold.ready = ready
	return nil
}

// ColdStart returns how long target takes from a scale-up from zero to its first ready
// replica: the average of the cold starts the loop observed (see [Loop.SetReady]), else
// the target's [Target.ColdStart]; false when neither is known.
func (l *Loop) ColdStart(target string) (time.Duration, bool) {
	t, err := l.target(target)
	if err != nil {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cold.observed > 0 {
		return t.cold.coldStart, true
	}
	return t.cfg.ColdStart, t.cfg.ColdStart > 0
}

func (l *Loop) target(name string) (*target, error) {
	i, ok := l.byName[name]
	if !ok {
		return nil, fmt.Errorf("autoscale: unknown target %q", name)
	}
	return l.targets[i], nil
}

// noteActivity records, for targets that scale to zero, whether their window shows
// traffic at now. It runs under Loop.stepMu.
func (l *Loop) noteActivity(r Reader, now time.Time) {
	for _, t := range l.targets {
		z := t.cfg.Safety.ScaleToZero
		if z == nil {
			continue
		}
		scope, key := z.Scope, z.Key
		if scope == "" {
			scope = metrics.ScopeRoute
		}
		if key == "" {
			key = t.cfg.Name
		}
		s, ok := r.Snapshot(scope, key, l.tick)
		t.mu.Lock()
		if t.cold.lastActive.IsZero() || ok && (s.Count > 0 || s.InFlight > 0) {
			// The first tick counts as activity, so a (re)started loop waits a full
			// period before scaling to zero.
			t.cold.lastActive = now
		}
		t.mu.Unlock()
	}
}

// coldSteps runs the pending, wake and idle steps on desired (-1 when the safety
// layer had nothing to do). It runs under Loop.stepMu with t.mu held.
func (t *target) coldSteps(now time.Time, current, desired int, add func(string, int, int, string, ...any) int) int {
	c := &t.cold
	if c.demand > 0 && desired < c.demand {
		// The held demand is a floor of the decision: a policy that asks for fewer
		// (even zero, while the replicas woken for the held requests are still
		// starting and report nothing) is raised to it. Without a decision (-1) the
		// count stays, unless it is below the floor.
		want := min(c.demand, t.cfg.Max)
		if want > desired && (desired >= 0 || want > current) {
			from := desired
			if from < 0 {
				from = current
			}
			desired = add(StepWake, from, want, "held requests need %d", c.demand)
		}
	}
	z := t.cfg.Safety.ScaleToZero
	if z == nil || t.cfg.Min > 0 || c.demand > 0 || desired == 0 || current == 0 {
		return desired
	}
	idle := now.Sub(c.lastActive)
	if idle < z.After || (!c.lastWake.IsZero() && now.Sub(c.lastWake) < z.Cooldown) {
		return desired
	}
	from := desired
	if from < 0 {
		from = current
	}
	if from <= 0 {
		return desired
	}
	return add(StepIdle, from, 0, "idle %v (after %v)", idle, z.After)
}

// pendingStep holds a scale-up above current while replicas are pending. It runs with
// t.mu held.
func (t *target) pendingStep(current, desired int, add func(string, int, int, string, ...any) int) int {
	if p := t.pendingLocked(current); p > 0 && desired > current {
		return add(StepPending, desired, current, "%d of %d replicas not ready yet", p, current)
	}
	return desired
}

// pendingLocked is the count of replicas asked for and not ready; 0 when unknown.
func (t *target) pendingLocked(current int) int {
	if t.cold.ready < 0 || current < 0 {
		return 0
	}
	return max(current-t.cold.ready, 0)
}
