package autoscale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Knative Pod Autoscaler defaults (knative.dev/serving config-autoscaler).
const (
	DefaultKPATargetUtilization   = 0.7
	DefaultKPAStableWindow        = 60 * time.Second
	DefaultKPAPanicWindow         = 6 * time.Second
	DefaultKPAPanicThreshold      = 2.0
	DefaultKPAMaxScaleUpRate      = 1000.0
	DefaultKPAMaxScaleDownRate    = 2.0
	DefaultKPATargetBurstCapacity = 211.0
)

// KPADelayGranularity is the bucket width of [KPAConfig.ScaleDownDelay]: Knative's
// autoscaler tick.
const KPADelayGranularity = 2 * time.Second

// KPAConfig configures [KPA]. The zero value of each field but TargetValue means
// Knative's default; for the settings Knative's decider leaves off by default
// (ActivationScale, ScaleDownDelay, ScaleToZeroGrace) it means off.
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
	// TargetValue is the figure one replica carries at full utilisation (Knative's
	// container-concurrency-target-default is 100; its decider's TotalValue), more
	// than 0, in the signal's unit (milliseconds for a latency: the number kpa.lua's
	// target_value takes).
	TargetValue float64
	// TargetUtilization is the fraction of TargetValue to aim at, in (0, 1]: the
	// decider's TargetValue is TargetValue·TargetUtilization. Zero means
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
	// ActivationScale is the least count asked for while there is any demand
	// (Knative's activation-scale), 0..MaxReplicas. 0 and 1 mean none.
	ActivationScale int
	// TargetBurstCapacity is the demand, beyond the panic window's, the ready replicas
	// should absorb at once (Knative's target-burst-capacity), in the signal's unit.
	// Each decision reports the excess burst capacity, floor(ready·TargetValue -
	// TargetBurstCapacity - panic demand): negative means the replicas cannot absorb
	// such a burst. Nil means [DefaultKPATargetBurstCapacity]; 0 reports an excess of 0
	// (none is kept); a negative value means unlimited and reports -1.
	TargetBurstCapacity *float64
	// ScaleDownDelay is how long a decrease waits (Knative's scale-down-delay): the
	// count is the largest the decider reached within the delay, in buckets of
	// [KPADelayGranularity]. Zero means none; at most 1 h. It does not apply to
	// Unreachable targets.
	ScaleDownDelay time.Duration
	// Unreachable names the targets that receive no traffic (Knative's reachable =
	// false: a revision no route points at). For them the scale-down rate does not
	// bind and ScaleDownDelay is skipped, so they drop at once to what demand needs.
	Unreachable []string
	// ScaleToZeroGrace is a layer on top of the decider, which asks for zero as soon as
	// its counts are zero: while demand has been zero for less than the grace, a
	// target with replicas is kept at one. Zero means no grace (the decider's
	// behaviour, and kpa.lua's when scale_to_zero_grace is absent or 0); negative never
	// asks for zero (the policy keeps at least one replica).
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
	sw, pw := cmp.Or(c.StableWindow, DefaultKPAStableWindow), cmp.Or(c.PanicWindow, DefaultKPAPanicWindow)
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
	if c.ActivationScale < 0 || c.ActivationScale > MaxReplicas {
		errs = append(errs, fmt.Errorf("activation scale %d out of [0, %d]", c.ActivationScale, MaxReplicas))
	}
	if b := c.TargetBurstCapacity; b != nil && !finite(*b) {
		errs = append(errs, fmt.Errorf("target burst capacity %v is not finite", *b))
	}
	if c.ScaleDownDelay < 0 || c.ScaleDownDelay > time.Hour {
		errs = append(errs, fmt.Errorf("scale-down delay %v out of [0, 1h]", c.ScaleDownDelay))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: kpa: %w", ErrInvalidConfig, err)
	}
	return nil
}

