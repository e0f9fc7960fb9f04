package balancer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// never is a refresh time that never comes.
const never = math.MaxInt64

// Pool is a set of backends and the algorithm that spreads requests over them.
//
// Membership, weights, health and the algorithm's precomputed state live in an
// immutable snapshot that the pool rebuilds and swaps in atomically whenever one of
// them changes ([Pool.Update], [Pool.SetWeight], [Pool.Eject], an outlier ejection or
// its end, an active health check, a slow-start step), as grpc-go's balancers swap
// pickers. [Pool.Pick] loads the snapshot with one atomic load, asks its [Picker], and
// counts the request in flight; [Result.Done] records the outcome into the backend's
// live state, which survives snapshots.
//
// Time-driven changes (the end of an ejection, a slow-start step) are applied lazily:
// the snapshot records when it goes stale and the next [Result.Done] (or a Pick that
// finds no backend) after that rebuilds it, so the pick path never reads the clock and
// no goroutine is needed. That Done pays for the rebuild: microseconds for most
// algorithms, milliseconds for [Hash] and [SmoothWeighted] over thousands of backends;
// other requests carry on with the old snapshot meanwhile. [Pool.Run] adds the interval-driven outlier detectors
// (success rate, latency).
//
// A Pool is safe for concurrent use. Its zero value is not usable: make one with [New].
type Pool struct {
	clock      metrics.Clock
	registry   *metrics.Registry
	windowCfg  metrics.WindowConfig
	algorithm  Algorithm
	rand       *rand.Rand // nil: math/rand/v2's top-level generator (see Set.rand64)
	decay      time.Duration
	slow       SlowStart
	outlier    Outlier
	noPanic    bool
	trackTotal bool
	windowLoad bool // Start/Done in flight on the windows too

	snap     atomic.Pointer[snapshot]
	pickFunc atomic.Pointer[PickFunc]
	empty    Request // stands in for a nil *Request; never modified

	loadMu sync.Mutex // makes the backends' load windows

	mu          sync.Mutex // guards what follows and serializes rebuilds
	members     map[string]*Backend
	order       []*Backend // sorted by id
	initialized bool       // a non-empty Update happened
	lastSweep   atomic.Int64

	fallbacks     atomic.Uint64
	noBackend     atomic.Uint64
	ejections     atomic.Uint64
	ejectionsSkip atomic.Uint64
	panics        atomic.Uint64
	rebuilds      atomic.Uint64

	// total is the pool's requests in flight, for the algorithms that ask (see
	// [LoadAware]). Every Pick and Done writes it, so it has a cache line of its own:
	// beside snap, which every Pick reads, it would move between cores on every
	// request.
	_     [64]byte
	total atomic.Int64
	_     [56]byte
}

type snapshot struct {
	set       *Set
	picker    Picker
	all       []*Backend
	refreshAt int64 // ns; the snapshot is stale from then on
	panic     bool
	groups    map[string]*group // by model; nil when no backend has a model label
}

// Option configures a [Pool].
type Option func(*Pool) error

// WithAlgorithm sets the algorithm. The default is [P2C] (power of two choices,
// least request).
func WithAlgorithm(a Algorithm) Option {
	return func(p *Pool) error {
		if a == nil {
			return fmt.Errorf("%w: nil algorithm", ErrInvalidConfig)
		}
		p.algorithm = a
		return nil
	}
}

// WithClock sets the clock. The default is [metrics.NewSystemClock].
func WithClock(c metrics.Clock) Option {
	return func(p *Pool) error {
		if c == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidConfig)
		}
		p.clock = c
		return nil
	}
}

// WithRegistry records each backend's outcomes into registry's window of scope
// [metrics.ScopeBackend] keyed by the backend's id, where the scaling loop and
// exporters find them. Without a registry each backend gets a standalone window shaped
// by [WithWindow]. The registry's clock should be the pool's.
func WithRegistry(r *metrics.Registry) Option {
	return func(p *Pool) error {
		if r == nil {
			return fmt.Errorf("%w: nil registry", ErrInvalidConfig)
		}
		p.registry = r
		return nil
	}
}

