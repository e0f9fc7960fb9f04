package autoscale

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
)

// ErrInvalidConfig is returned (wrapped) by [NewLoop] and the Validate methods of the
// loop's settings.
var ErrInvalidConfig = errors.New("autoscale: invalid config")

// Target is a scalable thing the loop manages: its name, its bounds, the actuator that
// scales it and the safety settings of its Scale actions.
type Target struct {
	// Name is the key policies, decisions and metrics use, e.g. "checkout". Required and
	// unique within a loop.
	Name string
	// Ref is what the actuator is asked to scale. Its zero value means
	// actuator.Target{Name: Name}; an empty Ref.Name is filled with Name.
	Ref actuator.Target
	// Min and Max bound the replica count: 0 <= Min <= Max, 1 <= Max <= [MaxReplicas].
	// Min 0 allows scaling to zero.
	Min, Max int
	// Actuator scales the target. Nil means the loop's default, set with
	// [WithDefaultActuator]; it is an error if there is none. When the actuator is also an
	// [actuator.ReplicaReader], the loop reads the current count back every tick.
	Actuator actuator.Actuator
	// Safety holds the settings of the safety layer for this target. Its zero value has
	// the Kubernetes HPA's default behaviour; see [Safety].
	Safety Safety
	// ColdStart is the expected time from a scale-up from zero to the first ready
	// replica, 0..1h, until the loop has observed one (see [Loop.ColdStart]); zero
	// means unknown.
	ColdStart time.Duration
}

func (t Target) ref() actuator.Target {
	r := t.Ref
	if r.Name == "" {
		r.Name = t.Name
	}
	return r
}

// Validate reports every problem with the target at once. A nil Actuator is not a
// problem here: the loop checks that it has a default.
func (t Target) Validate() error {
	var errs []error
	if t.Name == "" {
		errs = append(errs, errors.New("empty target name"))
	}
	if err := t.ref().Validate(); err != nil && t.Name != "" {
		errs = append(errs, err)
	}
	if t.Min < 0 {
		errs = append(errs, fmt.Errorf("min %d is negative", t.Min))
	}
	if t.Max < 1 || t.Max > MaxReplicas {
		errs = append(errs, fmt.Errorf("max %d out of [1, %d]", t.Max, MaxReplicas))
	}
	if t.Min > t.Max {
		errs = append(errs, fmt.Errorf("min %d above max %d", t.Min, t.Max))
	}
	if err := t.Safety.Validate(); err != nil {
		errs = append(errs, err)
	}
	if t.ColdStart < 0 || t.ColdStart > time.Hour {
		errs = append(errs, fmt.Errorf("cold start %v out of [0, 1h]", t.ColdStart))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: target %q: %w", ErrInvalidConfig, t.Name, err)
	}
	return nil
}

// Safety configures the safety layer that every Scale action for a target passes
// through, in this order (each step is written into the [Decision]):
//
//  1. fallback: when the policy failed, its Scale action was invalid, or it returned
//     [ErrMissingMetrics], hold the current count, or after Fallback.FailureThreshold
//     consecutive failures use Fallback.Replicas (KEDA's ScaledObject fallback);
//  2. min/max: clamp to the target's bounds; a current count outside them goes to
//     the bound at once and skips steps 3 to 8 (the HPA's first rule, before
//     stabilization and rate limits);
//  3. tolerance: ignore changes within a band around the current count;
//  4. stabilization: up takes the minimum recommendation over the up window, down the
//     maximum over the down window (the HPA's behaviour);
//  5. panic: no scale-down while the policy declares panic ([Scale.Panic]);
//  6. pending: no scale-up while replicas asked for are not ready yet (see
//     [Loop.SetReady]): they report no metrics, and the policy would ask again;
//  7. rate: the step limits of ScaleUp and ScaleDown (the HPA's behaviour policies);
//  8. cooldown: no change within Cooldown of the last one;
//  9. wake: at least the count that requests held for a cold start need ([Loop.Wake]);
//  10. idle: zero after ScaleToZero.After without requests ([ScaleToZero]).
//
// The zero value has the HPA's defaults: no tolerance band on replicas (the HPA's 0.1
// tolerance applies to the metric ratio, in [TargetTracking]), up without stabilization
// and at most max(4 pods, 100%) per 15 s, down after 300 s of stabilization and at most
// 100% per 15 s, no cooldown, hold on failure.
//
// See https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#configurable-scaling-behavior.
type Safety struct {
	// Tolerance is a fraction of the current count, 0..1: a desired count d with
	// |d-current| <= Tolerance*current is held at current. Zero disables the band.
	Tolerance float64
	// ScaleUp limits increases. Nil means [DefaultScaleUp]; &Rules{} means no limit and
	// no stabilization.
	ScaleUp *Rules
	// ScaleDown limits decreases. Nil means [DefaultScaleDown]; &Rules{} means no limit
	// and no stabilization.
	ScaleDown *Rules
	// Cooldown is the least time between two changes the loop applies, 0..24h. Zero
	// disables it.
	Cooldown time.Duration
	// Fallback, when not nil, replaces hold with a fixed count after repeated failures.
	Fallback *Fallback
	// ScaleToZero, when not nil and the target's Min is 0, scales the target to zero
	// after a period without requests, whatever the policy asks (step [StepIdle]).
	ScaleToZero *ScaleToZero
}

