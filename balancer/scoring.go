package balancer

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Scoring defaults; see [ScoringConfig].
const (
	DefaultMaxReportAge     = 5 * time.Second
	DefaultSaturatedQueue   = 5
	DefaultSaturatedKVCache = 0.8
	DefaultAbsMargin        = 16
	DefaultRelMargin        = 1.5
	// MaxTopK is the largest [ScoringConfig.TopK].
	MaxTopK = 16
)

// Weights weigh the scorers of [Scoring]. Each scorer gives a candidate 0..1 (1 is
// best); a candidate's score is the weighted sum. A weight of 0 turns its scorer off.
// Weights must be finite and not negative, and at least one above 0.
type Weights struct {
	// Queue weighs the backend's reported queue (fewer waiting is better).
	Queue float64
	// KVCache weighs the backend's reported KV-cache use (less is better).
	KVCache float64
	// InFlight weighs the requests the pool has in flight on the backend.
	InFlight float64
	// Latency weighs the backend's peak-EWMA latency ([Backend.PeakLatency]).
	Latency float64
	// Prefix weighs prefix affinity: the share of the prompt's leading blocks the
	// backend was recently sent, while the backend's load is within the margins.
	Prefix float64
}

// DefaultWeights are the weights of a [ScoringConfig] whose Weights are zero: prefix
// affinity outweighs any one load scorer but not all of them together.
var DefaultWeights = Weights{Queue: 2, KVCache: 2, InFlight: 1, Latency: 1, Prefix: 3}

