package autoscale

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// The cases of Knative's decider tests (knative.dev/serving
// pkg/autoscaler/scaling/autoscaler_test.go), as data. Upstream builds its decider with
// a target value tv per pod at 75% utilisation (TotalValue tv/0.75), a target burst
// capacity tbc, panic threshold 2, rates 10 up and down, a 60 s stable window and the
// revision reachable, constructed with one ready pod; kpaUpstream is that spec in our
// terms.

func kpaUpstream(tv, tbc float64) KPAConfig {
	return KPAConfig{TargetValue: tv / 0.75, TargetUtilization: 0.75, TargetBurstCapacity: new(tbc),
		PanicThreshold: 2, MaxScaleUpRate: 10, MaxScaleDownRate: 10, StableWindow: 60 * time.Second}
}

// upstreamEBC is upstream's expectedEBC: the excess burst capacity of numPods pods of
// total capacity tv/0.75 each, less tbc and the panic-window demand.
func upstreamEBC(tv, tbc, panicV, numPods float64) int {
	return int(math.Floor(tv/0.75*numPods - tbc - panicV))
}

// kpaStep is one call of the decider: at is the offset from t0, ready the ready pod
// count (-1: the count failed), and the want fields the upstream ScaleResult.
type kpaStep struct {
	at            time.Duration
	ready         int
	stable, panic float64
	unreachable   bool
	update        func(*KPAConfig) // changes the spec before this step (upstream's Update)

	want      int
	wantEBC   int // compared within ±1, as upstream does
	invalid   bool
	wantPanic *bool
	// wantPanicAt, when not nil, is the offset the panic started at after this step.
	wantPanicAt *time.Duration
}

type kpaCase struct {
	name      string
	cfg       KPAConfig
	construct int // the ready pods when the decider is made
	prep      func(st *kpaState)
	steps     []kpaStep
}

func yes() *bool                            { return new(true) }
func no() *bool                             { return new(false) }
func offset(d time.Duration) *time.Duration { return &d }