// KPA returns Knative's KPA decider (knative.dev/serving pkg/autoscaler/scaling,
// autoscaler.go) as a policy, tick for tick: with ready = max(1, replicas), the
// stable and panic counts are ceil(observed / (TargetValue·TargetUtilization)) over
// the stable and panic windows, bounded to [floor(ready / MaxScaleDownRate),
// ceil(ready · MaxScaleUpRate)] (the lower bound is 0 for an Unreachable target) and
// raised to ActivationScale while there is demand. When the panic count reaches
// PanicThreshold times ready, it panics: it takes the larger of the two counts and
// never goes below the highest count of the panic, until a whole stable window has
// passed without reaching the threshold. A target first seen with more than one
// replica starts in panic (Knative's decider is constructed so, to keep the scale
// until it has seen a stable window of data). ScaleDownDelay, when set, then holds
// the largest count of the delay. The decision reports the excess burst capacity in
// its reason. On top of the decider, ScaleToZeroGrace, when set, keeps one replica
// until demand has been zero for the grace.
//
// A target whose count is unknown (Replicas -1) gets no Scale action and no error:
// Knative's decision is invalid when it cannot count the pods, and the scale stays.
// A target without metrics gets no action and an error wrapping [ErrMissingMetrics].
//
// While it panics its Scale actions carry Panic, so the loop does not scale down either.
// Give its targets Safety{ScaleUp: &Rules{}, ScaleDown: &Rules{}} to let the KPA's own
// windows and rates govern, as in Knative.
//
// The policy keeps state per target (panic start, panic high-water mark, delay window,
// last demand): use one value per loop. It is not safe for concurrent use; the loop
// calls it from one goroutine at a time.
//
// See https://knative.dev/docs/serving/autoscaling/kpa-specific/.
func KPA(cfg KPAConfig) (Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.TargetUtilization = cmp.Or(cfg.TargetUtilization, DefaultKPATargetUtilization)
	cfg.StableWindow = cmp.Or(cfg.StableWindow, DefaultKPAStableWindow)
	cfg.PanicWindow = cmp.Or(cfg.PanicWindow, DefaultKPAPanicWindow)
	cfg.PanicThreshold = cmp.Or(cfg.PanicThreshold, DefaultKPAPanicThreshold)
	cfg.MaxScaleUpRate = cmp.Or(cfg.MaxScaleUpRate, DefaultKPAMaxScaleUpRate)
	cfg.MaxScaleDownRate = cmp.Or(cfg.MaxScaleDownRate, DefaultKPAMaxScaleDownRate)
	p := &kpa{cfg: cfg, tbc: DefaultKPATargetBurstCapacity, state: map[string]*kpaState{}, unreachable: map[string]bool{}}
	if cfg.TargetBurstCapacity != nil {
		p.tbc = *cfg.TargetBurstCapacity
	}
	for _, n := range cfg.Unreachable {
		p.unreachable[n] = true
	}
	return p, nil
}

type kpa struct {
	cfg         KPAConfig
	tbc         float64 // the target burst capacity
	state       map[string]*kpaState
	unreachable map[string]bool
}

// kpaState is a target's decider state.
type kpaState struct {
	panicTime    time.Time // zero when not panicking
	maxPanicPods int
	delay        []kpaBucket // the scale-down delay window, in descending order of count
	lastActive   time.Time   // last time demand was above zero
}

// kpaBucket is a count recorded in a bucket of the scale-down delay window.
type kpaBucket struct {
	index int64 // the bucket: Unix seconds / KPADelayGranularity
	n     int
}

// newKPAState is the decider as Knative constructs it for a target with ready
// replicas (-1 when the count is unknown, which Knative takes as 0): in panic from now
// when there are more than one.
func newKPAState(now time.Time, ready int) *kpaState {
	st := &kpaState{maxPanicPods: max(ready, 0)}
	if ready > 1 {
		st.panicTime = now
	}
	return st
}

// kpaResult is one KPA decision.
type kpaResult struct {
	// Valid is false when the count of ready replicas is unknown: nothing changes.
	Valid    bool
	Replicas int
	// Stable and Panic are the stable and panic window counts, after the rate bounds
	// and the activation scale.
	Stable, Panic int
	Panicking     bool
	// ExcessBurstCapacity is Knative's excess burst capacity (see
	// KPAConfig.TargetBurstCapacity).
	ExcessBurstCapacity int
}

