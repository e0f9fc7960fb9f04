package autoscale

import (
	"slices"
	"testing"
	"time"
)

// The HPA's replica calculator cases (pkg/controller/podautoscaler
// replica_calculator_test.go), as data: every pod ready and reporting, so the count is
// the calculator's simple case.
func TestHPARecommendationUpstream(t *testing.T) {
	for _, c := range []struct {
		name     string
		current  int
		observed float64
		target   float64
		agg      Aggregation
		want     int
	}{
		// Five pods at 100, 300, 500, 250, 250 millicores of 1 CPU: 28% against 50%.
		{"ReplicaCalcScaleDown", 5, 28, 50, PerReplica, 3},
		// Three pods at 102% of their requests against 100%: within tolerance.
		{"ReplicaCalcTolerance", 3, 102, 100, PerReplica, 3},
		// Pods reporting 20000, 21000, 21000 qps against 20000 per pod.
		{"ReplicaCalcToleranceCM", 3, (20000.0 + 21000 + 21000) / 3, 20000, PerReplica, 3},
		// An object at 20666 against 20000.
		{"ReplicaCalcToleranceCMObject", 3, 20666, 20000, PerReplica, 3},
		// An external total of 8600 against 2867 per pod, from 5 pods: ceil(8600/2867).
		{"ReplicaCalcScaleDownPerPodCMExternal", 5, 8600, 2867, Total, 3},
		// The band is inclusive at both ends: 1-t <= ratio <= 1+t.
		{"ratio exactly 1.1 holds", 10, 55, 50, PerReplica, 10},
		{"ratio exactly 0.9 holds", 10, 45, 50, PerReplica, 10},
		{"total: ratio exactly 1.1 holds", 10, 550, 50, Total, 10},
		{"total: ratio exactly 0.9 holds", 10, 450, 50, Total, 10},
		{"just above 1.1 scales", 10, 55.01, 50, PerReplica, 12},
		{"just below 0.9 scales", 10, 44.99, 50, PerReplica, 9},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := HPARecommendation(c.current, c.observed, c.target, DefaultTolerance, c.agg)
			if err != nil || got != c.want {
				t.Fatalf("got %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

// hpaRules is upstream's generateScalingRules(pods, podsPeriod, percent, percentPeriod,
// stabilization) with selectPolicy Max; with no policy, those of def.
func hpaRules(pods, podsPeriod, percent, percentPeriod int, def *Rules) *Rules {
	r := &Rules{}
	if pods > 0 {
		r.Policies = append(r.Policies, RatePolicy{Kind: Pods, Value: pods, Period: time.Duration(podsPeriod) * time.Second})
	}
	if percent > 0 {
		r.Policies = append(r.Policies, RatePolicy{Kind: Percent, Value: percent, Period: time.Duration(percentPeriod) * time.Second})
	}
	if len(r.Policies) == 0 {
		r.Policies = def.Policies
	}
	return r
}

// hpaEvents spreads scale events of the given sizes over the last 120 s, as upstream's
// generateEventsUniformDistribution does.
func hpaEvents(now time.Time, sizes ...int) []timed {
	var ev []timed
	for i, n := range sizes {
		ev = append(ev, timed{t: now.Add(-time.Duration(120*(len(sizes)-i)/(len(sizes)+1)) * time.Second), n: n})
	}
	return ev
}

// TestHPARateLimitsUpstream ports upstream's TestScalingWithRules (horizontal_test.go),
// which runs convertDesiredReplicasWithBehaviorRate alone: the rate limits and the
// bounds, without stabilization.
func TestHPARateLimitsUpstream(t *testing.T) {
	up, down := DefaultScaleUp(), DefaultScaleDown()
	for _, c := range []struct {
		name             string
		min, max         int
		upRules, dnRules *Rules
		upEv, downEv     []int
		current, desired int
		want             int
	}{
		{"scaleUp with default behavior", 1, 1000, nil, nil, nil, nil, 10, 50, 20},
		{"scaleUp with pod policy larger than percent policy", 1, 1000, hpaRules(100, 60, 100, 60, up), nil, nil, nil, 10, 500, 110},
		{"scaleUp with percent policy larger than pod policy", 1, 1000, hpaRules(2, 60, 100, 60, up), nil, nil, nil, 10, 500, 20},
		{"scaleUp with spec MaxReplicas limitation with large pod policy", 1, 200, hpaRules(100, 60, 0, 0, up), nil, nil, nil, 100, 500, 200},
		{"scaleUp with spec MaxReplicas limitation with large percent policy", 1, 200, hpaRules(10000, 60, 0, 0, up), nil, nil, nil, 100, 500, 200},
		{"scaleUp with pod policy limitation", 1, 1000, hpaRules(30, 60, 0, 0, up), nil, nil, nil, 10, 50, 40},
		{"scaleUp with percent policy limitation", 1, 1000, hpaRules(0, 0, 200, 60, up), nil, nil, nil, 10, 50, 30},
		{"scaleDown with percent policy larger than pod policy", 1, 1000, nil, hpaRules(20, 60, 1, 60, down), nil, nil, 100, 2, 80},
		{"scaleDown with pod policy larger than percent policy", 1, 1000, nil, hpaRules(2, 60, 1, 60, down), nil, nil, 100, 2, 98},
		{"scaleDown with spec MinReplicas limitation with large pod policy", 1, 1000, nil, hpaRules(100, 60, 0, 0, down), nil, nil, 10, 0, 1},
		{"scaleDown with spec MinReplicas limitation with large percent policy", 5, 1000, nil, hpaRules(0, 0, 100, 60, down), nil, nil, 10, 2, 5},
		{"scaleDown with pod policy limitation", 1, 1000, nil, hpaRules(5, 60, 0, 0, down), nil, nil, 10, 2, 5},
		{"scaleDown with percent policy limitation", 1, 1000, nil, hpaRules(0, 0, 50, 60, down), nil, nil, 10, 5, 5},
		{"scaleUp with spec MaxReplicas limitation with large pod policy and events", 1, 200, hpaRules(300, 60, 0, 0, up), nil, []int{1, 5, 9}, nil, 100, 500, 200},
		{"scaleUp with spec MaxReplicas limitation with large percent policy and events", 1, 200, hpaRules(0, 0, 10000, 60, up), nil, []int{1, 5, 9}, nil, 100, 500, 200},
		{"scaleUp with currentReplicas limitation with a lot of recent scale up events", 1, 1000, hpaRules(5, 120, 0, 0, up), nil, []int{1, 5, 9}, nil, 100, 500, 100},
		{"scaleUp with pod policy and previous scale up events", 1, 1000, hpaRules(150, 120, 0, 0, up), nil, []int{1, 5, 9}, nil, 100, 500, 235},
		{"scaleUp with percent policy and previous scale up events", 1, 1000, hpaRules(0, 0, 200, 120, up), nil, []int{1, 5, 9}, nil, 100, 500, 255},
		{"scaleDown with default policy and previous events", 1, 1000, nil, hpaRules(0, 0, 0, 0, down), nil, []int{1, 5, 9}, 10, 5, 5},
		{"scaleDown with spec MinReplicas limitation with large pod policy and previous events", 1, 1000, nil, hpaRules(115, 120, 0, 0, down), nil, []int{1, 5, 9}, 100, 0, 1},
		{"scaleDown with spec MinReplicas limitation with large pod policy and previous events, min 5", 5, 1000, nil, hpaRules(130, 120, 0, 0, down), nil, []int{1, 5, 9}, 100, 0, 5},
		{"scaleDown with spec MinReplicas limitation with large percent policy and previous events", 5, 1000, nil, hpaRules(0, 0, 100, 120, down), nil, []int{1, 5, 9}, 100, 2, 5},
		{"scaleDown with pod policy limitation and previous events", 1, 1000, nil, hpaRules(5, 120, 0, 0, down), nil, []int{1, 5, 9}, 100, 2, 100},
		{"scaleDown with percent policy limitation and previous events", 1, 1000, nil, hpaRules(0, 0, 50, 120, down), nil, []int{2, 4, 6}, 100, 0, 56},
		{"scaleDown with previous events preventing further scale down", 1, 1000, nil, hpaRules(0, 0, 10, 120, down), nil, []int{10, 10, 10}, 100, 0, 100},
		{"scaleDown with previous events still allowing more scale down", 1, 1000, nil, hpaRules(0, 0, 1000, 120, down), nil, []int{10, 10, 10}, 10, 5, 5},
		// selectPolicy: Min takes the tightest policy, Disabled forbids the direction.
		{"select min up: 100% or 4 pods from 10 → 14", 1, 1000, &Rules{Select: SelectMin, Policies: up.Policies}, nil, nil, nil, 10, 50, 14},
		{"select min down: 2 pods or 50% from 10 → 8", 1, 1000, nil, &Rules{Select: SelectMin, Policies: []RatePolicy{
			{Kind: Pods, Value: 2, Period: time.Minute}, {Kind: Percent, Value: 50, Period: time.Minute}}}, nil, nil, 10, 1, 8},
		{"select disabled up holds", 1, 1000, &Rules{Select: SelectDisabled, Policies: up.Policies}, nil, nil, nil, 10, 50, 10},
		{"select disabled down holds", 1, 1000, nil, &Rules{Select: SelectDisabled, Policies: down.Policies}, nil, nil, 10, 1, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Safety{ScaleUp: c.upRules, ScaleDown: c.dnRules}
			// Upstream calls the rate step alone: no stabilization here.
			for _, r := range []**Rules{&s.ScaleUp, &s.ScaleDown} {
				if *r == nil {
					*r = &Rules{Policies: up.Policies}
					if r == &s.ScaleDown {
						*r = &Rules{Policies: down.Policies}
					}
				}
				(*r).StabilizationWindow = 0
			}
			tg := newTarget(Target{Name: "a", Min: c.min, Max: c.max, Safety: s})
			tg.upEv, tg.downEv = hpaEvents(t0, c.upEv...), hpaEvents(t0, c.downEv...)
			if got, steps := tg.safe(t0, c.current, ask(c.desired)); got != c.want {
				t.Fatalf("got %d, want %d (steps %+v)", got, c.want, steps)
			}
		})
	}
}

// TestHPAStabilizationUpstream ports upstream's TestNormalizeDesiredReplicasWithBehavior:
// the stabilization windows over past recommendations.
func TestHPAStabilizationUpstream(t *testing.T) {
	type rec struct {
		ago time.Duration
		n   int
	}
	for _, c := range []struct {
		name             string
		recs             []rec
		current, desired int
		upWindow, dnWin  time.Duration
		want             int
	}{
		{"empty recommendations for scaling down", nil, 100, 5, 0, 0, 5},
		{"simple scale down stabilization", []rec{{2 * time.Minute, 4}, {time.Minute, 5}}, 100, 3, 0, 3 * time.Minute, 5},
		{"simple scale up stabilization", []rec{{2 * time.Minute, 4}, {time.Minute, 5}}, 1, 7, 5 * time.Minute, 0, 4},
		{"no scale down stabilization", []rec{{2 * time.Minute, 1}, {time.Minute, 2}}, 100, 3, 5 * time.Minute, 0, 3},
		{"no scale up stabilization", []rec{{2 * time.Minute, 4}, {time.Minute, 5}}, 1, 3, 0, 5 * time.Minute, 3},
		{"no scale down stabilization, old recommendations", []rec{{10 * time.Minute, 10}, {9 * time.Minute, 9}}, 100, 3, 0, 0, 3},
		{"no scale up stabilization, old recommendations", []rec{{10 * time.Minute, 10}, {9 * time.Minute, 9}}, 1, 100, 0, 0, 100},
		{"scale down stabilization among obsolete recommendations", []rec{{10 * time.Minute, 10}, {9 * time.Minute, 9}, {2 * time.Minute, 5}, {time.Minute, 4}}, 100, 3, 0, 3 * time.Minute, 5},
		{"scale up stabilization among obsolete recommendations", []rec{{100 * time.Minute, 10}, {3 * time.Minute, 9}, {2 * time.Minute, 5}, {time.Minute, 6}}, 1, 100, 300 * time.Second, 0, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A rate period keeps the layer's window bookkeeping on; the limits are
			// far off.
			loose := []RatePolicy{{Kind: Pods, Value: 10000, Period: time.Second}}
			tg := newTarget(Target{Name: "a", Min: 0, Max: 1000, Safety: Safety{
				ScaleUp:   &Rules{StabilizationWindow: c.upWindow, Policies: loose},
				ScaleDown: &Rules{StabilizationWindow: c.dnWin, Policies: loose},
			}})
			tg.seeded = true
			recs := slices.Clone(c.recs)
			slices.SortFunc(recs, func(a, b rec) int { return int(b.ago - a.ago) })
			for _, r := range recs {
				tg.recs = append(tg.recs, timed{t: t0.Add(-r.ago), n: r.n})
			}
			if got, steps := tg.safe(t0, c.current, ask(c.desired)); got != c.want {
				t.Fatalf("got %d, want %d (steps %+v)", got, c.want, steps)
			}
		})
	}
}

// TestHPAOutOfBoundsGoesToTheBoundAtOnce: the HPA's reconcileAutoscaler sends a count
// above max or below min to the bound before anything else, so neither the
// stabilization window nor a rate limit delays it.
func TestHPAOutOfBoundsGoesToTheBoundAtOnce(t *testing.T) {
	slow := &Rules{StabilizationWindow: 300 * time.Second, Policies: []RatePolicy{{Kind: Pods, Value: 1, Period: time.Minute}}}
	for _, c := range []struct {
		name             string
		min, max         int
		current, desired int
		want             int
	}{
		{"above max, policy wants more: max", 1, 10, 20, 30, 10},
		{"above max, policy wants less: max, not lower", 1, 10, 20, 2, 10},
		{"below min, policy wants less: min", 5, 10, 1, 0, 5},
		{"below min, policy wants more: min", 5, 10, 1, 9, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			tg := newTarget(Target{Name: "a", Min: c.min, Max: c.max, Safety: Safety{ScaleUp: slow, ScaleDown: slow}})
			if got, steps := tg.safe(t0, c.current, ask(c.desired)); got != c.want {
				t.Fatalf("got %d, want %d (steps %+v)", got, c.want, steps)
			}
		})
	}
	// Within the bounds the same rules hold a scale-down for the window.
	tg := newTarget(Target{Name: "a", Min: 1, Max: 10, Safety: Safety{ScaleUp: slow, ScaleDown: slow}})
	if got, _ := tg.safe(t0, 10, ask(2)); got != 10 {
		t.Fatalf("within bounds: got %d, want 10 (stabilized)", got)
	}
}