func runKPACase(t *testing.T, c kpaCase) {
	t.Helper()
	p, err := KPA(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := p.(*kpa)
	st := newKPAState(t0, c.construct)
	if c.prep != nil {
		c.prep(st)
	}
	for i, s := range c.steps {
		if s.update != nil {
			s.update(&k.cfg)
			k.tbc = *k.cfg.TargetBurstCapacity
		}
		r := st.scale(&k.cfg, k.tbc, !s.unreachable, t0.Add(s.at), s.ready, s.stable, s.panic)
		if r.Valid == s.invalid {
			t.Fatalf("step %d: valid %v, want %v (%+v)", i, r.Valid, !s.invalid, r)
		}
		if s.invalid {
			continue
		}
		if r.Replicas != s.want || math.Abs(float64(r.ExcessBurstCapacity-s.wantEBC)) > 1 {
			t.Fatalf("step %d: got %d replicas, excess burst capacity %d; want %d, %d (%+v)", i, r.Replicas, r.ExcessBurstCapacity, s.want, s.wantEBC, r)
		}
		if s.wantPanic != nil && r.Panicking != *s.wantPanic {
			t.Fatalf("step %d: panicking %v, want %v", i, r.Panicking, *s.wantPanic)
		}
		if s.wantPanicAt != nil && !st.panicTime.Equal(t0.Add(*s.wantPanicAt)) {
			t.Fatalf("step %d: panic time %v, want %v", i, st.panicTime.Sub(t0), *s.wantPanicAt)
		}
	}
}

func TestKPAUpstreamDecider(t *testing.T) {
	delaySpec := KPAConfig{TargetValue: 10, TargetUtilization: 1, TargetBurstCapacity: new(0.0),
		MaxScaleDownRate: 10, MaxScaleUpRate: 10, PanicThreshold: 100, ScaleDownDelay: 5 * time.Minute}
	noDelay := delaySpec
	noDelay.ScaleDownDelay = 0
	smallUp := kpaUpstream(1, 1982)
	smallUp.MaxScaleUpRate = 1.1
	smallDown := kpaUpstream(10, 1982)
	smallDown.MaxScaleDownRate = 1.1
	activation := kpaUpstream(10, 75)
	activation.ActivationScale = 2
	inPanic := func(st *kpaState) { st.panicTime, st.maxPanicPods = t0.Add(-5*time.Second), 5 }

	for _, c := range []kpaCase{
		{name: "ScaleDownDelay: simple, then gradual", cfg: delaySpec, construct: 0, steps: []kpaStep{
			{at: 2 * time.Second, stable: 40, panic: 40, want: 4},
			{at: 5 * time.Minute, want: 4},               // less than the delay at reduced concurrency
			{at: 5*time.Minute + 2*time.Second, want: 0}, // the delay has passed
			{at: 9 * time.Minute, stable: 40, panic: 40, want: 4},
			{at: 10 * time.Minute, stable: 30, panic: 30, want: 4}, // 4 still dominates
			{at: 11 * time.Minute, want: 4},
			{at: 14 * time.Minute, want: 3}, // 4 scrolls out
			{at: 15 * time.Minute, want: 0}, // everything scrolled out
		}},
		{name: "ScaleDownDelayNotReachable: unreachable drops at once", cfg: delaySpec, construct: 0, steps: []kpaStep{
			{at: 2 * time.Second, stable: 40, panic: 40, want: 4},
			{at: time.Minute, want: 4},
			{at: 2 * time.Second, unreachable: true, want: 0},
		}},
		{name: "ScaleDownDelayZero: no delay scales down at once", cfg: noDelay, construct: 0, steps: []kpaStep{
			{unreachable: true, stable: 40, panic: 40, want: 4},
			{at: 500 * time.Millisecond, unreachable: true, stable: 20, panic: 20, want: 2},
		}},
		{name: "Metrics", cfg: kpaUpstream(10, 100), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 50, panic: 50, want: 5, wantEBC: upstreamEBC(10, 100, 50, 1)},
		}},
		{name: "MetricsWithRPS", cfg: kpaUpstream(10, 100), construct: 1, steps: []kpaStep{
			{at: 61 * time.Second, ready: 1, stable: 100, panic: 99, want: 10, wantEBC: upstreamEBC(10, 100, 99, 1), wantPanic: yes()},
		}},
		{name: "StableModeIncreaseWithConcurrencyDefault", cfg: kpaUpstream(10, 101), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 50, panic: 10, want: 5, wantEBC: upstreamEBC(10, 101, 10, 1)},
			{ready: 1, stable: 100, panic: 10, want: 10, wantEBC: upstreamEBC(10, 101, 10, 1)},
		}},
		{name: "StableModeIncreaseWithRPS", cfg: kpaUpstream(10, 101), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 50, panic: 50, want: 5, wantEBC: upstreamEBC(10, 101, 50, 1)},
			{ready: 1, stable: 100, panic: 99, want: 10, wantEBC: upstreamEBC(10, 101, 99, 1)},
		}},
		{name: "UnpanicAfterSlowIncrease", cfg: kpaUpstream(1, 98), construct: 1, steps: []kpaStep{
			{ready: 10, stable: 11, panic: 25, want: 25, wantEBC: upstreamEBC(1, 98, 25, 10), wantPanicAt: offset(0)},
			// Half the stable window later, one pod added per tick: the panic does not move.
			{at: 30 * time.Second, ready: 40, stable: 30, panic: 41, want: 41, wantEBC: upstreamEBC(1, 98, 41, 40), wantPanicAt: offset(0)},
			// The end of the window: the panic ends.
			{at: 62 * time.Second, ready: 55, stable: 50, panic: 56, want: 50, wantEBC: upstreamEBC(1, 98, 56, 55), wantPanic: no()},
		}},
		{name: "ExtendPanicWindow", cfg: kpaUpstream(1, 98), construct: 1, steps: []kpaStep{
			{ready: 10, stable: 11, panic: 25, want: 25, wantEBC: upstreamEBC(1, 98, 25, 10), wantPanicAt: offset(0)},
			{at: 30 * time.Second, ready: 40, stable: 30, panic: 80, want: 80, wantEBC: upstreamEBC(1, 98, 80, 40), wantPanicAt: offset(30 * time.Second)},
		}},
		{name: "StableModeDecrease", cfg: kpaUpstream(10, 98), construct: 1, steps: []kpaStep{
			{ready: 8, stable: 100, panic: 100, want: 10, wantEBC: upstreamEBC(10, 98, 100, 8)},
			{ready: 8, stable: 50, panic: 50, want: 5, wantEBC: upstreamEBC(10, 98, 50, 8)},
		}},
		{name: "StableModeNoTrafficScaleToZero", cfg: kpaUpstream(10, 75), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 1, panic: 0, want: 1, wantEBC: upstreamEBC(10, 75, 0, 1)},
			{ready: 1, want: 0, wantEBC: upstreamEBC(10, 75, 0, 1)},
		}},
		{name: "ActivationScale", cfg: activation, construct: 1, steps: []kpaStep{
			{ready: 1, want: 0, wantEBC: upstreamEBC(10, 75, 0, 1)},
			{ready: 1, stable: 1, want: 2, wantEBC: upstreamEBC(10, 75, 0, 1)},
		}},
		{name: "PanicModeExponentialTrackAndStabilize", cfg: kpaUpstream(1, 101), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 6, panic: 6, want: 6, wantEBC: upstreamEBC(1, 101, 6, 1)},
			{ready: 6, stable: 36, panic: 36, want: 36, wantEBC: upstreamEBC(1, 101, 36, 6), wantPanicAt: offset(0)},
			{at: time.Second, ready: 36, stable: 216, panic: 216, want: 216, wantEBC: upstreamEBC(1, 101, 216, 36), wantPanicAt: offset(time.Second)},
			{at: time.Second, ready: 216, stable: 1296, panic: 1296, want: 1296, wantEBC: upstreamEBC(1, 101, 1296, 216), wantPanicAt: offset(time.Second)},
			{at: 2 * time.Second, ready: 1296, stable: 1296, panic: 1296, want: 1296, wantEBC: upstreamEBC(1, 101, 1296, 1296)},
		}},
		// TestAutoscalerScale's table.
		{name: "NoDataAtZeroNoAutoscale", cfg: kpaUpstream(10, 100), construct: 1, steps: []kpaStep{
			{ready: 1, want: 0, wantEBC: upstreamEBC(10, 100, 0, 1)},
		}},
		{name: "StableModeUnlimitedTBC", cfg: kpaUpstream(181, -1), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 21, panic: 26, want: 1, wantEBC: -1},
		}},
		{name: "0TBC", cfg: kpaUpstream(10, 0), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 50, panic: 49, want: 5, wantEBC: 0},
		}},
		{name: "StableModeNoChange", cfg: kpaUpstream(10, 100), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 50, panic: 50, want: 5, wantEBC: upstreamEBC(10, 100, 50, 1)},
		}},
		{name: "PanicStableLargerThanPanic: the stable count", cfg: kpaUpstream(1, 100), construct: 1, prep: inPanic, steps: []kpaStep{
			{ready: 5, stable: 50, panic: 30, want: 50, wantEBC: upstreamEBC(1, 100, 30, 5), wantPanic: yes()},
		}},
		{name: "PanicStableLessThanPanic: the panic count", cfg: kpaUpstream(1, 100), construct: 1, prep: inPanic, steps: []kpaStep{
			{ready: 5, stable: 20, panic: 30, want: 30, wantEBC: upstreamEBC(1, 100, 30, 5), wantPanic: yes()},
		}},
		{name: "StableModeNoChangeAlreadyScaled", cfg: kpaUpstream(10, 100), construct: 1, steps: []kpaStep{
			{ready: 5, stable: 50, panic: 50, want: 5, wantEBC: upstreamEBC(10, 100, 50, 5)},
		}},
		{name: "StableModeIncreaseWithSmallScaleUpRate: grows by at least one", cfg: smallUp, construct: 1, steps: []kpaStep{
			{ready: 2, stable: 3, panic: 3.1, want: 3, wantEBC: upstreamEBC(1, 1982, 3.1, 2)},
		}},
		{name: "StableModeDecreaseWithSmallScaleDownRate", cfg: smallDown, construct: 1, steps: []kpaStep{
			{ready: 100, stable: 1, panic: 1, want: 90, wantEBC: upstreamEBC(10, 1982, 1, 100)},
		}},
		{name: "StableModeDecreaseNonReachable: no scale-down limit", cfg: smallDown, construct: 1, steps: []kpaStep{
			{ready: 100, stable: 1, panic: 1, unreachable: true, want: 1, wantEBC: upstreamEBC(10, 1982, 1, 100)},
		}},
		{name: "PanicModeDoublePodCount: the panic count wins", cfg: kpaUpstream(10, 84), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 50, panic: 100, want: 10, wantEBC: upstreamEBC(10, 84, 100, 1)},
		}},
		{name: "PanicThenUnPanicScaleDown", cfg: kpaUpstream(10, 93), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 100, panic: 100, want: 10, wantEBC: upstreamEBC(10, 93, 100, 1)},
			{ready: 10, stable: 100, panic: 1000, want: 100, wantEBC: upstreamEBC(10, 93, 1000, 10)},
			// Traffic dropped off: the scale stays while in panic.
			{at: 30 * time.Second, ready: 10, stable: 1, panic: 1, want: 100, wantEBC: upstreamEBC(10, 93, 1, 10)},
			// Down after the stable window.
			{at: 61 * time.Second, ready: 10, stable: 1, panic: 1, want: 1, wantEBC: upstreamEBC(10, 93, 1, 10)},
		}},
		{name: "RateLimitScaleUp: ×10 a step", cfg: kpaUpstream(10, 61), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 1000, panic: 1001, want: 10, wantEBC: upstreamEBC(10, 61, 1001, 1)},
			{ready: 10, stable: 1000, panic: 1001, want: 100, wantEBC: upstreamEBC(10, 61, 1001, 10)},
		}},
		{name: "RateLimitScaleDown: ÷10 a step", cfg: kpaUpstream(10, 61), construct: 1, steps: []kpaStep{
			{ready: 100, stable: 1, panic: 1, want: 10, wantEBC: upstreamEBC(10, 61, 1, 100)},
			{ready: 10, stable: 1, panic: 1, want: 1, wantEBC: upstreamEBC(10, 61, 1, 10)},
		}},
		{name: "CantCountPods: the decision is invalid", cfg: kpaUpstream(10, 81), construct: 1, steps: []kpaStep{
			{ready: -1, stable: 1000, panic: 888, invalid: true},
		}},
		{name: "UseOnePodAsMinimumIfEndpointsNotFound", cfg: kpaUpstream(10, 81), construct: 1, steps: []kpaStep{
			{ready: 0, stable: 1000, panic: 888, want: 10, wantEBC: upstreamEBC(10, 81, 888, 0)},
		}},
		{name: "UpdateTarget", cfg: kpaUpstream(10, 77), construct: 1, steps: []kpaStep{
			{ready: 1, stable: 100, panic: 101, want: 10, wantEBC: upstreamEBC(10, 77, 101, 1)},
			{ready: 10, stable: 100, panic: 101, want: 100, wantEBC: upstreamEBC(1, 71, 101, 10),
				update: func(c *KPAConfig) { *c = kpaUpstream(1, 71) }},
		}},
	} {
		t.Run(c.name, func(t *testing.T) { runKPACase(t, c) })
	}
}

