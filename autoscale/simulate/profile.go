package simulate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// A Profile is a traffic profile: the expected arrival rate over the run. The
// simulator draws arrivals from it as a Poisson process whose rate is held constant
// over each second at the value Rate returns for the second's start (exact for
// profiles that change on whole seconds). Profiles made by this package are values
// that are safe for concurrent use.
type Profile interface {
	// Rate returns the expected arrival rate, in requests per second, at offset t from
	// the run's start. It must be a pure function of t, finite and >= 0.
	Rate(t time.Duration) float64
}

// Tenant is one named stream of traffic in a [Mix].
type Tenant struct {
	// Name is the tenant's key in the tenant scope of the metric windows. Required.
	Name string
	// Profile is the tenant's traffic. Required.
	Profile Profile
	// Priority is the [middleware.Info.Priority] of the tenant's requests: their
	// class under adaptive limits ([Scenario.Adaptive]) and priority shedding.
	Priority int
	// Quota, when > 0, throttles the tenant at the admission to Quota requests per
	// second, a token bucket with bursts of QuotaBurst (zero means one second's worth,
	// at least 1): the tenant's contract, set before the run and never expiring,
	// consulted through middleware.WithTenantLimiter after any throttle the loop sets.
	// A request over it is throttled (429), which the run counts as shed. Zero means
	// no quota.
	Quota float64
	// QuotaBurst is the quota's bucket size, >= 0; see Quota.
	QuotaBurst int
}

// Mix is multi-tenant traffic: the superposition of its tenants' profiles, each
// arrival tagged with its tenant (recorded in the tenant scope, and subject to
// throttling actions for that tenant).
type Mix []Tenant

// Rate returns the sum of the tenants' rates.
func (m Mix) Rate(t time.Duration) float64 {
	var r float64
	for _, x := range m {
		r += x.Profile.Rate(t)
	}
	return r
}

// Validate reports every problem with the mix.
func (m Mix) Validate() error {
	var errs []error
	if len(m) == 0 {
		errs = append(errs, errors.New("empty mix"))
	}
	seen := map[string]bool{}
	for i, x := range m {
		if x.Name == "" || x.Profile == nil {
			errs = append(errs, fmt.Errorf("tenant %d needs a name and a profile", i))
		}
		if seen[x.Name] {
			errs = append(errs, fmt.Errorf("duplicate tenant %q", x.Name))
		}
		seen[x.Name] = true
		if !(x.Quota >= 0) || math.IsInf(x.Quota, 0) || x.QuotaBurst < 0 {
			errs = append(errs, fmt.Errorf("tenant %q: quota %v with burst %d: want a finite quota >= 0 and a burst >= 0", x.Name, x.Quota, x.QuotaBurst))
		}
	}
	return errors.Join(errs...)
}

// Constant is a constant rate, in requests per second.
type Constant float64

// Rate returns c.
func (c Constant) Rate(time.Duration) float64 { return float64(c) }

// Step is a rate that jumps from From to To at At.
type Step struct {
	From, To float64
	At       time.Duration
}

// Rate returns From before At and To from At.
func (s Step) Rate(t time.Duration) float64 {
	if t < s.At {
		return s.From
	}
	return s.To
}

// Ramp is a rate that moves linearly from From to To between Start and Start+Length,
// and holds each end outside.
type Ramp struct {
	From, To      float64
	Start, Length time.Duration
}

// Rate returns the ramp's rate at t.
func (r Ramp) Rate(t time.Duration) float64 {
	switch {
	case t <= r.Start:
		return r.From
	case r.Length <= 0 || t >= r.Start+r.Length:
		return r.To
	}
	f := float64(t-r.Start) / float64(r.Length)
	return r.From + (r.To-r.From)*f
}

// FlashSale is a base rate that rises to Base×Peak over Rise from Start, holds for
// Hold, and falls back to Base over Fall: a sale opening, 10–20× within minutes.
type FlashSale struct {
	// Base is the rate outside the sale, in requests per second.
	Base float64
	// Peak is the multiple of Base at the sale's height, e.g. 15.
	Peak float64
	// Start is when the rise begins; Rise, Hold and Fall are the phases' lengths.
	Start, Rise, Hold, Fall time.Duration
}

// Rate returns the sale's rate at t.
func (f FlashSale) Rate(t time.Duration) float64 {
	top := f.Base * f.Peak
	switch {
	case t < f.Start:
		return f.Base
	case t < f.Start+f.Rise:
		return Ramp{From: f.Base, To: top, Start: f.Start, Length: f.Rise}.Rate(t)
	case t < f.Start+f.Rise+f.Hold:
		return top
	case t < f.Start+f.Rise+f.Hold+f.Fall:
		return Ramp{From: top, To: f.Base, Start: f.Start + f.Rise + f.Hold, Length: f.Fall}.Rate(t)
	}
	return f.Base
}

// Diurnal is a daily cycle: Min at the trough and Max at the peak, a cosine of period
// Period (zero means 24 h) with its trough at Trough.
type Diurnal struct {
	Min, Max float64
	Period   time.Duration
	Trough   time.Duration
}

// Rate returns the cycle's rate at t.
func (d Diurnal) Rate(t time.Duration) float64 {
	p := d.Period
	if p <= 0 {
		p = 24 * time.Hour
	}
	phase := 2 * math.Pi * float64(t-d.Trough) / float64(p)
	return d.Min + (d.Max-d.Min)*(1-math.Cos(phase))/2
}