// WithWindow shapes the standalone windows made when there is no registry. The zero
// value means [metrics.WindowConfig]'s defaults (60 buckets of 1 s).
func WithWindow(cfg metrics.WindowConfig) Option {
	return func(p *Pool) error {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("balancer: %w", err)
		}
		p.windowCfg = cfg
		return nil
	}
}

// WithRand sets the random source used by the random, P2C and hashing algorithms. The
// default is math/rand/v2's top-level generator, which is safe for concurrent use and
// takes no lock. src is called concurrently unless the caller picks from one goroutine
// only: a seeded [rand.PCG] is fine in a single-goroutine test, not in a server
// (balancertest.SeededRand is a locked one).
func WithRand(src rand.Source) Option {
	return func(p *Pool) error {
		if src == nil {
			return fmt.Errorf("%w: nil random source", ErrInvalidConfig)
		}
		p.rand = rand.New(src)
		return nil
	}
}

// WithDecay sets the time constant of the backends' peak-EWMA of latency. Zero means
// [metrics.DefaultDecay] (10 s, as Finagle and Linkerd use); it must not be negative.
func WithDecay(tau time.Duration) Option {
	return func(p *Pool) error {
		if tau < 0 {
			return fmt.Errorf("%w: negative decay %v", ErrInvalidConfig, tau)
		}
		p.decay = tau
		return nil
	}
}

// WithSlowStart ramps up the weight of backends that join the pool or come back from
// an ejection (see [SlowStart]). Off by default.
func WithSlowStart(s SlowStart) Option {
	return func(p *Pool) error {
		if err := s.Validate(); err != nil {
			return err
		}
		p.slow = s
		return nil
	}
}

// WithOutlier sets passive outlier detection (see [Outlier]). The default is
// [Outlier]'s zero value, which enables Envoy's default detectors.
func WithOutlier(o Outlier) Option {
	return func(p *Pool) error {
		if err := o.Validate(); err != nil {
			return err
		}
		p.outlier = o
		return nil
	}
}

// WithWindowConcurrency counts requests in flight in the backends' windows too
// ([metrics.Window.StartAt] at Pick, [metrics.Window.DoneAt] at Done), so that their
// snapshots carry InFlight, MaxInFlight and the time-weighted Concurrency the
// autoscaler may scale on. It costs about 100 ns more per request, and a clock read at
// Pick when [Request.Now] is zero (the proxy sets it). Without it the windows record
// counts, errors and latencies, and in flight is [Backend.InFlight].
func WithWindowConcurrency() Option {
	return func(p *Pool) error {
		p.windowLoad = true
		return nil
	}
}

// WithoutPanic turns off panic routing. By default, when no backend is ready because
// every backend that is not drained is ejected or failing health checks, the pool
// ignores health and picks among all of them (Envoy's panic mode; counted in
// [Stats.Panics]), on the grounds that a degraded backend beats a certain 503. Without
// panic routing such a pool returns [ErrNoBackend].
func WithoutPanic() Option {
	return func(p *Pool) error {
		p.noPanic = true
		return nil
	}
}

// WithPickFunc installs a custom pick function (see [PickFunc] and [Pool.SetPickFunc]).
func WithPickFunc(f PickFunc) Option {
	return func(p *Pool) error {
		if f == nil {
			return fmt.Errorf("%w: nil pick function", ErrInvalidConfig)
		}
		p.pickFunc.Store(&f)
		return nil
	}
}

// New returns an empty pool; add backends with [Pool.Update]. It reports every bad
// option at once.
func New(opts ...Option) (*Pool, error) {
	p := &Pool{members: map[string]*Backend{}}
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, fmt.Errorf("%w: nil option", ErrInvalidConfig))
			continue
		}
		if err := o(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if p.clock == nil {
		p.clock = metrics.NewSystemClock()
	}
	if p.algorithm == nil {
		p.algorithm = &P2C{}
	}
	if la, ok := p.algorithm.(LoadAware); ok && la.NeedsTotalInFlight() {
		p.trackTotal = true
	}
	p.outlier = p.outlier.withDefaults()
	p.mu.Lock()
	p.rebuildLocked(p.clock.Now().UnixNano())
	p.mu.Unlock()
	return p, nil
}