func TestKPAStartsInPanic(t *testing.T) {
	// Upstream's TestStartInPanicMode and TestNewFail: constructed with 0 or 1 ready
	// pods (or a count that failed, -1) the decider is not in panic; with 2 it is, and
	// its panic high-water mark is the count.
	for _, c := range []struct{ ready, maxPanic int }{{-1, 0}, {0, 0}, {1, 1}, {2, 2}, {10, 10}} {
		st := newKPAState(t0, c.ready)
		if got, want := !st.panicTime.IsZero(), c.ready > 1; got != want {
			t.Errorf("constructed with %d: panicking %v, want %v", c.ready, got, want)
		}
		if st.maxPanicPods != c.maxPanic {
			t.Errorf("constructed with %d: max panic pods %d, want %d", c.ready, st.maxPanicPods, c.maxPanic)
		}
	}

	// Through the policy: a target first seen at 10 replicas with little demand keeps
	// 10 for a stable window, then follows demand.
	cfg := kpaUpstream(10, 100)
	demand := 20.0
	cfg.Metric = func(*Input, TargetState, time.Duration) (float64, error) { return demand, nil }
	p, err := KPA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	decide := func(at time.Duration, replicas int) Scale {
		t.Helper()
		acts, err := p.Decide(context.Background(), &Input{Now: t0.Add(at), Targets: []TargetState{{Name: "a", Replicas: replicas}}})
		if err != nil || len(acts) != 1 {
			t.Fatalf("at %v: %v, %v", at, acts, err)
		}
		return acts[0].(Scale)
	}
	if s := decide(0, 10); s.Replicas != 10 || !s.Panic {
		t.Fatalf("first tick: %+v, want 10 in panic", s)
	}
	if s := decide(60*time.Second, 10); s.Replicas != 10 || !s.Panic {
		t.Fatalf("after 60 s: %+v, want 10 in panic", s)
	}
	if s := decide(62*time.Second, 10); s.Replicas != 2 || s.Panic {
		t.Fatalf("after the stable window: %+v, want 2 out of panic", s)
	}
}

