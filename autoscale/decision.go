package autoscale

import (
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Direction is the sense of a decision's change.
type Direction string

// The directions.
const (
	Up   Direction = "up"
	Down Direction = "down"
	None Direction = "none"
)

// Why a decision was or was not applied ([Decision.Why]).
const (
	WhyApplied    = "applied"     // sent to the actuator
	WhyUnchanged  = "unchanged"   // the final count is the current count
	WhyInFlight   = "in-flight"   // the same count is already being applied
	WhyDryRun     = "dry-run"     // the loop runs in dry-run mode
	WhyNotLeader  = "not-leader"  // the elector says this replica does not lead
	WhyNoActuator = "no-actuator" // the target has no actuator
)

// Safety step names ([SafetyStep.Name]).
const (
	StepFallback      = "fallback"
	StepHold          = "hold"
	StepMin           = "min"
	StepMax           = "max"
	StepTolerance     = "tolerance"
	StepStabilizeUp   = "stabilize-up"
	StepStabilizeDown = "stabilize-down"
	StepPanic         = "panic"
	StepRateUp        = "rate-up"
	StepRateDown      = "rate-down"
	StepCooldown      = "cooldown"
)

// SafetyStep is one step of the safety layer on one decision.
type SafetyStep struct {
	// Name is one of the Step* constants.
	Name string
	// Before and After are the desired count entering and leaving the step.
	Before, After int
	// Note explains the step's figure, e.g. "limit 8 = max(pods 4, percent 100) per 15s".
	Note string
}

// Clamped reports whether the step changed the count.
func (s SafetyStep) Clamped() bool { return s.Before != s.After }

// PolicyOutput is what the policy asked for one target on one tick.
type PolicyOutput struct {
	// Present is false when the policy returned no Scale action for the target.
	Present bool
	// Replicas is the count asked for (the largest, when several Scale actions named
	// the target).
	Replicas int
	Reason   string
	Panic    bool
	// Err is the policy's failure for this target, "" when none: its error, or the
	// reason its Scale action was invalid.
	Err string
}

// ActuationResult is the outcome of an actuator call made for a decision.
type ActuationResult struct {
	// Done is false while the call is pending or running.
	Done bool
	// Err is the final error text, "" on success.
	Err string
	// Attempts is the number of calls made, retries included.
	Attempts int
	// Superseded is true when a newer decision replaced this one before it succeeded.
	Superseded bool
	// Duration is the time from dispatch to the end of the last attempt.
	Duration time.Duration
}

// ShadowOutput is what a shadow policy asked for a target, beside the live policy.
type ShadowOutput struct {
	// Policy is the name the shadow was registered with.
	Policy string
	// Output is its ask for the target.
	Output PolicyOutput
	// Differs reports whether it asked for something other than the live policy
	// (presence, replicas or panic).
	Differs bool
}

// Decision is the record of what the loop decided for one target on one tick, and why.
// Decisions are values; the slices they hold are shared and must not be modified.
type Decision struct {
	// ID is unique per decision and is the actuator request's DecisionID.
	ID string
	// Target is the target's name.
	Target string
	// Time is the tick's time.
	Time time.Time
	// Current is the count the loop knew at the tick (-1 when unknown); Min and Max its
	// bounds.
	Current, Min, Max int
	// Inputs are the key reads the live policy made on this tick, up to
	// max([MaxRecordedReads], 2 × the loop's targets) (shared by the tick's decisions); ScopeInputs its whole-scope
	// reads, each recorded by its scope, span and window count, not its figures; and
	// InputsDropped the key reads beyond the limit. See [Tick.Input] for the whole
	// view.
	Inputs        []Read
	ScopeInputs   []ScopeRead
	InputsDropped int
	// Sources are the sources the tick's windows were merged from, when the reader is
	// a [SourceReader] (shared by the tick's decisions); nil otherwise.
	Sources []string
	// Policy is the live policy's output for the target.
	Policy PolicyOutput
	// Steps are the safety steps that ran, in order.
	Steps []SafetyStep
	// Desired is the final count after the safety layer.
	Desired int
	// Ready is the count of ready replicas at the tick (-1 when nobody reports it, see
	// [Loop.SetReady]); Pending, those asked for and not ready; Held, the count that
	// requests held for a cold start need ([Loop.Wake]).
	Ready, Pending, Held int
	// Direction compares Desired with Current.
	Direction Direction
	// Applied reports whether the decision was sent to the actuator; Why says why or
	// why not (one of the Why* constants).
	Applied bool
	Why     string
	// Actuation is the actuator's result; it is filled in asynchronously, so read it
	// from [Loop.Decisions] or [Loop.Decision] after the call has ended.
	Actuation ActuationResult
	// Shadows are the shadow policies' outputs for the target.
	Shadows []ShadowOutput
	// Duration is how long the tick took up to this decision.
	Duration time.Duration
}

// Read is one key read a policy made of a tick's [Snapshot]: the first read of the
// triple, with the figure every read of it returned that tick.
type Read struct {
	Scope metrics.Scope
	Key   string
	Span  time.Duration
	// Found is false when there was no such window.
	Found    bool
	Snapshot metrics.Snapshot
}

// ActionResult is the outcome of an action other than Scale on one tick.
type ActionResult struct {
	Action Action
	// Applied reports whether the applier was called and succeeded.
	Applied bool
	// Why is [WhyApplied], [WhyDryRun], [WhyInvalid], [WhyNoApplier] or [WhyError].
	Why string
	// Err is the validation or applier error text, "" when none.
	Err string
}

// ShadowResult is the outcome of one shadow policy on one tick.
type ShadowResult struct {
	Policy   string
	Err      string
	Duration time.Duration
	// Actions are the shadow's actions, not applied.
	Actions []Action
	// Differences counts the targets for which it differs from the live policy.
	Differences int
}

// Tick is everything one [Loop.Step] did.
type Tick struct {
	Time time.Time
	// Duration is the step's duration; PolicyDuration the live policy's share.
	Duration, PolicyDuration time.Duration
	// PolicyErr is the live policy's error text, "" when none.
	PolicyErr string
	// Leader and DryRun are the gates as they were at the tick.
	Leader, DryRun bool
	// Term is the elector's fencing token at the tick, when it leads and the
	// elector is a [Fencer]; 0 otherwise.
	Term uint64
	// Decisions holds one decision per target, sorted by target name.
	Decisions []Decision
	// Actions holds the outcome of every other action, in the policy's order.
	Actions []ActionResult
	// Shadows holds one result per shadow policy, in registration order.
	Shadows []ShadowResult
	// Inputs, ScopeInputs and InputsDropped are the live policy's reads (see
	// [Decision.Inputs]).
	Inputs        []Read
	ScopeInputs   []ScopeRead
	InputsDropped int
	// Input is what the policies saw, its Metrics frozen when the step ended: keep it
	// (or its JSON) to replay the tick against another policy (package
	// autoscale/simulate). The loop's history does not keep it.
	Input *Input
	// Sources are the sources the windows were merged from (see [SourceReader]).
	Sources []string
}

// ring is a bounded history of decisions. It is safe for concurrent use.
type ring struct {
	mu    sync.Mutex
	buf   []Decision
	next  int
	count int
}

func newRing(n int) *ring { return &ring{buf: make([]Decision, n)} }

func (r *ring) add(d Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = d
	r.next = (r.next + 1) % len(r.buf)
	r.count = min(r.count+1, len(r.buf))
}

// update applies f to the decision with id, searching from the newest.
func (r *ring) update(id string, f func(*Decision)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i <= r.count; i++ {
		j := (r.next - i + len(r.buf)) % len(r.buf)
		if r.buf[j].ID == id {
			f(&r.buf[j])
			return true
		}
	}
	return false
}

func (r *ring) get(id string) (Decision, bool) {
	var out Decision
	ok := r.update(id, func(d *Decision) { out = *d })
	return out, ok
}

func (r *ring) all() []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Decision, 0, r.count)
	for i := r.count; i >= 1; i-- {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}