// Clock returns the pool's clock.
func (p *Pool) Clock() metrics.Clock { return p.clock }

// Update replaces the pool's membership with endpoints, from any discovery source.
// Backends whose id stays keep their live state (in flight, latency, counters,
// ejection, window) and any weight set by [Pool.SetWeight]; their labels and base
// weight are updated. A backend whose URL changes is replaced by a new one. Backends
// that leave finish their requests in flight.
//
// Update validates everything first and changes nothing when an endpoint is invalid
// (empty or duplicate id, bad URL, weight out of range): the error joins every
// problem. An empty list empties the pool.
//
// Backends added after the first non-empty Update start in slow start when it is on.
func (p *Pool) Update(endpoints []Endpoint) error {
	urls := make([]*url.URL, len(endpoints))
	seen := make(map[string]bool, len(endpoints))
	var errs []error
	for i, e := range endpoints {
		u, err := e.validate()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[e.ID] {
			errs = append(errs, fmt.Errorf("%w: duplicate id %q", ErrInvalidEndpoint, e.ID))
			continue
		}
		seen[e.ID] = true
		urls[i] = u
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now().UnixNano()
	next := make(map[string]*Backend, len(endpoints))
	for i, e := range endpoints {
		b := p.members[e.ID]
		if b != nil && b.url.String() != urls[i].String() {
			b.removed.Store(true)
			b = nil
		}
		if b == nil {
			b = p.newBackend(e.ID, urls[i])
			if p.initialized && p.slow.enabled() {
				b.since.Store(now)
			}
		}
		b.base.Store(int64(e.weight()))
		b.labels.Store(newLabels(e.Labels))
		next[e.ID] = b
	}
	for id, b := range p.members {
		if next[id] != b {
			b.removed.Store(true)
			b.eligible.Store(false)
		}
	}
	p.members = next
	p.order = p.order[:0:0]
	for _, b := range next {
		p.order = append(p.order, b)
	}
	slices.SortFunc(p.order, func(a, b *Backend) int { return cmp.Compare(a.id, b.id) })
	if len(endpoints) > 0 {
		p.initialized = true
	}
	p.rebuildLocked(now)
	return nil
}

func (p *Pool) newBackend(id string, u *url.URL) *Backend {
	b := &Backend{id: id, url: u, pool: p}
	b.peak = &b.peakv
	if p.decay > 0 && p.decay != metrics.DefaultDecay {
		b.peak = metrics.NewPeakLatency(p.decay)
	}
	b.override.Store(-1)
	if p.registry != nil {
		b.window = p.registry.Window(metrics.ScopeBackend, id)
	} else {
		// The config was validated, so NewWindow cannot fail.
		b.window, _ = metrics.NewWindow(p.windowCfg, p.clock)
	}
	return b
}

// SetWeight sets a backend's weight at run time, 0..[MaxWeight]. Weight 0 drains the
// backend: it stays a member and finishes its requests in flight but gets no new ones.
// The weight holds until the next SetWeight for the backend, across [Pool.Update]s,
// and is forgotten when the backend leaves the pool. A negative weight is an error
// ([ErrInvalidWeight]), as is an unknown id ([ErrUnknownBackend]).
//
// SetWeight, with [Pool.Eject], satisfies the interface by which the autoscale loop
// applies its SetWeight and Eject actions.
func (p *Pool) SetWeight(backendID string, weight int) error {
	if weight < 0 || weight > MaxWeight {
		return fmt.Errorf("%w: %q: %d out of [0, %d]", ErrInvalidWeight, backendID, weight, MaxWeight)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.members[backendID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownBackend, backendID)
	}
	b.override.Store(int64(weight))
	p.rebuildLocked(p.clock.Now().UnixNano())
	return nil
}

// ReportLoad records what a backend says about its own load, from any source: a
// scraper of its /metrics page (package balancer/loadreport), a sidecar, a response
// header. The report becomes [Backend.Load] with At set to now, and its utilization
// is recorded into the backend's load window ([Backend.LoadWindow]) with latency as
// the time the report took to read. An invalid report (negative or not finite) is
// [ErrInvalidLoadReport] and an unknown id [ErrUnknownBackend]; neither changes
// anything. It is safe for concurrent use and never on the request path.
func (p *Pool) ReportLoad(backendID string, r LoadReport, latency time.Duration) error {
	if err := r.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	b, ok := p.members[backendID]
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownBackend, backendID)
	}
	b.reportLoad(p, r, latency)
	return nil
}

