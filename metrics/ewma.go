package metrics

import (
	"math"
	"sync/atomic"
	"time"
)

// DefaultDecay is the time constant of [EWMA] and [PeakLatency] when none is given: ten
// seconds, as Finagle's and Linkerd's peak-EWMA balancers use.
const DefaultDecay = 10 * time.Second

// The moving averages keep their value (a float32) and the time of their last update (in
// units of 16 µs, modulo 2^32) in one 64-bit word, so an update is one compare-and-swap
// and needs no lock. Gaps are read as signed 32-bit differences, good for ±9.5 hours: a
// time before the last update counts as no time at all. float32 keeps seven significant
// digits, more than a latency estimate has.

func pack(v float32, us uint32) uint64 { return uint64(math.Float32bits(v))<<32 | uint64(us) }

func unpack(x uint64) (float32, uint32) { return math.Float32frombits(uint32(x >> 32)), uint32(x) }

const stampUnit = 16 * time.Microsecond

// stamp returns t in units of 16 µs modulo 2^32, never zero (zero marks "no value yet").
func stamp(t time.Time) uint32 { return uint32(t.UnixMicro()>>4) | 1 }

// taylorBelow is the decay exponent below which decayWeight uses the series.
const taylorBelow = 0.01

func decayWeight(now, then uint32, tau time.Duration) float64 {
	d := int32(now - then)
	if d <= 0 {
		return 1
	}
	x := float64(d) * float64(stampUnit) / float64(tau)
	if x < taylorBelow {
		// Samples a busy backend takes come far more often than τ: a second-order
		// Taylor series is within x³/6 < 2e-7 of exp(-x), at a tenth of its cost.
		return 1 - x + x*x/2
	}
	return math.Exp(-x)
}

// EWMA is an exponentially weighted moving average decayed by time rather than by
// count: a sample d after the last moves the average by 1-exp(-d/τ) of the way to it,
// so irregular sampling weighs samples fairly. The zero value has τ = [DefaultDecay].
// It is lock-free and safe for concurrent use.
type EWMA struct {
	avg average
}

// NewEWMA returns an average with time constant tau (zero means [DefaultDecay]).
func NewEWMA(tau time.Duration) *EWMA {
	return &EWMA{avg: average{tau: tau}}
}

// Observe adds a sample v taken at t. The first sample becomes the average.
func (e *EWMA) Observe(t time.Time, v float64) { e.avg.observe(t, v, false) }

// Value returns the average, or 0 before the first sample.
func (e *EWMA) Value() float64 {
	v, _ := unpack(e.avg.state.Load())
	return float64(v)
}

// PeakLatency is the peak-sensitive moving average of latency that Finagle's and
// Linkerd's balancers use (Finagle, "Peak EWMA"; github.com/twitter/finagle
// finagle-core/.../loadbalancer/PeakEwma): a sample above the average replaces it at
// once, a sample below it decays it as an [EWMA] does, and without samples the average
// decays towards zero, so a slow backend is avoided at once and retried once it has
// rested. It is the cost the balancer's PeakLatency algorithm weighs backends by. The zero
// value has τ = [DefaultDecay]. It is lock-free and safe for concurrent use.
type PeakLatency struct {
	avg average
}

// NewPeakLatency returns an average with time constant tau (zero means [DefaultDecay]).
func NewPeakLatency(tau time.Duration) *PeakLatency {
	return &PeakLatency{avg: average{tau: tau}}
}

// Observe adds a latency sample d taken at t.
func (p *PeakLatency) Observe(t time.Time, d time.Duration) { p.avg.observe(t, float64(d), true) }

// ValueAt returns the average at time t, decayed for the time since the last sample;
// 0 before the first sample. It does not change the average.
func (p *PeakLatency) ValueAt(t time.Time) time.Duration {
	cur, then := unpack(p.avg.state.Load())
	if then == 0 {
		return 0
	}
	return time.Duration(float64(cur) * decayWeight(stamp(t), then, p.avg.decay()))
}

// average is the state both moving averages share: the packed (value, stamp) word and
// the time constant.
type average struct {
	tau   time.Duration
	state atomic.Uint64
}

func (a *average) decay() time.Duration {
	if a.tau <= 0 {
		return DefaultDecay
	}
	return a.tau
}

// observe folds v, taken at t, into the average. With peak set, a sample above the
// average replaces it instead of being averaged in.
func (a *average) observe(t time.Time, v float64, peak bool) {
	now := stamp(t)
	for {
		old := a.state.Load()
		cur, then := unpack(old)
		next := v
		if then != 0 && (!peak || v < float64(cur)) {
			w := decayWeight(now, then, a.decay())
			next = float64(cur)*w + v*(1-w)
		}
		if a.state.CompareAndSwap(old, pack(float32(next), now)) {
			return
		}
	}
}