// Bursty is Poisson traffic at Base with bursts: bursts start as a Poisson process of
// mean interval Every, each lasts uniformly between MinLength and MaxLength and
// multiplies the rate by Factor. The bursts are drawn once, from Seed, by [NewBursty],
// so the profile is a pure function of time.
type Bursty struct {
	Base, Factor float64
	bursts       []burst
}

type burst struct{ start, end time.Duration }

// NewBursty returns bursty traffic over [0, horizon). Every must be positive, Factor
// at least 1 and MinLength <= MaxLength.
func NewBursty(base, factor float64, every, minLength, maxLength, horizon time.Duration, seed uint64) (*Bursty, error) {
	var errs []error
	if !(base >= 0) || math.IsInf(base, 0) {
		errs = append(errs, fmt.Errorf("base rate %v is not >= 0", base))
	}
	if !(factor >= 1) || math.IsInf(factor, 0) {
		errs = append(errs, fmt.Errorf("burst factor %v is not >= 1", factor))
	}
	if every <= 0 || minLength <= 0 || maxLength < minLength {
		errs = append(errs, fmt.Errorf("burst interval %v and lengths [%v, %v] are not positive and ordered", every, minLength, maxLength))
	}
	if horizon <= 0 || horizon > 30*24*time.Hour {
		errs = append(errs, fmt.Errorf("horizon %v out of (0, 30 days]", horizon))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: bursty: %w", ErrInvalidConfig, err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6275727374))
	b := &Bursty{Base: base, Factor: factor}
	t := time.Duration(0)
	for {
		t += time.Duration(rng.ExpFloat64() * float64(every))
		if t >= horizon {
			break
		}
		l := minLength + time.Duration(rng.Float64()*float64(maxLength-minLength))
		b.bursts = append(b.bursts, burst{t.Truncate(time.Second), (t + l).Truncate(time.Second)})
		t += l
	}
	return b, nil
}

// Rate returns Base, or Base×Factor within a burst.
func (b *Bursty) Rate(t time.Duration) float64 {
	lo, hi := 0, len(b.bursts)
	for lo < hi { // first burst ending after t
		m := (lo + hi) / 2
		if b.bursts[m].end <= t {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(b.bursts) && b.bursts[lo].start <= t {
		return b.Base * b.Factor
	}
	return b.Base
}

// Bursts returns the bursts' start and end offsets.
func (b *Bursty) Bursts() [][2]time.Duration {
	out := make([][2]time.Duration, len(b.bursts))
	for i, x := range b.bursts {
		out[i] = [2]time.Duration{x.start, x.end}
	}
	return out
}

// Func adapts a function to [Profile].
type Func func(t time.Duration) float64

// Rate returns f(t).
func (f Func) Rate(t time.Duration) float64 { return f(t) }

// Sum is the superposition of profiles, without tenants.
type Sum []Profile

// Rate returns the sum of the profiles' rates.
func (s Sum) Rate(t time.Duration) float64 {
	var r float64
	for _, p := range s {
		r += p.Rate(t)
	}
	return r
}

// Scaled multiplies a profile's rate by Factor.
type Scaled struct {
	Profile Profile
	Factor  float64
}

// Rate returns Factor × the profile's rate.
func (s Scaled) Rate(t time.Duration) float64 { return s.Factor * s.Profile.Rate(t) }

// arrivals yields arrival times (nanoseconds from the start) in order.
type arrivals interface {
	// next returns the next arrival strictly before end, or false.
	next() (int64, bool)
}

// poisson draws a Poisson process whose rate is constant over each second.
type poisson struct {
	p        Profile
	rng      *rand.Rand
	end      int64
	t        int64 // time of the last arrival, or the start of the current second
	sliceEnd int64
	rate     float64 // per nanosecond
}

func newPoisson(p Profile, rng *rand.Rand, end time.Duration) *poisson {
	g := &poisson{p: p, rng: rng, end: int64(end), sliceEnd: 0, t: 0}
	g.slice(0)
	return g
}

func (g *poisson) slice(start int64) {
	g.t = start
	g.sliceEnd = start + int64(time.Second)
	r := g.p.Rate(time.Duration(start))
	if !(r > 0) || math.IsInf(r, 0) {
		r = 0
	}
	g.rate = r / float64(time.Second)
}

func (g *poisson) next() (int64, bool) {
	for g.t < g.end {
		if g.rate > 0 {
			t := g.t + int64(g.rng.ExpFloat64()/g.rate)
			if t < g.sliceEnd {
				g.t = t
				if t >= g.end {
					return 0, false
				}
				return t, true
			}
		}
		g.slice(g.sliceEnd)
	}
	return 0, false
}

// merged merges tenants' arrivals, returning the tenant of each.
type merged struct {
	gens  []arrivals
	heads []int64
	ok    []bool
}

func newMerged(gens []arrivals) *merged {
	m := &merged{gens: gens, heads: make([]int64, len(gens)), ok: make([]bool, len(gens))}
	for i, g := range gens {
		m.heads[i], m.ok[i] = g.next()
	}
	return m
}

func (m *merged) next() (int64, int, bool) {
	best := -1
	for i := range m.gens {
		if m.ok[i] && (best < 0 || m.heads[i] < m.heads[best]) {
			best = i
		}
	}
	if best < 0 {
		return 0, 0, false
	}
	t := m.heads[best]
	m.heads[best], m.ok[best] = m.gens[best].next()
	return t, best, true
}