// Eject takes a backend out of rotation for d (more than 0): for the scaling loop or an
// operator. Ejecting an ejected backend extends its ejection if d ends later. Eject
// obeys the maximum ejected percentage ([Outlier.MaxEjectionPercent]) and returns
// [ErrEjectionLimit] rather than exceed it. It does not raise the back-off multiplier
// of passive ejections.
func (p *Pool) Eject(backendID string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: ejection time %v is not above 0", ErrInvalidConfig, d)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.members[backendID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownBackend, backendID)
	}
	now := p.clock.Now().UnixNano()
	return p.ejectLocked(b, now, now+int64(d))
}

// Uneject ends a backend's ejection now.
func (p *Pool) Uneject(backendID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.members[backendID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownBackend, backendID)
	}
	now := p.clock.Now().UnixNano()
	if u := b.ejectedUntil.Load(); u > now {
		b.ejectedUntil.Store(now)
		p.rebuildLocked(now)
	}
	return nil
}

// ejectLocked ejects b until the given time, within the ejection limit.
func (p *Pool) ejectLocked(b *Backend, now, until int64) error {
	if cur := b.ejectedUntil.Load(); cur > now {
		if until > cur {
			b.ejectedUntil.Store(until)
			p.rebuildLocked(now)
		}
		return nil
	}
	ejected := 0
	for _, m := range p.order {
		if m.ejectedUntil.Load() > now {
			ejected++
		}
	}
	// As Envoy: at least one backend may be ejected whatever the percentage.
	if ejected > 0 && (ejected+1)*100 > p.outlier.MaxEjectionPercent*len(p.order) {
		p.ejectionsSkip.Add(1)
		return fmt.Errorf("%w: %q: %d of %d ejected, max %d%%", ErrEjectionLimit, b.id, ejected, len(p.order), p.outlier.MaxEjectionPercent)
	}
	b.ejectedUntil.Store(until)
	p.ejections.Add(1)
	p.rebuildLocked(now)
	return nil
}

// SetPickFunc installs f as the pool's pick function, or removes it when f is nil.
// While one is installed every Pick calls it first and falls back to the pool's
// algorithm when it answers an error or an index out of range. It may be called at any
// time (a script reload).
func (p *Pool) SetPickFunc(f PickFunc) {
	if f == nil {
		p.pickFunc.Store(nil)
		return
	}
	p.pickFunc.Store(&f)
}

// Result is a picked backend. Call Done exactly once when the request ends, as
// grpc-go's PickResult.Done; a Result not returned by [Pool.Pick] must not be ended.
// It is a small value, copied freely.
type Result struct {
	// Backend is the backend picked.
	Backend *Backend
}

