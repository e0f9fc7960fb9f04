package balancer

import (
	"math"
	"time"
)

// P2C is power-of-two-choices least request: it draws two distinct ready backends at
// random and takes the one with fewer requests in flight, divided by its effective
// weight when weights differ. This is Envoy's LEAST_REQUEST policy with its default
// choice_count of 2, and grpc-go's least_request balancer; the analysis is Mitzenmacher,
// "The Power of Two Choices in Randomized Load Balancing" (IEEE TPDS, 2001): two random
// choices cut the maximum load from log n / log log n to log log n, without the herd
// behaviour of always taking the global least-loaded backend.
//
// The zero value is ready to use; it is safe for concurrent use. It is the pool's
// default algorithm.
type P2C struct{}

var (
	_ Algorithm = (*P2C)(nil)
	_ Algorithm = (*PeakEWMA)(nil)
)

// Build returns a P2C picker over set.
func (*P2C) Build(set *Set) Picker {
	p := &p2cPicker{set: set, uniform: set.Uniform()}
	return p
}

type p2cPicker struct {
	set     *Set
	uniform bool
}

// two returns two distinct random indices in [0, n), n >= 2, from one random draw.
func two(r uint64, n int) (int, int) {
	i := int((r & math.MaxUint32) * uint64(n) >> 32)
	j := int((r >> 32) * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	return i, j
}

func (p *p2cPicker) Pick(*Request) *Backend {
	bs := p.set.backends
	if len(bs) == 1 {
		return bs[0]
	}
	i, j := two(p.set.rand64(), len(bs))
	a, b := bs[i], bs[j]
	if p.uniform {
		if b.inFlight.Load() < a.inFlight.Load() {
			return b
		}
		return a
	}
	ca := float64(a.inFlight.Load()+1) / p.set.weights[i]
	cb := float64(b.inFlight.Load()+1) / p.set.weights[j]
	if cb < ca {
		return b
	}
	return a
}

// PeakEWMA is power of two choices over a latency cost: each backend's peak-EWMA of
// latency (see [metrics.PeakLatency]) times its requests in flight plus one, divided by
// its effective weight. It is Finagle's "P2C + Peak EWMA" load balancer
// (com.twitter.finagle.loadbalancer.p2c.P2CPeakEwma) and Linkerd's and Tower's
// (tower::load::PeakEwma): the peak-sensitive average reacts at once to a slow
// response and forgets it over the pool's decay time (10 s by default), so traffic
// leaves a backend as soon as its latency jumps and returns once it has rested.
//
// A backend without a latency sample costs 0 when idle, so new backends are tried at
// once, and Penalty plus its requests in flight when busy, so they are not flooded
// before their first response (Finagle's penalty).
//
// The cost decays with the request's time ([Request.Now]; the proxy sets it), and the
// pool's clock is read when that is zero. The zero value is ready to use; it is safe
// for concurrent use.
type PeakEWMA struct {
	// Penalty is the cost of a busy backend with no latency sample yet. Zero means 1 s.
	Penalty time.Duration
}

// Build returns a peak-EWMA picker over set.
func (a *PeakEWMA) Build(set *Set) Picker {
	pen := time.Second
	if a != nil && a.Penalty > 0 {
		pen = a.Penalty
	}
	return &ewmaPicker{set: set, uniform: set.Uniform(), penalty: float64(pen)}
}

type ewmaPicker struct {
	set     *Set
	uniform bool
	penalty float64
}

func (p *ewmaPicker) cost(b *Backend, now time.Time) float64 {
	in := float64(b.inFlight.Load())
	rtt := float64(b.peak.ValueAt(now))
	if rtt == 0 {
		if in == 0 {
			return 0
		}
		return p.penalty + in
	}
	return rtt * (in + 1)
}

func (p *ewmaPicker) Pick(req *Request) *Backend {
	bs := p.set.backends
	if len(bs) == 1 {
		return bs[0]
	}
	now := p.set.Now(req)
	i, j := two(p.set.rand64(), len(bs))
	ca, cb := p.cost(bs[i], now), p.cost(bs[j], now)
	if !p.uniform {
		ca /= p.set.weights[i]
		cb /= p.set.weights[j]
	}
	if cb < ca {
		return bs[j]
	}
	return bs[i]
}