func TestKPAInvalidAndMissing(t *testing.T) {
	var missing bool
	cfg := kpaUpstream(10, 100)
	cfg.Metric = func(*Input, TargetState, time.Duration) (float64, error) {
		if missing {
			return 0, ErrMissingMetrics
		}
		return 50, nil
	}
	p, err := KPA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// An unknown count: no action, no error (the scale stays), not one pod.
	acts, err := p.Decide(context.Background(), &Input{Now: t0, Targets: []TargetState{{Name: "a", Replicas: -1}}})
	if err != nil || len(acts) != 0 {
		t.Fatalf("unknown count: %v, %v; want no action", acts, err)
	}
	// No data (upstream's TestAutoscalerNoDataNoAutoscale): no action, an error.
	missing = true
	acts, err = p.Decide(context.Background(), &Input{Now: t0, Targets: []TargetState{{Name: "a", Replicas: 3}}})
	if !errors.Is(err, ErrMissingMetrics) || len(acts) != 0 {
		t.Fatalf("no data: %v, %v; want no action and ErrMissingMetrics", acts, err)
	}
}

func TestKPAAnchors(t *testing.T) {
	// Target 1 per pod, panic threshold 2, max scale-up and scale-down rate 10,
	// utilisation 1 (the config of kpa_test.lua).
	anchor := KPAConfig{TargetValue: 1, TargetUtilization: 1, PanicThreshold: 2, MaxScaleUpRate: 10, MaxScaleDownRate: 10}
	at := func(s int) time.Duration { return time.Duration(s) * time.Second }
	for _, c := range []kpaCase{
		{name: "no scale-down in panic; un-panic after the stable window", cfg: func() KPAConfig { c := anchor; c.TargetValue = 10; return c }(),
			steps: []kpaStep{
				{ready: 8, stable: 100, panic: 200, want: 20, wantPanic: yes(), wantEBC: upstreamEBC(0.75*10, 211, 200, 8)},
				{at: at(10), ready: 20, stable: 50, panic: 50, want: 20, wantPanic: yes(), wantEBC: upstreamEBC(0.75*10, 211, 50, 20)},
				{at: at(61), ready: 20, stable: 50, panic: 50, want: 5, wantPanic: no(), wantEBC: upstreamEBC(0.75*10, 211, 50, 20)},
			}},
		{name: "rates bound the step", cfg: KPAConfig{TargetValue: 1, TargetUtilization: 1, MaxScaleUpRate: 2, MaxScaleDownRate: 2, TargetBurstCapacity: new(0.0)},
			steps: []kpaStep{
				{ready: 4, stable: 100, panic: 4, want: 8},
				{at: at(1), ready: 8, stable: 1, panic: 1, want: 4},
			}},
		{name: "no grace: zero at once, as the decider", cfg: KPAConfig{TargetValue: 1, TargetUtilization: 1, MaxScaleDownRate: 2, TargetBurstCapacity: new(0.0)},
			steps: []kpaStep{
				{ready: 1, stable: 1, panic: 1, want: 1},
				{at: at(2), ready: 1, want: 0},
			}},
		{name: "scale to zero only after the grace", cfg: KPAConfig{TargetValue: 1, TargetUtilization: 1, MaxScaleDownRate: 2, TargetBurstCapacity: new(0.0), ScaleToZeroGrace: 30 * time.Second},
			steps: []kpaStep{
				{ready: 1, stable: 1, panic: 1, want: 1},
				{at: at(10), ready: 1, want: 1},
				{at: at(29), ready: 1, want: 1},
				{at: at(31), ready: 1, want: 0},
				{at: at(40), ready: 0, want: 0},
			}},
		{name: "negative grace: never zero", cfg: KPAConfig{TargetValue: 1, TargetUtilization: 1, MaxScaleDownRate: 2, TargetBurstCapacity: new(0.0), ScaleToZeroGrace: -1},
			steps: []kpaStep{
				{ready: 1, stable: 1, panic: 1, want: 1},
				{at: at(3600), ready: 1, want: 1},
			}},
		{name: "defaults: utilisation 0.7", cfg: KPAConfig{TargetValue: 10, TargetBurstCapacity: new(0.0)},
			// 100 concurrent requests at a target of 10·0.7 = 7 per pod → ceil(14.3) = 15.
			steps: []kpaStep{{ready: 10, stable: 100, panic: 100, want: 15}}},
	} {
		t.Run(c.name, func(t *testing.T) { runKPACase(t, c) })
	}
}