// Fallback is KEDA's fallback: after FailureThreshold consecutive ticks on which the
// policy could not decide for a target, the loop asks for Replicas (still clamped to
// the target's bounds and rate-limited). See
// https://keda.sh/docs/latest/reference/scaledobject-spec/#fallback.
type Fallback struct {
	// FailureThreshold is the number of consecutive failures before the fallback is
	// used, at least 1.
	FailureThreshold int
	// Replicas is the fallback count, 0..MaxReplicas.
	Replicas int
}

// Validate reports every problem with the settings at once.
func (s Safety) Validate() error {
	var errs []error
	if !finite(s.Tolerance) || s.Tolerance < 0 || s.Tolerance > 1 {
		errs = append(errs, fmt.Errorf("tolerance %v out of [0, 1]", s.Tolerance))
	}
	if s.Cooldown < 0 || s.Cooldown > 24*time.Hour {
		errs = append(errs, fmt.Errorf("cooldown %v out of [0, 24h]", s.Cooldown))
	}
	if s.ScaleUp != nil {
		if err := s.ScaleUp.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("scale up: %w", err))
		}
	}
	if s.ScaleDown != nil {
		if err := s.ScaleDown.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("scale down: %w", err))
		}
	}
	if z := s.ScaleToZero; z != nil {
		if err := z.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if f := s.Fallback; f != nil {
		if f.FailureThreshold < 1 {
			errs = append(errs, fmt.Errorf("fallback failure threshold %d is below 1", f.FailureThreshold))
		}
		if f.Replicas < 0 || f.Replicas > MaxReplicas {
			errs = append(errs, fmt.Errorf("fallback replicas %d out of [0, %d]", f.Replicas, MaxReplicas))
		}
	}
	return errors.Join(errs...)
}

// Select chooses among the rate policies of a [Rules], as the HPA's selectPolicy does.
type Select int

// The selections. The zero value is SelectMax.
const (
	// SelectMax allows the largest change any policy allows.
	SelectMax Select = iota
	// SelectMin allows the smallest change any policy allows.
	SelectMin
	// SelectDisabled forbids changes in this direction.
	SelectDisabled
)

// String returns "max", "min" or "disabled".
func (s Select) String() string {
	switch s {
	case SelectMax:
		return "max"
	case SelectMin:
		return "min"
	case SelectDisabled:
		return "disabled"
	}
	return fmt.Sprintf("Select(%d)", int(s))
}

// RateKind says how a [RatePolicy] counts.
type RateKind int

// The kinds of rate policy.
const (
	// Pods limits the change to Value replicas per period.
	Pods RateKind = iota
	// Percent limits the change to Value percent of the count at the period's start.
	Percent
)

// String returns "pods" or "percent".
func (k RateKind) String() string {
	switch k {
	case Pods:
		return "pods"
	case Percent:
		return "percent"
	}
	return fmt.Sprintf("RateKind(%d)", int(k))
}

