package balancer

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// SlowStart ramps up the traffic of a backend that joins the pool (after the first
// non-empty [Pool.Update]) or returns from an ejection, so that a cold backend (empty
// caches, JIT, connection pools) is not flooded. It is Envoy's slow start
// (envoy.config.cluster.v3.Cluster.SlowStartConfig): during Window the backend's
// weight is multiplied by
//
//	max(MinWeightPercent/100, (t / Window)^(1/Aggression))
//
// where t is the time since it joined. Aggression 1 ramps linearly; above 1 the ramp
// starts faster.
//
// The factor is applied in Steps steps (the pool rebuilds its snapshot at each, lazily,
// on the next request after it is due), so that picking never reads the clock. Weights
// matter to [SmoothWeighted], [P2C], [PeakEWMA] and [Hash] (through its ring);
// [RoundRobin] and [Random] ignore them, so slow start does not affect them.
//
// The zero value is off.
type SlowStart struct {
	// Window is how long the ramp lasts; zero turns slow start off.
	Window time.Duration
	// Aggression shapes the ramp; zero means 1 (linear). At least 0.1 when set.
	Aggression float64
	// MinWeightPercent is the least share of its weight a ramping backend gets,
	// 0..100; zero means 10, as Envoy's default.
	MinWeightPercent float64
	// Steps is how many times during Window the weights are recomputed; zero means 10,
	// at most 1000.
	Steps int
}

// Validate reports every setting out of range.
func (s SlowStart) Validate() error {
	var errs []error
	if s.Window < 0 {
		errs = append(errs, fmt.Errorf("%w: slow start window %v is negative", ErrInvalidConfig, s.Window))
	}
	if s.Aggression != 0 && (s.Aggression < 0.1 || math.IsInf(s.Aggression, 0) || math.IsNaN(s.Aggression)) {
		errs = append(errs, fmt.Errorf("%w: slow start aggression %v is not a finite number of at least 0.1", ErrInvalidConfig, s.Aggression))
	}
	if s.MinWeightPercent < 0 || s.MinWeightPercent > 100 || math.IsNaN(s.MinWeightPercent) {
		errs = append(errs, fmt.Errorf("%w: slow start min weight percent %v out of [0, 100]", ErrInvalidConfig, s.MinWeightPercent))
	}
	if s.Steps < 0 || s.Steps > 1000 {
		errs = append(errs, fmt.Errorf("%w: slow start steps %d out of [0, 1000]", ErrInvalidConfig, s.Steps))
	}
	return errors.Join(errs...)
}

func (s SlowStart) enabled() bool { return s.Window > 0 }

// factor returns the weight factor of a backend ramping since `since` at now, and the
// time of the next step (0 when the ramp is over or off).
func (s SlowStart) factor(since, now int64) (float64, int64) {
	if !s.enabled() || since == 0 {
		return 1, 0
	}
	el := now - since
	win := int64(s.Window)
	if el >= win {
		return 1, 0
	}
	steps := int64(s.Steps)
	if steps == 0 {
		steps = 10
	}
	step := max(win/steps, 1)
	el = max(el, 0)
	// Quantize to the step, so the factor is constant between rebuilds.
	q := el / step * step
	aggr := s.Aggression
	if aggr == 0 {
		aggr = 1
	}
	minPct := s.MinWeightPercent
	if minPct == 0 {
		minPct = 10
	}
	f := math.Max(minPct/100, math.Pow(float64(q)/float64(win), 1/aggr))
	return min(f, 1), since + q + step
}
