package middleware

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// limitGroup is one adaptive limit: a route's, or a (route, tenant)'s. Its classes
// share its in-flight count. The request path touches only atomics; the window's
// update runs under mu, taken with TryLock by whichever request ends the window, so
// no request ever waits for it.
type limitGroup struct {
	// Written by every request, each on its own cache line so that cores do not
	// fight over the read-mostly fields (BenchmarkAdmitAdaptiveParallel).
	inFlight atomic.Int64
	_        [cacheLine - 8]byte
	stripes  [sampleStripes]sampleStripe

	// Read by every request, written once a window.
	classes  []classLimit
	winStart atomic.Int64 // clock nanoseconds
	minRTT   atomic.Int64 // the window's smallest latency
	maxIn    atomic.Int64 // the window's most in flight
	invalid  atomic.Uint64

	ad            *adaptive
	route, tenant string
	tenants       atomic.Pointer[map[string]*limitGroup] // a route's tenants' groups

	limit              atomic.Int64 // the group's limit now
	minLimit, maxLimit atomic.Int64
	lastRTT, noLoadRTT atomic.Int64

	mu     sync.Mutex // the update's state below
	algo   LimitAlgorithm
	est    float64 // the smoothed limit, unrounded
	noLoad [noLoadBuckets]noLoadBucket
}

// cacheLine is the padding unit that keeps hot counters apart.
const cacheLine = 64

// sampleStripes is how many stripes a window's counts are spread over: a request
// adds to one chosen at random, the update sums them, and concurrent requests seldom
// share a cache line.
const sampleStripes = 8

type sampleStripe struct {
	count, errs, sum atomic.Int64
	_                [cacheLine - 24]byte
}

// classLimit is a class's share of a group's limit.
type classLimit struct {
	limit    atomic.Int64 // ceil(Ceiling × the group's limit), at least 1
	rejected atomic.Uint64
	key      string
	window   atomic.Pointer[metrics.Window]
}

// noLoadBuckets is how many sub-spans the no-load latency's NoLoadSpan is cut into.
const noLoadBuckets = 16

type noLoadBucket struct {
	epoch int64 // sub-span number; 0 for empty
	sum   int64 // the sub-span's successful latencies, nanoseconds
	n     int64 // and their count
}

// noLoadMinSamples is how many latencies a sub-span needs for its mean to count in
// the no-load estimate while another sub-span has that many: a mean of 100 latencies
// of a coefficient of variation of 0.5 is within 5% of the true mean at one standard
// deviation.
const noLoadMinSamples = 100

// tryAcquire takes a slot of class c, or reports false when the class's ceiling is
// reached, or its headroom when tenant is heavy (usage shedding).
func (g *limitGroup) tryAcquire(c int, tenant string, now time.Time) bool {
	lim := g.classes[c].limit.Load()
	for {
		v := g.inFlight.Load()
		if v >= lim {
			return false
		}
		if u := g.ad.usage; u != nil && tenant != "" && float64(v+1) > u.cfg.Headroom*float64(lim) && u.isHeavy(tenant, now, lim) {
			u.shed.Add(1)
			return false
		}
		if g.inFlight.CompareAndSwap(v, v+1) {
			if v+1 > g.maxIn.Load() {
				storeMax(&g.maxIn, v+1)
			}
			return true
		}
	}
}

// reject counts a rejection of class c and records it in the class's window.
func (g *limitGroup) reject(c int, now time.Time) {
	cl := &g.classes[c]
	cl.rejected.Add(1)
	g.ad.limited.Add(1)
	if w := cl.window.Load(); w != nil {
		w.RecordAt(now, metrics.Observation{Outcome: metrics.OutcomeRejected})
	}
}

// release frees a slot and takes the request's sample: its latency from start to
// end and whether it failed.
func (g *limitGroup) release(start, end int64, failed bool) {
	g.inFlight.Add(-1)
	rtt := end - start
	st := &g.stripes[rand.Uint32()%sampleStripes]
	switch {
	case failed:
		st.errs.Add(1)
		st.count.Add(1)
	case rtt <= 0 || rtt > int64(g.ad.cfg.MaxRTT):
		g.invalid.Add(1)
		return
	default:
		st.sum.Add(rtt)
		if rtt < g.minRTT.Load() {
			storeMin(&g.minRTT, rtt)
		}
		st.count.Add(1)
	}
	ws := g.winStart.Load()
	if ws == 0 {
		g.winStart.CompareAndSwap(0, end) // the first sample opens the first window
		return
	}
	if el := end - ws; el >= int64(g.ad.cfg.Window) || el < 0 {
		g.update(end)
	}
}

