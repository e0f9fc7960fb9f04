package simulate

import (
	"errors"
	"fmt"
	"math"
)

// Slowdown makes a replica's service time grow with its utilisation: a service that
// slows under load (lock contention, garbage collection, a shared cache or database
// behind it), so that a replica's capacity falls as it fills and a policy that
// scales late pays twice. The utilisation u is the replica's busy slots over its
// concurrency when a request starts, counting that request (so 1/concurrency to 1);
// the request's drawn service time is multiplied by [Slowdown.Factor](u) and keeps
// that length. The zero value is no slowdown.
//
// Above the knee the factor rises linearly, exponentially or both:
//
//	x      = max(0, u-Knee) / (1-Knee)        (0 at the knee, 1 at full utilisation)
//	factor = (1 + Linear·x) · exp(Exp·x)
//
// so at full utilisation a request takes (1+Linear)·e^Exp times as long as it would
// alone.
type Slowdown struct {
	// Knee is the utilisation, 0 <= Knee < 1, up to which service time does not grow.
	Knee float64
	// Linear is the factor's linear growth above the knee: at full utilisation it
	// adds Linear times the service time. >= 0.
	Linear float64
	// Exp is the factor's exponential rate above the knee: at full utilisation it
	// multiplies the service time by e^Exp. >= 0, at most 20.
	Exp float64
}

// IsZero reports whether s slows nothing.
func (s Slowdown) IsZero() bool { return s.Linear == 0 && s.Exp == 0 }

// Factor returns the service time's multiplier at utilisation u (clamped to [0, 1]).
func (s Slowdown) Factor(u float64) float64 {
	if s.IsZero() || u <= s.Knee {
		return 1
	}
	x := (min(u, 1) - s.Knee) / (1 - s.Knee)
	f := 1 + s.Linear*x
	if s.Exp != 0 {
		f *= math.Exp(s.Exp * x)
	}
	return f
}

// Validate reports every problem with s.
func (s Slowdown) Validate() error {
	var errs []error
	if !(s.Knee >= 0 && s.Knee < 1) {
		errs = append(errs, fmt.Errorf("slowdown knee %v out of [0, 1)", s.Knee))
	}
	if !(s.Linear >= 0) || math.IsInf(s.Linear, 0) {
		errs = append(errs, fmt.Errorf("slowdown linear factor %v is not finite and >= 0", s.Linear))
	}
	if !(s.Exp >= 0 && s.Exp <= 20) {
		errs = append(errs, fmt.Errorf("slowdown exponential rate %v out of [0, 20]", s.Exp))
	}
	return errors.Join(errs...)
}

// String describes s, as "none" or "×F at full above K" with its parts.
func (s Slowdown) String() string {
	if s.IsZero() {
		return "none"
	}
	return fmt.Sprintf("above %.0f%% utilisation, linear %g, exp %g: ×%.2f at full", 100*s.Knee, s.Linear, s.Exp, s.Factor(1))
}
