package simulate_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

func TestSlowdownFactor(t *testing.T) {
	cases := []struct {
		s    simulate.Slowdown
		u    float64
		want float64
	}{
		{simulate.Slowdown{}, 1, 1},
		{simulate.Slowdown{Knee: 0.5, Linear: 2}, 0.5, 1},
		{simulate.Slowdown{Knee: 0.5, Linear: 2}, 0.75, 2},
		{simulate.Slowdown{Knee: 0.5, Linear: 2}, 1, 3},
		{simulate.Slowdown{Knee: 0.5, Linear: 2}, 4, 3},
		{simulate.Slowdown{Exp: math.Ln2}, 1, 2},
		{simulate.Slowdown{Knee: 0.2, Linear: 1, Exp: math.Ln2}, 0.6, 1.5 * math.Sqrt2},
	}
	for _, c := range cases {
		if got := c.s.Factor(c.u); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v.Factor(%v) = %v, want %v", c.s, c.u, got, c.want)
		}
	}
	if got := (simulate.Slowdown{Knee: 0.5, Linear: 2}).String(); got != "above 50% utilisation, linear 2, exp 0: ×3.00 at full" {
		t.Errorf("String = %q", got)
	}
	for _, bad := range []simulate.Slowdown{{Knee: 1}, {Knee: -0.1}, {Linear: -1}, {Linear: math.NaN()}, {Exp: 21}, {Linear: math.Inf(1)}} {
		sc := simulate.Scenario{Name: "x", Duration: time.Minute, Traffic: simulate.Constant(1), Service: simulate.Service{Slowdown: bad}}
		if err := sc.Validate(); !errors.Is(err, simulate.ErrInvalidConfig) {
			t.Errorf("slowdown %+v: Validate = %v, want ErrInvalidConfig", bad, err)
		}
	}
}

// TestSlowdownAppliedAtDispatch serves one request at a time on a fixed 100 ms:
// with a slowdown of ×3 at full utilisation, the replica is always full, so every
// request takes 300 ms.
func TestSlowdownAppliedAtDispatch(t *testing.T) {
	sc := simulate.Scenario{Name: "one", Duration: 2 * time.Minute, Traffic: simulate.Constant(1),
		Service: simulate.Service{Concurrency: 1, ServiceTime: simulate.Fixed(100 * time.Millisecond), Min: 1, Max: 1}}
	base := run(t, sc, hold(), 1).Summary
	sc.Service.Slowdown = simulate.Slowdown{Knee: 0.5, Linear: 2}
	slow := run(t, sc, hold(), 1).Summary
	near := func(d, want time.Duration) bool { return math.Abs(float64(d-want)) <= 0.02*float64(want) }
	if !near(base.P50, 100*time.Millisecond) || !near(slow.P50, 300*time.Millisecond) {
		t.Errorf("p50 %v without the slowdown, %v with: want 100 ms and 300 ms", base.P50, slow.P50)
	}
}

// TestSlowdownGrowsWithUtilisation runs two fixed replicas of 10 slots at a low and a
// high load, with and without a slowdown rising above 50% utilisation to ×2 when
// full: at low load (10% of the nominal capacity) the latency is the same; at high
// load (45%, where the busiest moments cross the knee and each slowed request keeps
// its slot longer) the slowdown makes the median request at least 25% slower than
// without it and than at low load.
func TestSlowdownGrowsWithUtilisation(t *testing.T) {
	svc := simulate.Service{Replicas: 2, Min: 2, Max: 2, ServiceTime: simulate.Fixed(100 * time.Millisecond)}
	p50 := func(rate float64, sd simulate.Slowdown) time.Duration {
		s := svc
		s.Slowdown = sd
		sc := simulate.Scenario{Name: "u", Duration: 3 * time.Minute, Traffic: simulate.Constant(rate), Service: s}
		return run(t, sc, hold(), 1).Summary.P50
	}
	sd := simulate.Slowdown{Knee: 0.5, Linear: 1}
	lowBase, lowSlow := p50(20, simulate.Slowdown{}), p50(20, sd)
	highBase, highSlow := p50(90, simulate.Slowdown{}), p50(90, sd)
	t.Logf("p50 at 20 rps: %v / %v; at 90 rps: %v / %v (without / with the slowdown)", lowBase, lowSlow, highBase, highSlow)
	if lowSlow > lowBase*105/100 {
		t.Errorf("at low load the slowdown changed p50 from %v to %v", lowBase, lowSlow)
	}
	if highSlow < highBase*125/100 || highSlow < lowSlow*125/100 {
		t.Errorf("at high load p50 %v with the slowdown, %v without, %v at low load: want ≥ 1.25× both", highSlow, highBase, lowSlow)
	}
}
