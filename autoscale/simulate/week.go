package simulate

import (
	"math"
	"time"
)

// Week is a week of traffic, compressed: seven days of length Day (zero means 24 h),
// the run starting at Monday midnight. Each day is a cosine from Min at its trough
// (4 a.m.) to a peak 12 hours later; on the weekend (days 6 and 7) the part above Min
// is scaled by Weekend; and the whole is multiplied by 1 + Noise×z, z a standard
// normal drawn from Seed at knots Day/96 apart (15 minutes of the day) and
// interpolated linearly between them, so the noise wanders over minutes of the day
// rather than flickering each second (the Poisson arrivals add their own). The
// profile is a pure function of t and is safe for concurrent use; past the seventh
// day the week repeats.
type Week struct {
	// Min and Max are the weekday trough and peak, in requests per second.
	Min, Max float64
	// Day is the length of one compressed day; zero means 24 h.
	Day time.Duration
	// Weekend scales the weekend days' part above Min, in [0, 1]; zero means 1 (no
	// weekly cycle). Saturday and Sunday at 40% of a weekday's height is 0.4.
	Weekend float64
	// Noise is the relative standard deviation of the multiplicative noise, >= 0.
	// Zero means none. The rate is kept >= 0.
	Noise float64
	// Seed draws the noise.
	Seed uint64
}

// Rate returns the week's rate at t.
func (w Week) Rate(t time.Duration) float64 {
	if t < 0 {
		t = 0
	}
	day := w.Day
	if day <= 0 {
		day = 24 * time.Hour
	}
	d := int64(t/day) % 7
	frac := float64(t%day) / float64(day)
	height := w.Max - w.Min
	if d >= 5 && w.Weekend != 0 {
		height *= w.Weekend
	}
	r := w.Min + height*(1-math.Cos(2*math.Pi*(frac-4.0/24)))/2
	if w.Noise > 0 {
		knot := day / 96
		if knot <= 0 {
			knot = 1
		}
		k := int64(t / knot)
		f := float64(t%knot) / float64(knot)
		z := (1-f)*normalAt(w.Seed, k) + f*normalAt(w.Seed, k+1)
		r *= 1 + w.Noise*z
	}
	return max(0, r)
}

// normalAt returns a standard normal that is a pure function of seed and k:
// Box–Muller on two uniforms from a SplitMix64 hash of the pair.
func normalAt(seed uint64, k int64) float64 {
	a := splitmix(seed ^ splitmix(uint64(k)))
	b := splitmix(a)
	u1 := (float64(a>>11) + 1) / (1 << 53) // (0, 1]
	u2 := float64(b>>11) / (1 << 53)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// splitmix is SplitMix64's finaliser (Steele, Lea and Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014).
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