// Pick chooses a backend for req (nil means an empty [Request]) and counts a request
// in flight on it. It returns an error wrapping [ErrNoBackend] when no backend is
// ready. It does not block and does not allocate (but for the error). It reads the
// clock only when the pool has no ready backend or is in panic (to see whether an
// ejection has ended), or when the algorithm needs the time and req.Now is zero.
func (p *Pool) Pick(req *Request) (Result, error) {
	if req == nil {
		req = &p.empty
	}
	s := p.snap.Load()
	set, picker := s.set, s.picker
	if req.Model != "" {
		g := s.groups[req.Model]
		if g == nil || len(g.set.backends) == 0 {
			s = p.refreshEmpty()
			if g = s.groups[req.Model]; g == nil || len(g.set.backends) == 0 {
				p.noBackend.Add(1)
				members := 0
				if g != nil {
					members = g.members
				}
				return Result{}, fmt.Errorf("%w: model %q: %d members, none ready", ErrNoBackend, req.Model, members)
			}
		}
		set, picker = g.set, g.picker
	} else if len(set.backends) == 0 || s.panic {
		s = p.refreshEmpty()
		set, picker = s.set, s.picker
		if len(set.backends) == 0 {
			p.noBackend.Add(1)
			return Result{}, fmt.Errorf("%w: %d members, none ready", ErrNoBackend, len(s.all))
		}
	}
	var b *Backend
	if fp := p.pickFunc.Load(); fp != nil {
		i, err := callPickFunc(*fp, req, set.backends)
		if err == nil && i >= 0 && i < len(set.backends) {
			b = set.backends[i]
		} else {
			p.fallbacks.Add(1)
		}
	}
	if b == nil {
		b = picker.Pick(req)
		if b == nil {
			p.noBackend.Add(1)
			return Result{}, fmt.Errorf("%w: the algorithm found none", ErrNoBackend)
		}
	}
	if req.Avoid != nil && b == req.Avoid && len(set.backends) > 1 {
		b = avoid(set, picker, req, b)
	}
	b.inFlight.Add(1)
	if p.trackTotal {
		p.total.Add(1)
	}
	if p.windowLoad {
		now := req.Now
		if now.IsZero() {
			now = p.clock.Now()
		}
		b.window.StartAt(now)
	}
	return Result{Backend: b}, nil
}

// callPickFunc calls f, turning a panic into an error so that a broken pick function
// costs a fallback, not the request.
func callPickFunc(f PickFunc, req *Request, bs []*Backend) (i int, err error) {
	defer func() {
		if r := recover(); r != nil {
			i, err = -1, errPickPanic
		}
	}()
	return f(req, bs)
}

var errPickPanic = errors.New("balancer: pick function panicked")

// avoid picks again, up to twice, and then takes the next ready backend in order.
func avoid(set *Set, picker Picker, req *Request, b *Backend) *Backend {
	for range 2 {
		if c := picker.Pick(req); c != nil && c != req.Avoid {
			return c
		}
	}
	bs := set.backends
	for i, c := range bs {
		if c == b {
			return bs[(i+1)%len(bs)]
		}
	}
	return bs[0]
}

// refreshEmpty rebuilds a snapshot without ready backends (or in panic) if it is stale.
func (p *Pool) refreshEmpty() *snapshot {
	s := p.snap.Load()
	if s.refreshAt == never {
		return s
	}
	now := p.clock.Now().UnixNano()
	if now >= s.refreshAt {
		p.mu.Lock()
		if s2 := p.snap.Load(); now >= s2.refreshAt {
			p.rebuildLocked(now)
		}
		p.mu.Unlock()
	}
	return p.snap.Load()
}

// Outcome is how a request to a backend ended: a plain value.
type Outcome struct {
	// Latency is the request's duration.
	Latency time.Duration
	// Status is the response's HTTP status, 0 when none arrived.
	Status int
	// Err is the transport error when no response arrived (connection refused, reset,
	// timeout); nil otherwise. A [context.Canceled] error means the client went away:
	// it is recorded as canceled and counts against nobody.
	Err error
	// At is when the request ended; zero means the pool's clock is read.
	At time.Time
	// Bytes is the response size, when the caller counts it.
	Bytes int64
}