// Validate reports every bad weight at once.
func (w Weights) Validate() error {
	var errs []error
	sum := 0.0
	for _, f := range []struct {
		name string
		v    float64
	}{{"queue", w.Queue}, {"kv_cache", w.KVCache}, {"in_flight", w.InFlight}, {"latency", w.Latency}, {"prefix", w.Prefix}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			errs = append(errs, fmt.Errorf("%w: weight %s %v: must be finite and not negative", ErrInvalidConfig, f.name, f.v))
			continue
		}
		sum += f.v
	}
	if len(errs) == 0 && sum == 0 {
		errs = append(errs, fmt.Errorf("%w: every weight is 0", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// ScoringConfig configures [Scoring]. The zero value is every default.
type ScoringConfig struct {
	// Weights are the initial weights; zero means [DefaultWeights]. [Scoring.SetWeights]
	// changes them at run time.
	Weights Weights
	// MaxReportAge is how old a load report ([Backend.Load]) may be and still count;
	// an older one counts as none. Zero means [DefaultMaxReportAge]; negative is an
	// error. Set it above the interval at which reports arrive.
	MaxReportAge time.Duration
	// SaturatedQueue: a backend whose fresh report has more requests waiting than
	// this is saturated. Zero means [DefaultSaturatedQueue] (the inference
	// extension's saturation detector's default); negative turns the test off.
	SaturatedQueue int64
	// SaturatedKVCache: a backend whose fresh report has more KV-cache use than this
	// (0..1) is saturated. Zero means [DefaultSaturatedKVCache]; negative turns the
	// test off; NaN is an error.
	SaturatedKVCache float64
	// TopK, above 1, picks by power of two choices among the k best-scored candidates
	// (the one of two random ones with fewer requests in flight), at most [MaxTopK];
	// 0 or 1 picks the best. Negative is an error.
	TopK int
	// Sample, above 0, scores at most this many candidates, a run of them from a random
	// place in the set, to bound a pick's cost in large pools; 0 scores every ready
	// backend. Negative is an error.
	Sample int
	// BlockSize is the prefix block in bytes; zero means [DefaultBlockSize]. Negative
	// is an error.
	BlockSize int
	// MaxBlocks is how many of a prompt's leading blocks are hashed; zero means
	// [DefaultMaxBlocks]; at most [MaxPrefixBlocks]. Longer prompts are cut there.
	MaxBlocks int
	// PrefixEntries is the size of each backend's set of recent block hashes, rounded
	// up to a power of two (8 bytes an entry); zero means [DefaultPrefixEntries]; at
	// most 2^20.
	PrefixEntries int
	// AbsMargin and RelMargin gate prefix affinity by load, as SGLang's cache-aware
	// router does: a backend whose load exceeds the least loaded candidate's by more
	// than AbsMargin requests and is more than RelMargin times it gets no prefix
	// score, so traffic goes by load. Zero means [DefaultAbsMargin] and
	// [DefaultRelMargin]; negative (or a RelMargin below 1) is an error.
	AbsMargin float64
	RelMargin float64
}

// Validate reports every bad setting at once.
func (c ScoringConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: scoring: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Weights != (Weights{}) {
		if err := c.Weights.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MaxReportAge < 0 {
		bad("negative max report age %v", c.MaxReportAge)
	}
	if math.IsNaN(c.SaturatedKVCache) {
		bad("saturated KV cache is NaN")
	}
	if c.TopK < 0 || c.TopK > MaxTopK {
		bad("top k %d out of [0, %d]", c.TopK, MaxTopK)
	}
	if c.Sample < 0 {
		bad("negative sample %d", c.Sample)
	}
	if c.BlockSize < 0 {
		bad("negative block size %d", c.BlockSize)
	}
	if c.MaxBlocks < 0 || c.MaxBlocks > MaxPrefixBlocks {
		bad("max blocks %d out of [0, %d]", c.MaxBlocks, MaxPrefixBlocks)
	}
	if c.PrefixEntries < 0 || c.PrefixEntries > maxPrefixEntries {
		bad("prefix entries %d out of [0, %d]", c.PrefixEntries, maxPrefixEntries)
	}
	if math.IsNaN(c.AbsMargin) || c.AbsMargin < 0 {
		bad("absolute margin %v is negative or NaN", c.AbsMargin)
	}
	if math.IsNaN(c.RelMargin) || c.RelMargin < 0 || (c.RelMargin > 0 && c.RelMargin < 1) {
		bad("relative margin %v is not 0 or at least 1", c.RelMargin)
	}
	return errors.Join(errs...)
}

// withDefaults fills in the defaults and clamps what Validate would reject, for a
// Scoring not made by NewScoring.
func (c ScoringConfig) withDefaults() ScoringConfig {
	if c.Weights == (Weights{}) || c.Weights.Validate() != nil {
		c.Weights = DefaultWeights
	}
	if c.MaxReportAge <= 0 {
		c.MaxReportAge = DefaultMaxReportAge
	}
	if c.SaturatedQueue == 0 {
		c.SaturatedQueue = DefaultSaturatedQueue
	}
	if c.SaturatedKVCache == 0 || math.IsNaN(c.SaturatedKVCache) {
		c.SaturatedKVCache = DefaultSaturatedKVCache
	}
	c.TopK = min(max(c.TopK, 1), MaxTopK)
	c.Sample = max(c.Sample, 0)
	if c.BlockSize <= 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.MaxBlocks <= 0 {
		c.MaxBlocks = DefaultMaxBlocks
	}
	c.MaxBlocks = min(c.MaxBlocks, MaxPrefixBlocks)
	if c.PrefixEntries <= 0 {
		c.PrefixEntries = DefaultPrefixEntries
	}
	c.PrefixEntries = min(c.PrefixEntries, maxPrefixEntries)
	if !(c.AbsMargin > 0) {
		c.AbsMargin = DefaultAbsMargin
	}
	if !(c.RelMargin >= 1) {
		c.RelMargin = DefaultRelMargin
	}
	return c
}

// Scoring is a filter → score → pick algorithm for model servers, after the Kubernetes
// Gateway API inference extension's endpoint picker and llm-d's inference scheduler
// (a scheduling profile runs filter plugins, then weighted scorer plugins, then a
// picker). Each pick:
//
//  1. Filters: the candidates are the [Set]'s backends (already healthy, and of the
//     request's model when it names one, see [LabelModel]) that are not saturated: a
//     backend whose fresh load report has more than SaturatedQueue requests waiting
//     or more than SaturatedKVCache KV-cache use is left out, as the inference
//     extension's saturation detector does. When every candidate is saturated none is
//     left out: the pick goes on among all of them (queueing at a busy model server
//     beats a certain 503; the queue and KV-cache scorers still prefer the least
//     saturated).
//  2. Scores each candidate 0..1 per scorer and sums them with the [Weights]: queue
//     depth, KV-cache use, requests in flight and peak-EWMA latency, each normalised
//     over the candidates (the least gets 1, the most 0, linearly between; when all
//     are equal each gets 0.5), and prefix affinity (below). A report older than
//     MaxReportAge, or none, counts as unknown: the backend gets 0.5 from the queue
//     and KV-cache scorers, the middle, so a backend that has not reported yet is
//     neither flooded nor starved, and it is never saturated. A backend without a
//     latency sample gets 0.5 from the latency scorer, for the same reason.
//  3. Picks the best score (ties broken at random), or with TopK above 1 the one of
//     two random candidates among the k best with fewer requests in flight, which
//     spreads a burst that arrives between two load reports.
//
// Prefix affinity: when [Request.Prompt] is set, its leading whole blocks of
// BlockSize bytes (at most MaxBlocks) are hashed in a chain, as vLLM's prefix cache
// hashes token blocks, and each candidate scores the share of them its set of recently
// served blocks holds (the longest matched prefix over the prompt's blocks: 1 is a
// full match). The score counts only while the candidate's load (requests in flight
// through this pool, or the reported running plus waiting when higher) is within
// AbsMargin or RelMargin of the least loaded candidate's: past both, the cache is not
// worth the queue, and the pick goes by load (SGLang's cache-aware router switches to
// the shortest queue on the same test, sgl-router's balance_abs_threshold and
// balance_rel_threshold). The picked backend's set records the prompt's blocks at
// the pick, not at Done, so that a burst sharing a new prefix follows its first
// request at once, as SGLang's router inserts a prompt into its tree when it routes
// it. The sets belong to the Scoring and survive the pool's snapshots; a backend's is
// dropped when it leaves the pool. Each set is a fixed table of atomics, a
// direct-mapped cache of block hashes that approximates an LRU: lookups take no lock.
//
// Costs: a pick reads each candidate's in-flight count and load report, decays its
// latency average (when Latency's weight is above 0), looks its prefix set up (one
// load when it does not hold the prompt's first block) and hashes the prompt once. It
// takes no lock and allocates nothing (it keeps scratch space for 8 picks at once; a
// ninth concurrent pick allocates its own), and it is linear in the candidates:
// BenchmarkScoring measures 1,000 backends, and Sample bounds the cost in larger
// pools.
//
// The zero value is ready to use with every default; [NewScoring] validates a
// configuration. A Scoring is safe for concurrent use and must not be copied; one
// Scoring serves one pool (its prefix sets are keyed by the pool's backends).
type Scoring struct {
	cfg     ScoringConfig
	weights atomic.Pointer[Weights]
	seed    maphash.Seed
	once    sync.Once
	scratch [scratchSlots]scratch

	mu   sync.Mutex // guards sets; held only in Build
	sets map[*Backend]*prefixSet
}

var _ Algorithm = (*Scoring)(nil)

// NewScoring returns a Scoring algorithm configured by c, or an error wrapping
// [ErrInvalidConfig] that lists every bad setting.
func NewScoring(c ScoringConfig) (*Scoring, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Scoring{cfg: c}, nil
}

func (a *Scoring) init() {
	a.once.Do(func() {
		a.cfg = a.cfg.withDefaults()
		w := a.cfg.Weights
		a.weights.CompareAndSwap(nil, &w)
		a.seed = maphash.MakeSeed()
	})
}

// SetWeights replaces the weights at run time: picks after it use them. Bad weights
// (NaN, infinite, negative, all 0) are an error wrapping [ErrInvalidConfig] and change
// nothing.
func (a *Scoring) SetWeights(w Weights) error {
	if err := w.Validate(); err != nil {
		return err
	}
	a.init()
	a.weights.Store(&w)
	return nil
}

// SetScoreWeights is [Scoring.SetWeights] with the weights spelled out, the applier
// of the scaling loop's score_weights action (it satisfies autoscale.Scorer).
func (a *Scoring) SetScoreWeights(queue, kvCache, inFlight, latency, prefix float64) error {
	return a.SetWeights(Weights{Queue: queue, KVCache: kvCache, InFlight: inFlight, Latency: latency, Prefix: prefix})
}

// Weights returns the weights in use.
func (a *Scoring) Weights() Weights {
	a.init()
	return *a.weights.Load()
}

// Config returns the configuration in use, with its defaults filled in.
func (a *Scoring) Config() ScoringConfig {
	a.init()
	c := a.cfg
	c.Weights = a.Weights()
	return c
}

// Build returns a scoring picker over set. It makes the prefix sets of backends new
// to it and forgets those of backends that left the pool.
func (a *Scoring) Build(set *Set) Picker {
	a.init()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sets == nil {
		a.sets = map[*Backend]*prefixSet{}
	}
	for b := range a.sets {
		if b.removed.Load() {
			delete(a.sets, b)
		}
	}
	sets := make([]*prefixSet, set.Len())
	for i, b := range set.Backends() {
		ps := a.sets[b]
		if ps == nil {
			ps = newPrefixSet(a.cfg.PrefixEntries)
			a.sets[b] = ps
		}
		sets[i] = ps
	}
	return &scoringPicker{a: a, set: set, sets: sets}
}

type scoringPicker struct {
	a    *Scoring
	set  *Set
	sets []*prefixSet // by the set's index
}

// cand is one candidate's raw values during a pick.
type cand struct {
	idx      int
	inFlight float64
	load     float64
	queue    float64
	kv       float64
	lat      float64
	prefix   float64
	report   bool // a fresh load report
	sat      bool
}

// scratch is a pick's space for its candidates' raw values. A Scoring keeps a few,
// each taken by one pick at a time, and grown to the largest set it has served: a
// sync.Pool would drop them at every garbage collection, and a 1,000-backend pick
// would allocate its 64 KB again after each.
type scratch struct {
	busy atomic.Bool
	c    []cand
	_    [32]byte // with busy's padding and c: one cache line each
}

// scratchSlots is how many picks at once use kept scratch space; more allocate
// theirs.
const scratchSlots = 8

// take returns kept scratch space of at least m candidates, or nil when all are busy.
// It tries the slots in order, so that one goroutine picking alone keeps reusing the
// first one, warm in its cache.
func (a *Scoring) take(m int) *scratch {
	for k := range scratchSlots {
		sc := &a.scratch[k]
		if !sc.busy.Load() && sc.busy.CompareAndSwap(false, true) {
			if cap(sc.c) < m {
				sc.c = make([]cand, m)
			}
			return sc
		}
	}
	return nil
}

// span is the least and most of one raw value over the candidates that have it.
type span struct{ lo, hi float64 }

func newSpan() span { return span{math.Inf(1), math.Inf(-1)} }

func (s *span) add(v float64) {
	s.lo = min(s.lo, v)
	s.hi = max(s.hi, v)
}

// score normalises v, lower being better: 1 at the least, 0 at the most, 0.5 when
// every value is the same.
func (s span) score(v float64) float64 {
	if !(s.hi > s.lo) {
		return 0.5
	}
	return (s.hi - v) / (s.hi - s.lo)
}

func (p *scoringPicker) Pick(req *Request) *Backend {
	a, bs := p.a, p.set.backends
	n := len(bs)
	if n == 0 {
		return nil
	}
	cfg := &a.cfg
	w := a.weights.Load()
	now := p.set.Now(req)

	var hs [MaxPrefixBlocks]uint64
	nb := 0
	if req != nil && req.Prompt != "" && w.Prefix > 0 {
		nb = blockHashes(a.seed, req.Prompt, cfg.BlockSize, cfg.MaxBlocks, &hs)
	}

	m := n
	if cfg.Sample > 0 && cfg.Sample < n {
		m = cfg.Sample
	}
	off := 0
	if n > 1 {
		off = p.set.Intn(n) // a random start: ties go to a random candidate
	}
	var cs []cand
	if sc := a.take(m); sc != nil {
		cs = sc.c[:m]
		defer sc.busy.Store(false)
	} else {
		cs = make([]cand, m) // more picks at once than kept scratch space
	}

	// Raw values and saturation.
	cutoff := now.Add(-cfg.MaxReportAge)
	unsat := 0
	for k := range cs {
		i := off + k
		if i >= n {
			i -= n
		}
		b := bs[i]
		c := &cs[k]
		*c = cand{idx: i}
		c.inFlight = float64(b.inFlight.Load())
		c.load = c.inFlight
		if r := b.loadReport.Load(); r != nil && !r.At.Before(cutoff) {
			c.report = true
			c.queue, c.kv = float64(r.Queue), r.KVCache
			c.load = max(c.load, float64(r.InFlight+r.Queue))
			c.sat = (cfg.SaturatedQueue > 0 && r.Queue > cfg.SaturatedQueue) ||
				(cfg.SaturatedKVCache > 0 && r.KVCache > cfg.SaturatedKVCache)
		}
		if w.Latency > 0 {
			c.lat = float64(b.peak.ValueAt(now))
		}
		if nb > 0 {
			c.prefix = float64(p.sets[i].match(hs[:nb])) / float64(nb)
		}
		if !c.sat {
			unsat++
		}
	}
	filter := unsat > 0 // when every candidate is saturated, pick among all

	// Ranges over the candidates that pass the filter.
	qs, ks, fs, ls := newSpan(), newSpan(), newSpan(), newSpan()
	minLoad := math.Inf(1)
	for k := range cs {
		c := &cs[k]
		if filter && c.sat {
			continue
		}
		if c.report {
			qs.add(c.queue)
			ks.add(c.kv)
		}
		fs.add(c.inFlight)
		if c.lat > 0 {
			ls.add(c.lat)
		}
		minLoad = min(minLoad, c.load)
	}

	// Scores; the best, or the top k.
	var top [MaxTopK]int      // indices into cs, best first
	var topS [MaxTopK]float64 // their scores
	kk := 0
	for k := range cs {
		c := &cs[k]
		if filter && c.sat {
			continue
		}
		s := w.InFlight * fs.score(c.inFlight)
		if c.report {
			s += w.Queue*qs.score(c.queue) + w.KVCache*ks.score(c.kv)
		} else {
			s += 0.5 * (w.Queue + w.KVCache)
		}
		if w.Latency > 0 {
			if c.lat > 0 {
				s += w.Latency * ls.score(c.lat)
			} else {
				s += 0.5 * w.Latency
			}
		}
		if c.prefix > 0 && (c.load-minLoad <= cfg.AbsMargin || c.load <= minLoad*cfg.RelMargin) {
			s += w.Prefix * c.prefix
		}
		// Insert into the top k, keeping the earlier candidate on a tie.
		j := kk
		if kk < cfg.TopK {
			kk++
		} else if s <= topS[kk-1] {
			continue
		} else {
			j = kk - 1
		}
		for j > 0 && s > topS[j-1] {
			top[j], topS[j] = top[j-1], topS[j-1]
			j--
		}
		top[j], topS[j] = k, s
	}

	best := &cs[top[0]]
	if kk > 1 {
		i, j := two(p.set.Rand(), kk)
		if i > j {
			i, j = j, i // i is the better scored
		}
		if ci, cj := &cs[top[i]], &cs[top[j]]; cj.inFlight < ci.inFlight {
			best = cj
		} else {
			best = ci
		}
	}
	if nb > 0 {
		p.sets[best.idx].add(hs[:nb])
	}
	return bs[best.idx]
}