func TestKPAConfigValidate(t *testing.T) {
	for _, c := range []KPAConfig{
		{TargetValue: 1, PanicThreshold: 0.5},
		{TargetValue: 1, ActivationScale: -1},
		{TargetValue: 1, ScaleDownDelay: 2 * time.Hour},
		{TargetValue: 1, TargetBurstCapacity: new(math.Inf(1))},
	} {
		if _, err := KPA(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v, want ErrInvalidConfig", c, err)
		}
	}
}

func TestKPAUnreachableTargetsDropAtOnce(t *testing.T) {
	cfg := KPAConfig{TargetValue: 1, TargetUtilization: 1, Unreachable: []string{"old"},
		Metric: func(*Input, TargetState, time.Duration) (float64, error) { return 1, nil }}
	p, err := KPA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Both first seen with one replica, so neither starts in panic; then 100 each.
	in := &Input{Now: t0, Targets: []TargetState{{Name: "old", Replicas: 1}, {Name: "new", Replicas: 1}}}
	if _, err := p.Decide(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	in = &Input{Now: t0.Add(2 * time.Second), Targets: []TargetState{{Name: "old", Replicas: 100}, {Name: "new", Replicas: 100}}}
	acts, err := p.Decide(context.Background(), in)
	if err != nil || len(acts) != 2 {
		t.Fatalf("%v, %v", acts, err)
	}
	// The unreachable one drops to what demand needs; the other by at most half.
	if old, nw := acts[0].(Scale), acts[1].(Scale); old.Replicas != 1 || nw.Replicas != 50 {
		t.Fatalf("old → %d, new → %d; want 1 and 50", old.Replicas, nw.Replicas)
	}
}
