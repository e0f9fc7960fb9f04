package autoscale

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// DefaultTolerance is the Kubernetes HPA's tolerance: usage ratios within 10% of 1 do not
// scale.
const DefaultTolerance = 0.1

// Aggregation says how an observed figure relates to the replica count.
type Aggregation int

// The aggregations.
const (
	// Total: the figure is the total across all replicas (the gateway's view of a
	// route). Desired = ceil(total / target). The HPA's AverageValue target.
	Total Aggregation = iota
	// PerReplica: the figure is already an average per replica, or a utilisation.
	// Desired = ceil(current · observed / target). The HPA's Utilization target.
	PerReplica
)

// TargetTrackingConfig configures [TargetTracking].
type TargetTrackingConfig struct {
	// Targets lists the targets the policy scales. Empty means every target of the loop.
	Targets []string
	// Source says which window and figure to read for each target.
	Source Source
	// Span is the part of the window read. Zero means the whole window.
	Span time.Duration
	// Metric, when not nil, replaces Source and Span: it returns the observed figure
	// for a target, or an error (wrap [ErrMissingMetrics]) when there is none.
	Metric func(in *Input, t TargetState) (float64, error)
	// TargetValue is the figure to hold, per replica, more than 0, in the signal's unit
	// (milliseconds for a latency: the number target_tracking.lua's target_value takes).
	TargetValue float64
	// Aggregation says whether the figure is a total or per replica. Zero is [Total].
	Aggregation Aggregation
	// Tolerance: usage ratios within Tolerance of 1 keep the current count. Zero means
	// [DefaultTolerance]; negative means none (the Lua twin's tolerance = 0).
	Tolerance float64
}

// Validate reports every problem with the configuration at once.
func (c TargetTrackingConfig) Validate() error {
	var errs []error
	if !finite(c.TargetValue) || c.TargetValue <= 0 {
		errs = append(errs, fmt.Errorf("target value %v is not > 0", c.TargetValue))
	}
	if !finite(c.Tolerance) || c.Tolerance >= 1 {
		errs = append(errs, fmt.Errorf("tolerance %v is not < 1", c.Tolerance))
	}
	if c.Aggregation != Total && c.Aggregation != PerReplica {
		errs = append(errs, fmt.Errorf("unknown aggregation %d", int(c.Aggregation)))
	}
	if c.Span < 0 {
		errs = append(errs, fmt.Errorf("span %v is negative", c.Span))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: target tracking: %w", ErrInvalidConfig, err)
	}
	return nil
}

// TargetTracking returns the Kubernetes Horizontal Pod Autoscaler's algorithm as a
// policy: desired = ceil(current · observed / target), or ceil(total / target) for a
// [Total], unless the usage ratio is within the tolerance of 1 (1-t <= ratio <= 1+t,
// inclusive at both ends, as the HPA's replica calculator). The HPA's stabilization
// and default behaviour are the loop's safety layer, whose defaults are the HPA's (see
// [Safety]); together they reproduce the HPA.
//
// Targets whose figure is missing get no Scale action, and Decide returns an error
// wrapping [ErrMissingMetrics] naming them, so the loop holds them (or falls back).
// The policy keeps no state and is safe for concurrent use.
//
// See https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details
// and pkg/controller/podautoscaler/replica_calculator.go.
func TargetTracking(cfg TargetTrackingConfig) (Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Tolerance == 0 {
		cfg.Tolerance = DefaultTolerance
	}
	cfg.Tolerance = max(cfg.Tolerance, 0)
	return &targetTracking{cfg: cfg}, nil
}

type targetTracking struct{ cfg TargetTrackingConfig }

func (p *targetTracking) Decide(_ context.Context, in *Input) ([]Action, error) {
	var (
		actions []Action
		errs    []error
	)
	each(in, p.cfg.Targets, func(t TargetState) {
		n, reason, err := p.replicas(in, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %q: %w", t.Name, err))
			return
		}
		actions = append(actions, Scale{Target: t.Name, Replicas: n, Reason: reason})
	})
	if err := errors.Join(errs...); err != nil {
		return actions, fmt.Errorf("autoscale: target tracking: %w", err)
	}
	return actions, nil
}

// HPARecommendation is the HPA's replica calculation on its own: the count for current
// replicas observing observed against target, with tolerance, for the given
// aggregation. current < 0 means unknown. It returns an error wrapping
// [ErrMissingMetrics] when the count cannot be computed (per-replica figures without a
// known, non-zero count).
func HPARecommendation(current int, observed, target, tolerance float64, agg Aggregation) (int, error) {
	if !(target > 0) || !finite(observed) || observed < 0 {
		return 0, fmt.Errorf("%w: observed %v for target %v", ErrMissingMetrics, observed, target)
	}
	switch agg {
	case PerReplica:
		if current <= 0 {
			return 0, fmt.Errorf("%w: per-replica figure with %d replicas", ErrMissingMetrics, current)
		}
		ratio := observed / target
		if withinTolerance(ratio, tolerance) {
			return current, nil
		}
		return clampReplicas(math.Ceil(ratio * float64(current))), nil
	default:
		if current > 0 {
			ratio := observed / (target * float64(current))
			if withinTolerance(ratio, tolerance) {
				return current, nil
			}
		}
		return clampReplicas(math.Ceil(observed / target)), nil
	}
}

// withinTolerance is the HPA's tolerance band, inclusive at both ends: 1-t <= ratio <=
// 1+t (replica_calculator.go's Tolerances.isWithin), so a ratio of exactly 1.1 holds
// with the default tolerance, where |1-ratio| <= t would not in floating point.
func withinTolerance(ratio, t float64) bool {
	return 1-t <= ratio && ratio <= 1+t
}

func (p *targetTracking) replicas(in *Input, t TargetState) (int, string, error) {
	var (
		v   float64
		err error
	)
	if p.cfg.Metric != nil {
		v, err = p.cfg.Metric(in, t)
	} else {
		v, err = p.cfg.Source.read(in, t.Name, p.cfg.Span)
	}
	if err != nil {
		return 0, "", err
	}
	n, err := HPARecommendation(t.Replicas, v, p.cfg.TargetValue, p.cfg.Tolerance, p.cfg.Aggregation)
	if err != nil {
		return 0, "", err
	}
	per := "in total"
	if p.cfg.Aggregation == PerReplica {
		per = "per replica"
	}
	return n, fmt.Sprintf("target tracking: observed %.4g %s, target %.4g per replica", v, per, p.cfg.TargetValue), nil
}

func clampReplicas(f float64) int {
	if !(f >= 0) {
		return 0
	}
	if f > MaxReplicas {
		return MaxReplicas
	}
	return int(f)
}

// each calls f for the named targets of in (every target when names is empty), in
// order; names not in the input are skipped.
func each(in *Input, names []string, f func(TargetState)) {
	if len(names) == 0 {
		for _, t := range in.Targets {
			f(t)
		}
		return
	}
	for _, n := range names {
		if t, ok := in.Target(n); ok {
			f(t)
		}
	}
}