func (p *kpa) Decide(_ context.Context, in *Input) ([]Action, error) {
	var (
		actions []Action
		errs    []error
	)
	each(in, p.cfg.Targets, func(t TargetState) {
		st := p.state[t.Name]
		if st == nil {
			st = newKPAState(in.Now, t.Replicas)
			p.state[t.Name] = st
		}
		if t.Replicas < 0 {
			return // Knative's invalid decision: the pods cannot be counted
		}
		stable, panicV, err := p.observe(in, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %q: %w", t.Name, err))
			return
		}
		r := st.scale(&p.cfg, p.tbc, !p.unreachable[t.Name], in.Now, t.Replicas, stable, panicV)
		mode := "stable"
		if r.Panicking {
			mode = "panic"
		}
		actions = append(actions, Scale{
			Target: t.Name, Replicas: r.Replicas, Panic: r.Panicking,
			Reason: fmt.Sprintf("kpa %s: observed in total, stable %.4g → %d replicas, panic %.4g → %d; target %.4g per replica; excess burst capacity %d",
				mode, stable, r.Stable, panicV, r.Panic, p.cfg.TargetValue, r.ExcessBurstCapacity),
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

// scale is Knative's autoscaler.Scale for one target with ready replicas (-1 when
// unknown) observing the given stable and panic totals at now, followed by the
// scale-to-zero grace. tbc is the target burst capacity.
func (st *kpaState) scale(cfg *KPAConfig, tbc float64, reachable bool, now time.Time, ready int, stable, panicV float64) kpaResult {
	if ready < 0 {
		return kpaResult{}
	}
	readyF := math.Max(1, float64(ready))
	maxUp := math.Ceil(cfg.MaxScaleUpRate * readyF)
	maxDown := 0.0
	if reachable {
		maxDown = math.Floor(readyF / cfg.MaxScaleDownRate)
	}
	target := cfg.TargetValue * cfg.TargetUtilization

	dspc := math.Ceil(stable / target)
	dppc := math.Ceil(panicV / target)
	desiredStable := clampReplicas(math.Min(math.Max(dspc, maxDown), maxUp))
	desiredPanic := clampReplicas(math.Min(math.Max(dppc, maxDown), maxUp))
	if a := cfg.ActivationScale; a > 1 {
		if dspc > 0 && a > desiredStable {
			desiredStable = a
		}
		if dppc > 0 && a > desiredPanic {
			desiredPanic = a
		}
	}

	over := dppc/readyF >= cfg.PanicThreshold
	switch {
	case over:
		st.panicTime = now // begin or extend the panic
	case !st.panicTime.IsZero() && st.panicTime.Add(cfg.StableWindow).Before(now):
		st.panicTime, st.maxPanicPods = time.Time{}, 0 // the surge reached the stable window
	}

	desired := desiredStable
	if !st.panicTime.IsZero() {
		// The larger of the two, and no scale-down while panicking.
		desired = max(desired, desiredPanic)
		st.maxPanicPods = max(st.maxPanicPods, desired)
		desired = st.maxPanicPods
	}

	if reachable && cfg.ScaleDownDelay > 0 {
		desired = st.delayed(cfg.ScaleDownDelay, now, desired)
	}

	ebc := -1.0
	switch {
	case tbc == 0:
		ebc = 0
	case tbc > 0:
		ebc = math.Floor(float64(ready)*cfg.TargetValue - tbc - panicV)
	}

	// The scale-to-zero grace, a layer of its own: keep one replica until demand has
	// been zero for the grace.
	if stable > 0 || panicV > 0 || st.lastActive.IsZero() {
		st.lastActive = now
	}
	if g := cfg.ScaleToZeroGrace; desired == 0 && ready > 0 && g != 0 && (g < 0 || now.Sub(st.lastActive) < g) {
		desired = 1
	}
	return kpaResult{
		Valid: true, Replicas: desired, Stable: desiredStable, Panic: desiredPanic,
		Panicking: !st.panicTime.IsZero(), ExcessBurstCapacity: int(math.Max(math.Min(ebc, math.MaxInt32), math.MinInt32)),
	}
}

// delayed records n in the scale-down delay window and returns the largest count in
// it: Knative's max.TimeWindow with buckets of KPADelayGranularity, the largest count
// recorded in the last ceil(delay / granularity) buckets.
func (st *kpaState) delayed(delay time.Duration, now time.Time, n int) int {
	buckets := int(math.Ceil(float64(delay) / float64(KPADelayGranularity)))
	index := now.Unix() / int64(KPADelayGranularity/time.Second)
	// Drop the counts n supersedes (smaller and older), then the expired ones; the
	// window stays in descending order of count and ascending order of bucket.
	d := st.delay
	for len(d) > 0 && d[len(d)-1].n <= n {
		d = d[:len(d)-1]
	}
	i := 0
	for i < len(d) && index-d[i].index >= int64(buckets) {
		i++
	}
	d = append(d[i:], kpaBucket{index: index, n: n})
	st.delay = d
	return d[0].n
}
