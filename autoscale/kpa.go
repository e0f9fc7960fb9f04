package autoscale

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Knative Pod Autoscaler defaults (knative.dev/serving config-autoscaler).
const (
	DefaultKPATargetUtilization = 0.7
	DefaultKPAStableWindow      = 60 * time.Second
	DefaultKPAPanicWindow       = 6 * time.Second
	DefaultKPAPanicThreshold    = 2.0
	DefaultKPAMaxScaleUpRate    = 1000.0
	DefaultKPAMaxScaleDownRate  = 2.0
	DefaultKPAScaleToZeroGrace  = 30 * time.Second
)

// KPAConfig configures [KPA]. The zero value of each field but TargetValue means
// Knative's default.
type KPAConfig struct {
	// Targets lists the targets the policy scales. Empty means every target of the loop.
	Targets []string
	// Source says which window and figure to read: a total across replicas, by default
	// the route's time-weighted concurrency.
	Source Source
	// Metric, when not nil, replaces Source: it returns the observed total over the
	// given window (StableWindow or PanicWindow) for a target, or an error (wrap
	// [ErrMissingMetrics]) when there is none.
	Metric func(in *Input, t TargetState, window time.Duration) (float64, error)
	// TargetValue is the figure one replica should carry at full utilisation (Knative's
	// container-concurrency-target-default is 100), more than 0, in the signal's unit
	// (milliseconds for a latency: the number kpa.lua's target_value takes).
	TargetValue float64
	// TargetUtilization is the fraction of TargetValue to aim at, in (0, 1]. Zero means
	// [DefaultKPATargetUtilization].
	TargetUtilization float64
	// StableWindow and PanicWindow are the spans averaged, PanicWindow <= StableWindow.
	// Zero means [DefaultKPAStableWindow] and [DefaultKPAPanicWindow].
	StableWindow, PanicWindow time.Duration
	// PanicThreshold is the ratio of panic-window demand to ready replicas that starts
	// panic mode, more than 1. Zero means [DefaultKPAPanicThreshold].
	PanicThreshold float64
	// MaxScaleUpRate and MaxScaleDownRate bound one decision to ready·up and
	// ready/down, more than 1. Zero means the defaults.
	MaxScaleUpRate, MaxScaleDownRate float64
	// ScaleToZeroGrace is how long demand must have been zero before the policy asks
	// for zero replicas. Zero means [DefaultKPAScaleToZeroGrace] (the Lua twin's
	// scale_to_zero_grace = 0 means at once); negative disables scaling to zero (the
	// policy never asks for fewer than one replica).
	ScaleToZeroGrace time.Duration
}

// Validate reports every problem with the configuration at once.
func (c KPAConfig) Validate() error {
	var errs []error
	if !finite(c.TargetValue) || c.TargetValue <= 0 {
		errs = append(errs, fmt.Errorf("target value %v is not > 0", c.TargetValue))
	}
	if !finite(c.TargetUtilization) || c.TargetUtilization < 0 || c.TargetUtilization > 1 {
		errs = append(errs, fmt.Errorf("target utilization %v out of (0, 1]", c.TargetUtilization))
	}
	if c.StableWindow < 0 || c.PanicWindow < 0 {
		errs = append(errs, errors.New("negative window"))
	}
	sw, pw := cmpOr(c.StableWindow, DefaultKPAStableWindow), cmpOr(c.PanicWindow, DefaultKPAPanicWindow)
	if pw > sw {
		errs = append(errs, fmt.Errorf("panic window %v longer than stable window %v", pw, sw))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"panic threshold", c.PanicThreshold}, {"max scale-up rate", c.MaxScaleUpRate}, {"max scale-down rate", c.MaxScaleDownRate}} {
		if !finite(f.v) || (f.v != 0 && f.v <= 1) || f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is not > 1", f.name, f.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: kpa: %w", ErrInvalidConfig, err)
	}
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// KPA returns the Knative Pod Autoscaler's algorithm as a policy: the desired count is
// ceil(observed / (target · utilisation)) over a stable window, bounded by the maximum
// scale-up and scale-down rates; when demand over the short panic window reaches the
// panic threshold times the ready replicas, it panics: it takes the larger of the
// stable and panic counts and never scales down, until the stable window has passed
// without reaching the threshold. It asks for zero only after demand has been zero for
// the scale-to-zero grace period.
//
// While it panics its Scale actions carry Panic, so the loop does not scale down either.
// Give its targets Safety{ScaleUp: &Rules{}, ScaleDown: &Rules{}} to let the KPA's own
// windows and rates govern, as in Knative.
//
// The policy keeps state per target (panic start, panic high-water mark, last demand):
// use one value per loop. It is not safe for concurrent use; the loop calls it from one
// goroutine at a time.
//
// See knative.dev/serving pkg/autoscaler/scaling/autoscaler.go and
// https://knative.dev/docs/serving/autoscaling/kpa-specific/.
func KPA(cfg KPAConfig) (Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.TargetUtilization = cmpOr(cfg.TargetUtilization, DefaultKPATargetUtilization)
	cfg.StableWindow = cmpOr(cfg.StableWindow, DefaultKPAStableWindow)
	cfg.PanicWindow = cmpOr(cfg.PanicWindow, DefaultKPAPanicWindow)
	cfg.PanicThreshold = cmpOr(cfg.PanicThreshold, DefaultKPAPanicThreshold)
	cfg.MaxScaleUpRate = cmpOr(cfg.MaxScaleUpRate, DefaultKPAMaxScaleUpRate)
	cfg.MaxScaleDownRate = cmpOr(cfg.MaxScaleDownRate, DefaultKPAMaxScaleDownRate)
	cfg.ScaleToZeroGrace = cmpOr(cfg.ScaleToZeroGrace, DefaultKPAScaleToZeroGrace)
	return &kpa{cfg: cfg, state: map[string]*kpaState{}}, nil
}

