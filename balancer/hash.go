package balancer

import (
	"math"
	"math/bits"
	"slices"
)

// Hash is consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
// "Consistent Hashing with Bounded Loads", SODA 2018), keyed by [Request.Key]: a
// tenant, a session id, a header value. Each backend owns points on a hash ring in
// proportion to its effective weight; a key goes to the owner of the first point at or
// after the key's hash whose load (requests in flight) is below its capacity,
//
//	ceil((1+Epsilon) × (in flight in the pool + 1) × weight / total weight),
//
// so no backend carries more than (1+ε) times its share while keys still stick to
// their backend whenever it has room (Vimeo's and HAProxy's hash-balance-factor use the
// same rule). With a negative Epsilon it is plain ring hashing (Karger et al., STOC
// 1997). A request without a key goes to a random point.
//
// The load check and the pick are not one atomic step, so picks racing on the same
// backend may overshoot its capacity by the number of racers, briefly.
//
// The ring lookup uses a table indexed by the hash's top bits, so a pick is a table
// read and a short scan rather than a binary search. Point hashes depend only on the
// backend ids, so gateway replicas agree on the ring. The zero value is ready to use;
// it is safe for concurrent use.
type Hash struct {
	// Epsilon is the allowed overload, above 0; zero means 0.25. Negative means no
	// bound.
	Epsilon float64
	// Replicas is the number of ring points of a backend of average weight; zero means
	// 100. The ring holds at most 2^20 points in all (fewer per backend in very large
	// pools).
	Replicas int
}

var _ Algorithm = (*Hash)(nil)

// NeedsTotalInFlight implements [LoadAware]: the bound needs the pool's load.
func (a *Hash) NeedsTotalInFlight() bool { return a == nil || a.Epsilon >= 0 }

const maxRingPoints = 1 << 20

// A ring point is one uint64: the point's hash in the high 40 bits and the backend's
// index in the low 24, so the ring is 8 bytes a point and sorts as the hashes do.
const (
	idxBits = 24
	idxMask = 1<<idxBits - 1
)

// Build returns a bounded-load consistent-hash picker over set.
func (a *Hash) Build(set *Set) Picker {
	eps, reps := 0.25, 100
	if a != nil {
		if a.Epsilon != 0 {
			eps = a.Epsilon
		}
		if a.Replicas > 0 {
			reps = a.Replicas
		}
	}
	n := set.Len()
	ws := set.Weights()
	var wsum float64
	for _, w := range ws {
		wsum += w
	}
	mean := wsum / float64(n)
	if n > idxMask+1 {
		n = idxMask + 1 // more backends than a ring point can name: the rest get none
	}
	per := float64(reps)
	if per*float64(n) > maxRingPoints {
		per = maxRingPoints / float64(n)
	}
	var pts []uint64
	for i, b := range set.Backends()[:n] {
		k := max(int(math.Round(per*ws[i]/mean)), 1)
		h := hashString(b.id)
		for r := range k {
			pts = append(pts, mix64(h+uint64(r+1)*0x9e3779b97f4a7c15)&^idxMask|uint64(i))
		}
	}
	slices.Sort(pts)
	tbits := min(max(bits.Len(uint(len(pts))), 1), 16)
	table := make([]uint32, 1<<tbits)
	j := 0
	for t := range table {
		lo := uint64(t) << (64 - tbits)
		for j < len(pts) && pts[j] < lo {
			j++
		}
		table[t] = uint32(j)
	}
	p := &hashPicker{
		set:     set,
		points:  pts,
		table:   table,
		shift:   uint(64 - tbits),
		bounded: eps >= 0,
		factor:  1 + eps,
		uniform: set.Uniform(),
		wsum:    wsum,
	}
	return p
}

type hashPicker struct {
	set     *Set
	points  []uint64
	table   []uint32
	shift   uint
	bounded bool
	factor  float64
	uniform bool
	wsum    float64
}

// start returns the index of the first point at or after h (wrapping to 0).
func (p *hashPicker) start(h uint64) int {
	h &^= idxMask
	i := int(p.table[h>>p.shift])
	for i < len(p.points) && p.points[i] < h {
		i++
	}
	if i == len(p.points) {
		return 0
	}
	return i
}

func (p *hashPicker) Pick(req *Request) *Backend {
	var h uint64
	if req == nil || req.Key == "" {
		h = p.set.rand64()
	} else {
		h = hashString(req.Key)
	}
	i := p.start(h)
	bs := p.set.backends
	if !p.bounded {
		return bs[p.points[i]&idxMask]
	}
	m := float64(p.set.TotalInFlight() + 1)
	capUniform := int64(math.Ceil(p.factor * m / float64(len(bs))))
	for range len(p.points) {
		idx := p.points[i] & idxMask
		b := bs[idx]
		c := capUniform
		if !p.uniform {
			c = int64(math.Ceil(p.factor * m * p.set.weights[idx] / p.wsum))
		}
		if b.inFlight.Load() < c {
			return b
		}
		i++
		if i == len(p.points) {
			i = 0
		}
	}
	// Every backend is at capacity (possible only under concurrent picks): take the
	// key's own backend.
	return bs[p.points[p.start(h)]&idxMask]
}