// update ends the window at now (clock nanoseconds): the algorithm proposes the
// next limit, which is checked, smoothed and bounded. Whoever gets the lock does it.
func (g *limitGroup) update(now int64) {
	if !g.mu.TryLock() {
		return
	}
	defer g.mu.Unlock()
	ws := g.winStart.Load()
	el := now - ws
	if el >= 0 && el < int64(g.ad.cfg.Window) {
		return // another request ended this window first
	}
	var count, errs, sum int64
	for i := range g.stripes {
		count += g.stripes[i].count.Load()
	}
	if el >= 0 && el < int64(g.ad.cfg.MaxWindow) && count < int64(g.ad.cfg.MinSamples) {
		return // too few samples yet: the window goes on
	}
	count = 0
	for i := range g.stripes {
		st := &g.stripes[i]
		count += st.count.Swap(0)
		errs += st.errs.Swap(0)
		sum += st.sum.Swap(0)
	}
	g.winStart.Store(now)
	minRTT, maxIn := g.minRTT.Swap(math.MaxInt64), g.maxIn.Swap(g.inFlight.Load())
	if el < 0 || count == 0 {
		return // the clock went back, or an empty window: nothing to learn
	}
	s := LimitSample{Count: int(count), Errors: int(errs), MaxInFlight: int(maxIn)}
	ok := count - errs
	if ok > 0 {
		s.RTT = time.Duration(sum / ok)
		s.MinRTT = time.Duration(minRTT)
		g.lastRTT.Store(sum / ok)
	}
	s.NoLoadRTT = time.Duration(g.observeNoLoad(now, sum, ok))
	s.Dropped = float64(errs) >= g.ad.cfg.ErrorThreshold*float64(count)
	next := g.algo.Update(g.est, s)
	if math.IsNaN(next) || math.IsInf(next, 0) {
		next = g.est
	}
	if s.Dropped {
		next = min(next, g.est)
	}
	sm := g.ad.cfg.Smoothing
	lo, hi := float64(g.minLimit.Load()), float64(g.maxLimit.Load())
	g.est = min(max(g.est*(1-sm)+next*sm, lo), hi)
	g.setLimit(int(math.Round(g.est)))
	g.publish(time.Unix(0, now), s.RTT)
}

// observeNoLoad folds a window's successful latencies (their sum and count) into the
// no-load estimate and returns the estimate: the smallest mean latency of the
// sub-spans of the last NoLoadSpan that hold noLoadMinSamples latencies (or, while
// none does, of the one that holds the most).
//
// Means over sub-spans, not the fastest request: when service times vary, the
// fastest of thousands of requests, and even the fastest of many small windows'
// means, is well below what a request takes without a queue, and Vegas reads the
// difference as a queue: it cuts the limit, the windows shrink, their means spread
// more, and the limit sinks to a few requests (log-normal service times in
// autoscale/simulate's TestAdaptiveLimitFollowsAHalvedBackend show it). A sub-span
// of NoLoadSpan/16 (about 2 s by default) holds enough requests for its mean to be
// steady.
func (g *limitGroup) observeNoLoad(now, sum, n int64) int64 {
	width := max(int64(g.ad.cfg.NoLoadSpan)/noLoadBuckets, 1)
	epoch := now/width + 1
	b := &g.noLoad[epoch%noLoadBuckets]
	if b.epoch != epoch {
		*b = noLoadBucket{epoch: epoch}
	}
	b.sum += sum
	b.n += n
	best, bestN := int64(0), int64(0)
	for _, b := range g.noLoad {
		if b.epoch <= epoch-noLoadBuckets || b.epoch > epoch || b.n == 0 {
			continue
		}
		mean, enough := b.sum/b.n, b.n >= noLoadMinSamples
		switch {
		case enough && (bestN < noLoadMinSamples || mean < best):
			best, bestN = mean, b.n
		case !enough && bestN < noLoadMinSamples && b.n > bestN:
			best, bestN = mean, b.n
		}
	}
	g.noLoadRTT.Store(best)
	return best
}

// setLimit sets the group's limit and its classes' ceilings.
func (g *limitGroup) setLimit(n int) {
	g.limit.Store(int64(n))
	for i, c := range g.ad.classes {
		g.classes[i].limit.Store(max(1, int64(math.Ceil(c.Ceiling*float64(n)))))
	}
}

// setBounds changes the bounds and moves the limit inside them; under ad.mu.
func (g *limitGroup) setBounds(lo, hi int) {
	g.minLimit.Store(int64(lo))
	g.maxLimit.Store(int64(hi))
	g.mu.Lock()
	g.est = min(max(g.est, float64(lo)), float64(hi))
	g.setLimit(int(math.Round(g.est)))
	g.mu.Unlock()
}

// publish records each class's limit into its window, refreshing the window (the
// registry may have evicted it since).
func (g *limitGroup) publish(now time.Time, rtt time.Duration) {
	reg := g.ad.reg
	if reg == nil {
		return
	}
	for i := range g.classes {
		cl := &g.classes[i]
		w := reg.Window(metrics.ScopeLimit, cl.key)
		cl.window.Store(w)
		w.RecordAt(now, metrics.Observation{Latency: rtt, Value: float64(cl.limit.Load())})
	}
}

func (g *limitGroup) state(i int, c Class) LimitState {
	class := c.Priority
	if class == math.MinInt {
		class = 0
	}
	return LimitState{
		Route: g.route, Tenant: g.tenant, Class: class,
		Limit:      int(g.classes[i].limit.Load()),
		GroupLimit: int(g.limit.Load()),
		InFlight:   int(g.inFlight.Load()),
		Min:        int(g.minLimit.Load()), Max: int(g.maxLimit.Load()),
		Rejected: g.classes[i].rejected.Load(), Invalid: g.invalid.Load(),
		RTT: time.Duration(g.lastRTT.Load()), NoLoadRTT: time.Duration(g.noLoadRTT.Load()),
	}
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func storeMin(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v >= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}
