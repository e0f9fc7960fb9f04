package middleware

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Errors an [Admission] rejects with. Callers branch on them with errors.Is; the
// middleware maps them to a status code and a short fixed text.
var (
	// ErrShed: the request fell in a shed fraction (503).
	ErrShed = errors.New("middleware: request shed")
	// ErrThrottled: the tenant is over its rate (429).
	ErrThrottled = errors.New("middleware: tenant throttled")
	// ErrQueueFull: the concurrency limit is reached and the queue is full, or the
	// request was pushed out by a more important one (503).
	ErrQueueFull = errors.New("middleware: admission queue full")
	// ErrQueueTimeout: the request waited in the queue past its deadline (503).
	ErrQueueTimeout = errors.New("middleware: admission queue wait timed out")
)

// ErrTooManyRules is returned by a rule change that would add a rule past
// AdmissionConfig.MaxRules; it rejects no request.
var ErrTooManyRules = errors.New("middleware: too many admission rules")

// StatusOf returns the HTTP status for an admission error: 429 for [ErrThrottled] and
// 503 for every other rejection.
func StatusOf(err error) int {
	if errors.Is(err, ErrThrottled) {
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// Info is what admission needs to know of a request.
type Info struct {
	Route, Tenant string
	// Model is the model asked for (AI gateways), "" for none. Route rules whose from
	// names it re-route it ([Permit.Model]).
	Model string
	// Priority orders queued requests (higher first) and selects priority-class shedding.
	Priority int
	// Now is the request's arrival time.
	Now time.Time
}

// Permit is an admitted request's slot. Exactly one of Done or Drop must be called when
// the request ends (Done when it was served, Drop when it was abandoned unserved), which
// frees its slot for the next request. After a rejection the Permit holds no slot; its
// RetryAfter tells the client when to come back. A Permit is a value: returning it
// allocates nothing.
//
// A Permit is returned by value on every request, so it stays small enough to travel
// in registers (BenchmarkAdmit): a re-route is a pointer to its rule, not two strings.
type Permit struct {
	a          *Admission  // set when a slot is held
	lim        *limitGroup // the adaptive limit holding a slot, if any
	start      int64       // arrival, clock nanoseconds, for the limit's sample
	retryAfter time.Duration
	moved      *routeRule // the Route rule that re-routed the request, if any
	movedModel bool       // moved matched the request's model, not its route
}

// RetryAfter is, after a rejection, how long the client should wait; zero otherwise.
func (p Permit) RetryAfter() time.Duration { return p.retryAfter }

// Rerouted reports where an [Admission.Route] rule moved the request: to another route,
// or, for a rule whose from names the request's model, to another model. Both are ""
// when no rule moved it, and at most one is set.
func (p Permit) Rerouted() (route, model string) {
	switch {
	case p.moved == nil:
		return "", ""
	case p.movedModel:
		return "", p.moved.to
	default:
		return p.moved.to, ""
	}
}

// Done releases the slot of a request served successfully, ending now on the
// admission's clock. See [Permit.DoneAt].
func (p Permit) Done() {
	if p.a != nil {
		if p.lim != nil {
			p.DoneAt(p.a.clock.Now(), metrics.OutcomeOK)
			return
		}
		p.a.completed.Add(1)
		p.a.release()
	}
}

// DoneAt releases the slot of a served request that ended at end with outcome o.
// Under an adaptive limit ([WithAdaptiveLimit]) the request is a sample: its latency
// (end minus [Info.Now]) and whether it failed ([metrics.OutcomeError]) move the
// limit, so a caller that knows the outcome says it here (the middleware does). A
// canceled request ([metrics.OutcomeCanceled]) is no sample: its latency says when
// the client left, not how fast the backend was.
func (p Permit) DoneAt(end time.Time, o metrics.Outcome) {
	if p.a == nil {
		return
	}
	p.a.completed.Add(1)
	if p.lim != nil {
		if o == metrics.OutcomeCanceled {
			p.lim.inFlight.Add(-1)
		} else {
			p.lim.release(p.start, end.UnixNano(), o == metrics.OutcomeError)
		}
	}
	p.a.release()
}

// Drop releases the slot of a request that was not served; it is no sample of an
// adaptive limit.
func (p Permit) Drop() {
	if p.a == nil {
		return
	}
	if p.lim != nil {
		p.lim.inFlight.Add(-1)
	}
	p.a.release()
}

// AdmissionConfig holds an [Admission]'s settings. The zero value admits everything:
// no concurrency limit, no queue, no rules.
type AdmissionConfig struct {
	// MaxConcurrency is the number of requests admitted at once; 0 means no limit.
	// It can be changed at run time with [Admission.SetMaxConcurrency].
	MaxConcurrency int
	// QueueSize is how many requests may wait for a slot when MaxConcurrency is
	// reached; 0 means none wait (they are rejected with ErrQueueFull).
	QueueSize int
	// MaxWait is the longest a request waits in the queue; 0 means [DefaultMaxWait]. A request's
	// own context deadline, if earlier, applies too.
	MaxWait time.Duration
	// MaxRules bounds the rules of each kind (shed routes, shed priority classes,
	// throttled tenants, re-routes); a new rule past it (after expired ones are
	// pruned) is refused with [ErrTooManyRules] and counted in
	// [AdmissionStats.RulesRefused]. Changing or removing a rule is never refused.
	// 0 means 10,000.
	MaxRules int
	// RuleTTL is how long a rule lasts after it was last set: a rule its setter
	// (the scaling loop) stops re-issuing expires, at once on the request path and
	// from memory as changes sweep it ([AdmissionStats.RulesExpired]). Re-issuing a
	// rule every tick costs no copy. 0 means 10 minutes; negative means rules never
	// expire.
	RuleTTL time.Duration
}

// DefaultMaxWait is the longest a queued request waits when
// [AdmissionConfig.MaxWait] is zero.
const DefaultMaxWait = time.Second

// AdmissionOption configures an [Admission]. A nil argument is an error of
// [NewAdmission].
type AdmissionOption func(*Admission) error

// WithAdmissionRand sets the source of randomness for shedding and re-routing; it is
// called concurrently, so it must be safe for concurrent use. The default is
// math/rand/v2's top-level generator, which is lock-free. (The options of
// [NewAdmission] carry its name because [New]'s share the package.)
func WithAdmissionRand(src rand.Source) AdmissionOption {
	return func(a *Admission) error {
		if src == nil {
			return configError("nil random source")
		}
		a.rand = rand.New(src)
		return nil
	}
}

// WithAdmissionClock sets the clock that estimates Retry-After and times the queue's
// waits ([AdmissionConfig.MaxWait]); the default is a [metrics.SystemClock].
func WithAdmissionClock(c metrics.Clock) AdmissionOption {
	return func(a *Admission) error {
		if c == nil {
			return configError("nil clock")
		}
		a.clock = c
		return nil
	}
}

// WithAdaptiveLimit gives the admission adaptive concurrency limits per route and
// priority class (and, optionally, tenant), set up by cfg (see [AdaptiveConfig]).
// A request over its class's limit is rejected with [ErrLimited] (503). Bad settings
// in cfg are errors of [NewAdmission].
func WithAdaptiveLimit(cfg AdaptiveConfig) AdmissionOption {
	return func(a *Admission) error {
		a.adaptiveCfg = &cfg
		return nil
	}
}

// WithAdmissionRegistry sets the registry the admission records its own windows
// into: the adaptive limits ([metrics.ScopeLimit]) and the queue
// ([metrics.ScopeQueue]), which the scaling loop and Lua read. Pass the registry the
// middleware records into. Without one, the admission records no windows
// ([Admission.Limits] still reports the limits).
func WithAdmissionRegistry(reg *metrics.Registry) AdmissionOption {
	return func(a *Admission) error {
		if reg == nil {
			return configError("nil registry")
		}
		a.reg = reg
		return nil
	}
}

// TenantLimiter is an outside limit on a tenant's requests that an [Admission]
// consults after its own throttles, for example a cluster-wide limit shared by several
// gateway replicas (package middleware/redislimit). AllowN reports whether n more of
// tenant's requests may proceed at now and, when not, how long the client should wait.
// It runs on the request path: it must not block, do I/O or allocate, and it must be
// safe for concurrent use.
type TenantLimiter interface {
	AllowN(tenant string, now time.Time, n int) (ok bool, retryAfter time.Duration)
}

// WithTenantLimiter makes the admission throttle tenants (429, [ErrThrottled]) by l as
// well as by its own [Admission.Throttle] rules. Requests without a tenant are not
// asked about.
func WithTenantLimiter(l TenantLimiter) AdmissionOption {
	return func(a *Admission) error {
		if l == nil {
			return configError("nil tenant limiter")
		}
		a.limiter = l
		return nil
	}
}

// Admission decides which requests proceed: it sheds fractions of routes and priority
// classes (503), throttles tenants with token buckets (429), limits concurrency, and
// queues requests over the limit by priority with deadlines. Its rules change at run
// time — from the scaling loop (it satisfies autoscale.Shedder, Throttler and Router)
// or from the host — and the request path reads them lock-free from sharded
// copy-on-write maps: re-issuing a rule copies nothing, adding or removing one
// copies one of 1,024 shards, so a loop that churns thousands of tenants a tick pays
// per change, not per rule held. Rules are bounded (AdmissionConfig.MaxRules) and
// expire RuleTTL after they were last set. Below the concurrency limit, admission
// takes no lock.
//
// An Admission is safe for concurrent use.
type Admission struct {
	cfg     AdmissionConfig
	rand    *rand.Rand
	clock   metrics.Clock
	limiter TenantLimiter
	reg     *metrics.Registry

	adaptiveCfg *AdaptiveConfig
	adaptive    *adaptive    // nil without WithAdaptiveLimit
	success     *successRate // nil without WithSuccessRate
	overload    *overload    // nil without WithSelfProtection

	// The rules: by string key in sharded copy-on-write maps (see ruleMap), priority
	// classes in one small copy-on-write map.
	shed     *ruleMap[shedRule]
	throttle *ruleMap[rate.Limiter]
	route    *ruleMap[routeRule]
	shedPrio atomic.Pointer[map[int]shedRule]
	ttl      int64      // RuleTTL in nanoseconds; 0 for never
	mu       sync.Mutex // serializes rule changes

	// Written by every admitted request, together on a cache line of their own, so
	// that a request's Admit and Done each move one line between cores, and the
	// read-mostly fields around them stay put (AdmitPlainParallel).
	_         [cacheLine]byte
	inFlight  atomic.Int64
	completed atomic.Uint64
	admitted  atomic.Uint64
	_         [cacheLine - 24]byte

	limit   atomic.Int64
	waiting atomic.Int64
	qmu     sync.Mutex
	queue   waitHeap
	seq     uint64
	drain   drainEstimate

	stats struct {
		shed, throttled, queueFull, queueTimeout, canceled, rerouted atomic.Uint64
		rulesRefused, rulesExpired                                   atomic.Uint64
	}
}

// NewAdmission returns an admission with cfg's settings. It reports every bad setting
// and option at once, wrapped in [ErrInvalidConfig].
func NewAdmission(cfg AdmissionConfig, opts ...AdmissionOption) (*Admission, error) {
	var errs []error
	if cfg.MaxConcurrency < 0 {
		errs = append(errs, configError("max concurrency %d is negative", cfg.MaxConcurrency))
	}
	if cfg.QueueSize < 0 {
		errs = append(errs, configError("queue size %d is negative", cfg.QueueSize))
	}
	if cfg.MaxWait < 0 {
		errs = append(errs, configError("max wait %v is negative", cfg.MaxWait))
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.MaxRules < 0 {
		errs = append(errs, configError("max rules %d is negative", cfg.MaxRules))
	}
	if cfg.MaxRules == 0 {
		cfg.MaxRules = 10_000
	}
	if cfg.RuleTTL == 0 {
		cfg.RuleTTL = 10 * time.Minute
	}
	a := &Admission{cfg: cfg, rand: rand.New(runtimeSource{}),
		shed: newRuleMap[shedRule](), throttle: newRuleMap[rate.Limiter](), route: newRuleMap[routeRule]()}
	if cfg.RuleTTL > 0 {
		a.ttl = int64(cfg.RuleTTL)
	}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, configError("nil option"))
			continue
		}
		if err := o(a); err != nil {
			errs = append(errs, err)
		}
	}
	if a.success != nil {
		if a.reg == nil {
			errs = append(errs, configError("success rate: no registry (WithAdmissionRegistry)"))
		}
		a.success.reg = a.reg
	}
	if a.adaptiveCfg != nil {
		ad, err := newAdaptive(*a.adaptiveCfg, a.reg)
		errs = append(errs, err)
		a.adaptive = ad
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if a.clock == nil {
		a.clock = metrics.NewSystemClock()
	}
	a.limit.Store(int64(cfg.MaxConcurrency))
	a.shedPrio.Store(&map[int]shedRule{})
	return a, nil
}

// chance reports true with probability f.
func (a *Admission) chance(f float64) bool {
	return f >= 1 || a.rand.Float64() < f
}

// runtimeSource is math/rand/v2's top-level generator as a [rand.Source]: safe for
// concurrent use and lock-free.
type runtimeSource struct{}

func (runtimeSource) Uint64() uint64 { return rand.Uint64() }

// Admit decides on a request. It returns at once unless the concurrency limit is
// reached and a queue is configured; then it waits, by priority and arrival, until a
// slot frees, its deadline passes ([ErrQueueTimeout]), it is pushed out by a more
// important request ([ErrQueueFull]) or ctx ends (ctx's error).
func (a *Admission) Admit(ctx context.Context, in Info) (Permit, error) {
	route := in.Route
	var moved *routeRule
	movedModel := false
	if a.overload != nil {
		if why := a.overload.check(a, in.Priority, a.nowOr(in.Now)); why != "" {
			return Permit{retryAfter: a.RetryAfterEstimate(in.Now)}, overloadErrors[why]
		}
	}
	prio := *a.shedPrio.Load()
	if a.shed.n.Load() > 0 || len(prio) > 0 {
		var rule shedRule
		ok := false
		if a.shed.n.Load() > 0 {
			if e, found := a.shed.get(in.Route); found && a.live(e.setAt.Load(), in.Now) {
				rule, ok = *e.rule.Load(), true
			}
			if e, found := a.shed.get("*"); found && a.live(e.setAt.Load(), in.Now) {
				if all := e.rule.Load(); !ok || all.fraction > rule.fraction {
					rule, ok = *all, true
				}
			}
		}
		if p, ok3 := prio[in.Priority]; ok3 && (!ok || p.fraction > rule.fraction) {
			rule, ok = p, true
		}
		if ok && a.chance(rule.fraction) {
			a.stats.shed.Add(1)
			ra := rule.retryAfter
			if ra == 0 {
				ra = a.RetryAfterEstimate(in.Now)
			}
			return Permit{retryAfter: ra}, ErrShed
		}
	}
	if a.throttle.n.Load() > 0 {
		if e, ok := a.throttle.get(in.Tenant); ok && a.live(e.setAt.Load(), in.Now) {
			if l := e.rule.Load(); !l.AllowN(in.Now, 1) {
				a.stats.throttled.Add(1)
				return Permit{retryAfter: throttleDelay(l, in.Now)}, ErrThrottled
			}
		}
	}
	if a.limiter != nil && in.Tenant != "" {
		if ok, ra := a.limiter.AllowN(in.Tenant, in.Now, 1); !ok {
			a.stats.throttled.Add(1)
			return Permit{retryAfter: ra}, ErrThrottled
		}
	}
	if a.route.n.Load() > 0 {
		if e, ok := a.route.get(in.Route); ok && a.live(e.setAt.Load(), in.Now) && a.chance(e.rule.Load().fraction) {
			moved = e.rule.Load()
			route = moved.to
			a.stats.rerouted.Add(1)
		} else if e, ok := a.route.get(in.Model); ok && in.Model != "" && a.live(e.setAt.Load(), in.Now) && a.chance(e.rule.Load().fraction) {
			moved, movedModel = e.rule.Load(), true
			a.stats.rerouted.Add(1)
		}
	}
	if a.success != nil && route != "" {
		if p := a.success.probability(route, a.nowOr(in.Now)); p > 0 && a.chance(p) {
			a.success.rejected.Add(1)
			return Permit{retryAfter: a.RetryAfterEstimate(in.Now)}, ErrBackoff
		}
	}
	var lim *limitGroup
	var start int64
	if a.adaptive != nil {
		if lim = a.adaptive.group(route, in.Tenant); lim != nil {
			now := in.Now
			if now.IsZero() {
				now = a.clock.Now()
			}
			c := a.adaptive.class(in.Priority)
			if !lim.tryAcquire(c, in.Tenant, now) {
				lim.reject(c, now)
				return Permit{retryAfter: a.RetryAfterEstimate(now)}, ErrLimited
			}
			start = now.UnixNano()
		}
	}
	if err := a.acquire(ctx, in); err != nil {
		if lim != nil {
			lim.inFlight.Add(-1)
		}
		return Permit{retryAfter: a.RetryAfterEstimate(in.Now)}, err
	}
	a.admitted.Add(1)
	return Permit{a: a, lim: lim, start: start, moved: moved, movedModel: movedModel}, nil
}

// The bounds of the Retry-After the admission gives rejected requests: at least a
// second, the unit of the header, so a client never retries at once; at most a
// minute, so a client is never told to stay away longer than the loop takes to
// change its mind.
const (
	minRetryAfter = time.Second
	maxRetryAfter = time.Minute
)

// The completion-rate estimate behind [Admission.RetryAfterEstimate]: sampled at most
// every drainSampleEvery, averaged with time constant drainDecay.
const (
	drainSampleEvery = 100 * time.Millisecond
	drainDecay       = 2 * time.Second
)

// throttleDelay is how long until l has a token for one more request, within the
// Retry-After bounds.
func throttleDelay(l *rate.Limiter, now time.Time) time.Duration {
	if l.Limit() == 0 {
		return maxRetryAfter
	}
	r := l.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return min(max(d, minRetryAfter), maxRetryAfter)
}

// RetryAfterEstimate is the Retry-After given to shed and queue-rejected requests when
// no rule sets one: the time the current backlog (requests in flight plus those
// waiting) takes to drain at the recent completion rate, rounded up to whole seconds,
// between 1 s and 60 s. Without a completion rate yet, it is 1 s.
func (a *Admission) RetryAfterEstimate(now time.Time) time.Duration {
	rateNow := a.drain.rate(now, a.completed.Load())
	backlog := float64(a.inFlight.Load() + a.waiting.Load())
	if rateNow <= 0 || backlog <= 0 {
		return minRetryAfter
	}
	d := time.Duration(math.Ceil(backlog/rateNow)) * time.Second
	return min(max(d, minRetryAfter), maxRetryAfter)
}

// drainEstimate is a moving average of the completion rate, sampled at most every
// 100 ms by whichever rejection comes first; the others read the last value.
type drainEstimate struct {
	mu       sync.Mutex
	lastAt   time.Time
	lastDone uint64
	value    atomic.Uint64 // float64 bits, completions per second
}

func (d *drainEstimate) rate(now time.Time, done uint64) float64 {
	if d.mu.TryLock() {
		if d.lastAt.IsZero() {
			d.lastAt, d.lastDone = now, done
		} else if dt := now.Sub(d.lastAt); dt >= drainSampleEvery {
			sample := float64(done-d.lastDone) / dt.Seconds()
			old := math.Float64frombits(d.value.Load())
			next := sample
			if old > 0 {
				w := math.Exp(-dt.Seconds() / drainDecay.Seconds())
				next = old*w + sample*(1-w)
			}
			d.value.Store(math.Float64bits(next))
			d.lastAt, d.lastDone = now, done
		}
		d.mu.Unlock()
	}
	return math.Float64frombits(d.value.Load())
}

// AdmissionStats counts an admission's verdicts.
type AdmissionStats struct {
	Admitted, Shed, Throttled, QueueFull, QueueTimeout, Canceled, Rerouted uint64
	// Limited counts requests turned away by an adaptive limit ([ErrLimited]);
	// Backoff, by success-rate admission ([ErrBackoff]).
	Limited, Backoff uint64
	// Overloaded counts requests shed by self-protection ([ErrOverloaded]).
	Overloaded uint64
	// RulesRefused counts new rules refused for passing MaxRules; RulesExpired, rules
	// dropped from memory RuleTTL after they were last set.
	RulesRefused, RulesExpired uint64
	// Rules is the number of rules held now (expired ones not yet swept included).
	Rules int
	// InFlight and Waiting are the requests holding and waiting for slots now.
	InFlight, Waiting int64
}

// Stats returns the admission's counts.
func (a *Admission) Stats() AdmissionStats {
	return AdmissionStats{
		Admitted:     a.admitted.Load(),
		Shed:         a.stats.shed.Load(),
		Throttled:    a.stats.throttled.Load(),
		QueueFull:    a.stats.queueFull.Load(),
		QueueTimeout: a.stats.queueTimeout.Load(),
		Canceled:     a.stats.canceled.Load(),
		Rerouted:     a.stats.rerouted.Load(),
		Limited:      a.limitedCount(),
		Backoff:      a.backoffCount(),
		Overloaded:   a.overloadCount(),
		RulesRefused: a.stats.rulesRefused.Load(),
		RulesExpired: a.stats.rulesExpired.Load(),
		Rules:        int(a.shed.n.Load()+a.throttle.n.Load()+a.route.n.Load()) + len(*a.shedPrio.Load()),
		InFlight:     a.inFlight.Load(),
		Waiting:      a.waiting.Load(),
	}
}