// Done ends the request: it takes it out of flight, feeds the latency of a success to
// the backend's peak-EWMA, updates the consecutive-failure counters (ejecting the backend when one
// reaches its threshold), and records the outcome into the backend's window. A status
// of 500 or more, or a transport error, is a failure; 502, 503, 504 and transport
// errors are also gateway failures (as Envoy classifies them). Done on the zero Result
// does nothing.
func (r Result) Done(o Outcome) {
	b := r.Backend
	if b == nil {
		return
	}
	p := b.pool
	b.inFlight.Add(-1)
	if p.trackTotal {
		p.total.Add(-1)
	}
	at := o.At
	if at.IsZero() {
		at = p.clock.Now()
	}
	mo := metrics.OutcomeOK
	var fail, gw bool
	switch {
	case o.Err != nil:
		if errors.Is(o.Err, context.Canceled) {
			mo = metrics.OutcomeCanceled
		} else {
			mo, fail, gw = metrics.OutcomeError, true, true
		}
	case o.Status >= 500:
		mo, fail = metrics.OutcomeError, true
		gw = o.Status == http.StatusBadGateway || o.Status == http.StatusServiceUnavailable || o.Status == http.StatusGatewayTimeout
	}
	ns := at.UnixNano()
	if mo != metrics.OutcomeCanceled {
		if fail {
			// A failure does not feed the latency average: a backend that fails
			// fast must not look fast to peak-EWMA. The outlier detectors judge it.
			p.countFailure(b, ns, gw)
		} else {
			b.peak.Observe(at, o.Latency)
			if b.consec5xx.Load() != 0 {
				b.consec5xx.Store(0)
			}
			if b.consecGw.Load() != 0 {
				b.consecGw.Store(0)
			}
		}
	}
	obs := metrics.Observation{Latency: o.Latency, Outcome: mo, Bytes: o.Bytes}
	if p.windowLoad {
		b.window.DoneAt(at, obs)
	} else {
		b.window.RecordAt(at, obs)
	}
	if ns >= p.snap.Load().refreshAt && p.mu.TryLock() {
		if ns >= p.snap.Load().refreshAt {
			p.rebuildLocked(ns)
		}
		p.mu.Unlock()
	}
}