// RatePolicy limits how much the count may change within a sliding period.
type RatePolicy struct {
	Kind RateKind
	// Value is the number of replicas or the percentage, at least 1.
	Value int
	// Period is the sliding window the change is counted over, 1 s..30 min.
	Period time.Duration
}

// Rules limit one direction of change: the HPA's HPAScalingRules.
type Rules struct {
	// StabilizationWindow is how far back recommendations are considered, 0..1h. Zero
	// disables stabilization.
	StabilizationWindow time.Duration
	// Policies limit the rate of change; none means no limit.
	Policies []RatePolicy
	// Select chooses among Policies. Zero is [SelectMax].
	Select Select
}

// Validate reports every problem with the rules at once.
func (r *Rules) Validate() error {
	var errs []error
	if r.StabilizationWindow < 0 || r.StabilizationWindow > time.Hour {
		errs = append(errs, fmt.Errorf("stabilization window %v out of [0, 1h]", r.StabilizationWindow))
	}
	if r.Select < SelectMax || r.Select > SelectDisabled {
		errs = append(errs, fmt.Errorf("unknown select %d", int(r.Select)))
	}
	for i, p := range r.Policies {
		if p.Kind != Pods && p.Kind != Percent {
			errs = append(errs, fmt.Errorf("policy %d: unknown kind %d", i, int(p.Kind)))
		}
		if p.Value < 1 {
			errs = append(errs, fmt.Errorf("policy %d: value %d is below 1", i, p.Value))
		}
		if p.Period < time.Second || p.Period > 30*time.Minute {
			errs = append(errs, fmt.Errorf("policy %d: period %v out of [1s, 30m]", i, p.Period))
		}
	}
	return errors.Join(errs...)
}

// DefaultScaleUp returns the HPA's default scale-up rules: no stabilization; at most
// the larger of 4 pods and 100% per 15 s.
func DefaultScaleUp() *Rules {
	return &Rules{
		Policies: []RatePolicy{
			{Kind: Percent, Value: 100, Period: 15 * time.Second},
			{Kind: Pods, Value: 4, Period: 15 * time.Second},
		},
		Select: SelectMax,
	}
}

// DefaultScaleDown returns the HPA's default scale-down rules: 300 s of stabilization;
// at most 100% per 15 s.
func DefaultScaleDown() *Rules {
	return &Rules{
		StabilizationWindow: 300 * time.Second,
		Policies:            []RatePolicy{{Kind: Percent, Value: 100, Period: 15 * time.Second}},
		Select:              SelectMax,
	}
}

func maxInt(a, b int) int { return max(a, b) }
func minInt(a, b int) int { return min(a, b) }

// limit is the scale-up (up) or scale-down limit, as the HPA computes them
// (pkg/controller/podautoscaler/horizontal.go, calculateScaleUpLimitWithScalingRules
// and calculateScaleDownLimitWithBehaviors). The two differ in direction only: a
// policy moves from the count at its period's start by its Pods or Percent (rounded
// up going up, down going down), SelectMax takes the loosest limit and SelectMin the
// tightest.
func (r *Rules) limit(periodStart func(time.Duration) int, current int, up bool) int {
	if r.Select == SelectDisabled {
		return current
	}
	loosest, tightest := maxInt, minInt
	noLimit, noneYet := math.MaxInt, math.MinInt
	if !up {
		loosest, tightest = minInt, maxInt
		noLimit, noneYet = math.MinInt, math.MaxInt
	}
	if len(r.Policies) == 0 {
		return noLimit
	}
	combine, result := loosest, noneYet
	if r.Select == SelectMin {
		combine, result = tightest, noLimit
	}
	for _, p := range r.Policies {
		start := periodStart(p.Period)
		var proposed int
		switch {
		case p.Kind == Pods && up:
			proposed = start + p.Value
		case p.Kind == Pods:
			proposed = start - p.Value
		case up:
			proposed = int(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		default:
			proposed = int(float64(start) * (1 - float64(p.Value)/100))
		}
		result = combine(result, proposed)
	}
	return result
}