type kpa struct {
	cfg   KPAConfig
	state map[string]*kpaState
}

type kpaState struct {
	panicTime    time.Time // zero when not panicking
	maxPanicPods int
	lastActive   time.Time // last time demand was above zero
}

// kpaResult is one KPA decision.
type kpaResult struct {
	Replicas      int
	Stable, Panic int // the stable and panic window counts, after the rate bounds
	Panicking     bool
}

func (p *kpa) Decide(_ context.Context, in *Input) ([]Action, error) {
	var (
		actions []Action
		errs    []error
	)
	each(in, p.cfg.Targets, func(t TargetState) {
		stable, panicV, err := p.observe(in, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %q: %w", t.Name, err))
			return
		}
		st := p.state[t.Name]
		if st == nil {
			st = &kpaState{}
			p.state[t.Name] = st
		}
		r := st.scale(&p.cfg, in.Now, t.Replicas, stable, panicV)
		mode := "stable"
		if r.Panicking {
			mode = "panic"
		}
		actions = append(actions, Scale{
			Target: t.Name, Replicas: r.Replicas, Panic: r.Panicking,
			Reason: fmt.Sprintf("kpa %s: observed in total, stable %.4g → %d replicas, panic %.4g → %d; target %.4g per replica",
				mode, stable, r.Stable, panicV, r.Panic, p.cfg.TargetValue),
		})
	})
	if err := errors.Join(errs...); err != nil {
		return actions, fmt.Errorf("autoscale: kpa: %w", err)
	}
	return actions, nil
}

func (p *kpa) observe(in *Input, t TargetState) (stable, panicV float64, err error) {
	read := func(w time.Duration) (float64, error) {
		if p.cfg.Metric != nil {
			return p.cfg.Metric(in, t, w)
		}
		return p.cfg.Source.read(in, t.Name, w)
	}
	if stable, err = read(p.cfg.StableWindow); err != nil {
		return 0, 0, err
	}
	if panicV, err = read(p.cfg.PanicWindow); err != nil {
		return 0, 0, err
	}
	if !finite(stable) || !finite(panicV) || stable < 0 || panicV < 0 {
		return 0, 0, fmt.Errorf("%w: observed %v and %v", ErrMissingMetrics, stable, panicV)
	}
	return stable, panicV, nil
}

// scale is Knative's Autoscaler.Scale for one target with ready replicas observing the
// given stable and panic totals at now.
func (st *kpaState) scale(cfg *KPAConfig, now time.Time, ready int, stable, panicV float64) kpaResult {
	readyF := math.Max(1, float64(ready))
	maxUp := math.Ceil(cfg.MaxScaleUpRate * readyF)
	maxDown := math.Floor(readyF / cfg.MaxScaleDownRate)
	target := cfg.TargetValue * cfg.TargetUtilization

	dspc := math.Ceil(stable / target)
	dppc := math.Ceil(panicV / target)
	desiredStable := int(math.Min(math.Max(dspc, maxDown), maxUp))
	desiredPanic := int(math.Min(math.Max(dppc, maxDown), maxUp))

	over := dppc/readyF >= cfg.PanicThreshold
	switch {
	case st.panicTime.IsZero() && over:
		st.panicTime = now // begin panicking
	case over:
		st.panicTime = now // extend the panic
	case !st.panicTime.IsZero() && st.panicTime.Add(cfg.StableWindow).Before(now):
		st.panicTime, st.maxPanicPods = time.Time{}, 0 // the surge reached the stable window
	}

	desired := desiredStable
	if !st.panicTime.IsZero() {
		desired = max(desired, desiredPanic)
		// No scale-down while panicking.
		st.maxPanicPods = max(st.maxPanicPods, desired)
		desired = st.maxPanicPods
	}

	// Scale to zero only after the grace period without demand.
	if stable > 0 || panicV > 0 || st.lastActive.IsZero() {
		st.lastActive = now
	}
	if desired == 0 && ready > 0 && (cfg.ScaleToZeroGrace < 0 || now.Sub(st.lastActive) < cfg.ScaleToZeroGrace) {
		desired = 1
	}
	return kpaResult{
		Replicas: clampReplicas(float64(desired)), Stable: desiredStable, Panic: desiredPanic,
		Panicking: !st.panicTime.IsZero(),
	}
}
