package balancer

import (
	"math"
	"sync/atomic"
)

// RoundRobin takes the ready backends in turn, each once per round, ignoring weights
// (a drained backend is not ready, so weight 0 still drains). The starting point is
// random so that gateway replicas do not march in step. It is the classic algorithm
// of every proxy, and grpc-go's round_robin picker: one atomic counter per snapshot.
// Its zero value is ready to use and it is safe for concurrent use.
type RoundRobin struct{}

var (
	_ Algorithm = RoundRobin{}
	_ Algorithm = (*SmoothWeighted)(nil)
	_ Algorithm = Random{}
)

// Build returns a round-robin picker over set.
func (RoundRobin) Build(set *Set) Picker {
	p := &rrPicker{backends: set.Backends(), n: uint64(set.Len()), m: fastmodM(uint32(set.Len()))}
	p.next.Store(uint32(set.Rand()))
	return p
}

type rrPicker struct {
	backends []*Backend
	n, m     uint64   // len(backends) and its fastmod multiplier
	_        [64]byte // keep the counter off the slice header's cache line
	next     atomic.Uint32
	_        [60]byte
}

func (p *rrPicker) Pick(*Request) *Backend {
	return p.backends[fastmod(p.next.Add(1), p.m, p.n)]
}

// SmoothWeighted is nginx's smooth weighted round robin (ngx_http_upstream_round_robin.c,
// "smooth weighted round-robin balancing", nginx 1.3.1): at every step each backend's
// current weight grows by its weight, the largest is picked and loses the total. The
// sequence spreads each backend's picks evenly (weights 5, 1, 1 give a a b a c a a, not
// a a a a a b c) and repeats every total-weight picks.
//
// Rather than take a lock to run the step on every pick, Build runs the steps once and
// stores one period of the sequence; a pick is one atomic add and an index, as for
// [RoundRobin]. Weights are reduced by their greatest common divisor; a period longer
// than MaxPeriod (or effective weights that are not whole, during slow start, which are
// first multiplied by 100) is scaled down to fit, keeping every weight at least 1, so
// the proportions are then exact to within about n/MaxPeriod. Building costs n × period
// steps, so the period is also held to 2^24/n (16,384 picks for 1,000 backends).
//
// The zero value is ready to use. It is safe for concurrent use.
type SmoothWeighted struct {
	// MaxPeriod bounds the stored sequence, in picks. Zero means 65536.
	MaxPeriod int
}

// Build returns a smooth weighted round-robin picker over set.
func (a *SmoothWeighted) Build(set *Set) Picker {
	n := set.Len()
	if set.Uniform() {
		return RoundRobin{}.Build(set)
	}
	maxPeriod := 1 << 16
	if a != nil && a.MaxPeriod > 0 {
		maxPeriod = a.MaxPeriod
	}
	// Building costs n × period steps: keep it under 2^24 (some 20 ms) so that a
	// weight change in a pool of thousands does not stall the control plane.
	maxPeriod = max(min(maxPeriod, (1<<24)/n), n)
	ws := integerWeights(set.Weights(), maxPeriod)
	seq := nginxSequence(set.Backends(), ws)
	p := &seqPicker{seq: seq, n: uint64(len(seq)), m: fastmodM(uint32(len(seq)))}
	p.next.Store(uint32(set.Rand()))
	return p
}

// integerWeights turns effective weights into whole weights reduced by their gcd,
// whose sum is at most maxSum (when len(w) <= maxSum).
func integerWeights(w []float64, maxSum int) []int {
	scale := 1.0
	for _, x := range w {
		if x != math.Trunc(x) {
			scale = 100
			break
		}
	}
	out := make([]int, len(w))
	sum := 0.0
	for _, x := range w {
		sum += x * scale
	}
	if sum > float64(maxSum) {
		scale *= float64(maxSum) / sum
	}
	g := 0
	for i, x := range w {
		out[i] = max(int(math.Floor(x*scale)), 1)
		g = gcd(g, out[i])
	}
	for i := range out {
		out[i] /= g
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// nginxSequence runs one period of nginx's smooth weighted round robin.
func nginxSequence(bs []*Backend, ws []int) []*Backend {
	total := 0
	for _, w := range ws {
		total += w
	}
	cur := make([]int, len(ws))
	seq := make([]*Backend, total)
	for k := range seq {
		best := 0
		for i, w := range ws {
			cur[i] += w
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq[k] = bs[best]
	}
	return seq
}

type seqPicker struct {
	seq  []*Backend
	n, m uint64
	_    [64]byte
	next atomic.Uint32
	_    [60]byte
}

func (p *seqPicker) Pick(*Request) *Backend {
	return p.seq[fastmod(p.next.Add(1), p.m, p.n)]
}

// Random picks a ready backend uniformly at random from the pool's random source,
// ignoring weights (weight 0 still drains). Simple and stateless; with many gateway
// replicas it spreads load as evenly as round robin without coordination. The zero
// value is ready to use; it is safe for concurrent use.
type Random struct{}

// Build returns a random picker over set.
func (Random) Build(set *Set) Picker { return &randomPicker{set: set} }

type randomPicker struct{ set *Set }

func (p *randomPicker) Pick(*Request) *Backend {
	return p.set.backends[p.set.Intn(len(p.set.backends))]
}