// countFailure bumps b's consecutive-failure counters and ejects it at a threshold.
func (p *Pool) countFailure(b *Backend, now int64, gw bool) {
	o := &p.outlier
	hit := false
	if o.Consecutive5xx > 0 && int(b.consec5xx.Add(1)) >= o.Consecutive5xx {
		hit = true
	}
	if gw {
		if o.ConsecutiveGatewayFailure > 0 && int(b.consecGw.Add(1)) >= o.ConsecutiveGatewayFailure {
			hit = true
		}
	} else if b.consecGw.Load() != 0 {
		b.consecGw.Store(0)
	}
	if !hit {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Another Done may have ejected it meanwhile.
	if b.removed.Load() || b.ejectedUntil.Load() > now {
		return
	}
	b.consec5xx.Store(0)
	b.consecGw.Store(0)
	p.passiveEjectLocked(b, now)
}

// passiveEjectLocked ejects b for the base ejection time times 2^(ejections so far),
// at most the maximum ejection time.
func (p *Pool) passiveEjectLocked(b *Backend, now int64) {
	k := b.ejections.Load()
	d := p.outlier.BaseEjectionTime
	for i := int32(0); i < k && d < p.outlier.MaxEjectionTime; i++ {
		d *= 2
	}
	d = min(d, p.outlier.MaxEjectionTime)
	if p.ejectLocked(b, now, now+int64(d)) == nil {
		b.ejections.Add(1)
	}
}

// rebuildLocked builds and swaps in a new snapshot at time now. p.mu is held.
func (p *Pool) rebuildLocked(now int64) {
	p.rebuilds.Add(1)
	refresh := int64(never)
	ready := make([]*Backend, 0, len(p.order))
	weights := make([]float64, 0, len(p.order))
	for _, b := range p.order {
		w := b.Weight()
		if u := b.ejectedUntil.Load(); u > now {
			refresh = min(refresh, u)
			b.eligible.Store(false)
			continue
		} else if u != 0 {
			// The ejection is over.
			b.ejectedUntil.Store(0)
			if p.slow.enabled() {
				b.since.Store(now)
			}
		}
		if w == 0 || b.activeDown.Load() {
			b.eligible.Store(false)
			continue
		}
		f, next := p.slow.factor(b.since.Load(), now)
		if next == 0 {
			b.since.Store(0)
		} else {
			refresh = min(refresh, next)
		}
		b.eligible.Store(true)
		ready = append(ready, b)
		weights = append(weights, float64(w)*f)
	}
	panicking := false
	if len(ready) == 0 && !p.noPanic {
		for _, b := range p.order {
			if w := b.Weight(); w > 0 {
				ready = append(ready, b)
				weights = append(weights, float64(w))
			}
		}
		if len(ready) > 0 {
			panicking = true
			p.panics.Add(1)
		}
	}
	set := &Set{backends: ready, weights: weights, rand: p.rand, clock: p.clock}
	if p.trackTotal {
		set.total = &p.total
	}
	if len(weights) > 0 {
		set.minW, set.maxW = slices.Min(weights), slices.Max(weights)
	}
	s := &snapshot{
		set:       set,
		all:       slices.Clone(p.order),
		refreshAt: refresh,
		panic:     panicking,
	}
	if len(ready) > 0 {
		s.picker = p.algorithm.Build(set)
	}
	s.groups = p.buildGroups(ready, weights, set)
	p.snap.Store(s)
}

// buildGroups splits the ready backends by the models they serve, each group with a
// picker of its own; a model whose members are none of them gets an empty group, so
// that Pick can say how many members it has. nil when no member names a model.
func (p *Pool) buildGroups(ready []*Backend, weights []float64, all *Set) map[string]*group {
	var groups map[string]*group
	for _, b := range p.order {
		for _, m := range modelsOf(b.Labels()) {
			if groups == nil {
				groups = map[string]*group{}
			}
			g := groups[m]
			if g == nil {
				g = &group{set: &Set{rand: all.rand, clock: all.clock, total: all.total}}
				groups[m] = g
			}
			g.members++
		}
	}
	if groups == nil {
		return nil
	}
	for i, b := range ready {
		for _, m := range modelsOf(b.Labels()) {
			g := groups[m]
			g.set.backends = append(g.set.backends, b)
			g.set.weights = append(g.set.weights, weights[i])
		}
	}
	for _, g := range groups {
		if len(g.set.backends) > 0 {
			g.set.minW, g.set.maxW = slices.Min(g.set.weights), slices.Max(g.set.weights)
			g.picker = p.algorithm.Build(g.set)
		}
	}
	return groups
}

// Backends returns every member of the pool, sorted by id, whatever its health. The
// slice is shared with the current snapshot: do not modify it.
func (p *Pool) Backends() []*Backend { return p.snap.Load().all }

// Ready returns the backends ready for new requests in the current snapshot, sorted by
// id: what a [Picker] or [PickFunc] chooses from. The slice is shared: do not modify it.
func (p *Pool) Ready() []*Backend { return p.snap.Load().set.backends }

// ReadyFor returns the ready backends that serve model (label [LabelModel]), sorted
// by id. The slice is shared: do not modify it.
func (p *Pool) ReadyFor(model string) []*Backend {
	if g := p.snap.Load().groups[model]; g != nil {
		return g.set.backends
	}
	return nil
}

// Models lists the models the pool's members serve (label [LabelModel]), sorted.
func (p *Pool) Models() []string {
	groups := p.snap.Load().groups
	out := make([]string, 0, len(groups))
	for m := range groups {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Lookup returns the member with the given id.
func (p *Pool) Lookup(id string) (*Backend, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.members[id]
	return b, ok
}

// Stats counts what a pool did.
type Stats struct {
	// Members and Ready are the backends in the pool and those ready for new requests.
	Members, Ready int
	// Panic reports whether the pool is in panic: no backend is healthy, so it picks
	// among all that are not drained.
	Panic bool
	// Fallbacks counts picks in which the [PickFunc] gave an invalid answer and the
	// algorithm picked instead.
	Fallbacks uint64
	// NoBackend counts picks that failed with [ErrNoBackend].
	NoBackend uint64
	// Ejections counts ejections, passive and by [Pool.Eject].
	Ejections uint64
	// EjectionsSkipped counts ejections refused by the maximum ejected percentage.
	EjectionsSkipped uint64
	// Panics counts snapshots built in panic.
	Panics uint64
	// Rebuilds counts snapshots built.
	Rebuilds uint64
}

// Stats returns the pool's counts.
func (p *Pool) Stats() Stats {
	s := p.snap.Load()
	return Stats{
		Members:          len(s.all),
		Ready:            len(s.set.backends),
		Panic:            s.panic,
		Fallbacks:        p.fallbacks.Load(),
		NoBackend:        p.noBackend.Load(),
		Ejections:        p.ejections.Load(),
		EjectionsSkipped: p.ejectionsSkip.Load(),
		Panics:           p.panics.Load(),
		Rebuilds:         p.rebuilds.Load(),
	}
}

// isDialError reports whether err is a failure to connect: the request never left.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
