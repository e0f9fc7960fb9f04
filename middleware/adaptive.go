package middleware

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// ErrLimited: the request's adaptive concurrency limit is reached (503). See
// [AdaptiveConfig].
var ErrLimited = errors.New("middleware: adaptive concurrency limit reached")

// AdaptiveConfig sets up adaptive concurrency limits in an [Admission]
// ([WithAdaptiveLimit]): a limit per route (and, with PerTenant, per route and
// tenant) that a [LimitAlgorithm] moves, window by window, to where the backend's
// throughput is highest and its queue short, shared by priority classes.
//
// # Samples and bounds
//
// Every request admitted under a limit is a sample when it ends: its latency (from
// [Info.Now] to [Permit.DoneAt]) and whether it failed. Every Window (at least
// MinSamples requests, or MaxWindow whatever the count) the samples become a
// [LimitSample] and the algorithm proposes a limit; the limiter ignores a NaN or
// infinite proposal, refuses growth in a window whose failure ratio reached
// ErrorThreshold (so a backend that fails fast cannot pass for a fast one: failures'
// latencies are never RTT samples either), smooths (limit ← limit·(1−Smoothing) +
// proposal·Smoothing) and bounds it to [MinLimit, MaxLimit]. Latencies of zero or
// less, or over MaxRTT, are discarded and counted ([LimitState.Invalid]): they come
// from clock jumps or broken callers, not from the backend. A clock that goes back
// starts a new window.
//
// # The no-load latency, and why there is no probe burst
//
// Vegas needs the backend's latency without queueing. The limiter keeps it as the
// smallest mean latency of the 16 sub-spans of the last NoLoadSpan (those that hold
// at least 100 requests), which age out one by one, so the estimate follows a
// backend that became slower for good within NoLoadSpan. Means of many requests
// rather than the fastest request: when service times vary, the fastest request is
// well below a typical unqueued one, and the difference would read as a queue that
// is not there. Envoy's adaptive
// concurrency filter measures the same quantity by dropping the limit to a few
// requests for its minRTT window every interval, which answers 503 to every request
// over it while it lasts; Netflix's Vegas instead resets the estimate to the current
// latency every few hundred samples, which lets the limit jump. This limiter never
// lowers the limit to measure: the requests that ran at low concurrency in the
// recent past are the probe.
//
// # Classes share the limit
//
// Classes are priority classes (by [Info.Priority]); each has a Ceiling, the fraction
// of the limit L that the class and all classes below it may fill. A request of class
// c is admitted while the group's requests in flight, of every class, are fewer than
// ceil(Ceiling_c × L) (at least 1). So the highest class (Ceiling 1) may use the whole
// limit, taking the lower classes' share when it needs it, and as load rises the
// lowest class hits its ceiling first: it is shed first, the highest last. A
// priority maps to the class with the largest Priority not above it (the lowest
// class for priorities below all). Ceilings must not fall as priority rises; the
// highest class's is 1.
//
// The zero value of each field means its default.
type AdaptiveConfig struct {
	// Algorithm returns a new algorithm for each limit (an algorithm may keep
	// state). Nil means a [Vegas] with its defaults.
	Algorithm func() LimitAlgorithm
	// InitialLimit is each limit's start; 0 means 20. MinLimit and MaxLimit bound
	// it; 0 means 1 and 1,000. They can change at run time
	// ([Admission.SetLimitBounds]).
	InitialLimit, MinLimit, MaxLimit int
	// Smoothing is the weight of the algorithm's proposal in the new limit, in
	// (0, 1]; 0 means 0.5.
	Smoothing float64
	// Window is the shortest sample window; 0 means 250 ms. MaxWindow is the longest
	// (a window that has fewer than MinSamples requests by then ends anyway); 0 means
	// 4 × Window. MinSamples is 0 for 10.
	Window, MaxWindow time.Duration
	MinSamples        int
	// NoLoadSpan is how long the no-load latency remembers a fast sub-span (a
	// sixteenth of it); 0 means 30 s.
	NoLoadSpan time.Duration
	// ErrorThreshold is the failure ratio of a window from which it counts as
	// dropped (an overload signal: the limit does not grow, and Vegas and AIMD
	// shrink it), in (0, 1]; 0 means 0.1.
	ErrorThreshold float64
	// MaxRTT is the longest latency taken as a sample; 0 means 1 minute.
	MaxRTT time.Duration
	// Classes are the priority classes. Nil means one class, of every priority,
	// with Ceiling 1. At most 16.
	Classes []Class
	// Routes lists the routes that get a limit; nil means every route (the
	// admission's route after re-routing).
	Routes []string
	// PerTenant gives each (route, tenant) its own limit; requests without a tenant
	// share the route's.
	PerTenant bool
	// Usage, when set, sheds the heaviest tenants first as a class nears its limit
	// (see [UsageShedding]); it needs [WithAdmissionRegistry].
	Usage *UsageShedding
	// MaxKeys bounds the limits held; a route or tenant past it shares one overflow
	// limit (route "(overflow)"). 0 means 1,024.
	MaxKeys int
}

// Class is a priority class of an adaptive limit (see [AdaptiveConfig]).
type Class struct {
	// Priority is the lowest [Info.Priority] of the class.
	Priority int
	// Ceiling is the fraction of the limit, in (0, 1], that requests of this class
	// and the classes below it may fill.
	Ceiling float64
}

// overflowRoute is the route of the limit that keys past MaxKeys share.
const overflowRoute = "(overflow)"

const maxClasses = 16

// adaptive is an admission's set of adaptive limits.
type adaptive struct {
	cfg     AdaptiveConfig
	reg     *metrics.Registry
	classes []Class // sorted by priority
	routes  map[string]bool

	groups atomic.Pointer[map[string]*limitGroup] // by route, copy on write
	mu     sync.Mutex                             // serializes adding groups and bounds
	keys   int                                    // groups held (under mu)
	bounds map[string][2]int                      // per-route bounds set at run time (under mu)
	over   *limitGroup                            // the overflow group

	usage      *usageTracker // nil without Usage
	full       atomic.Bool   // keys reached MaxKeys
	overflowed atomic.Uint64
	limited    atomic.Uint64
}

func newAdaptive(cfg AdaptiveConfig, reg *metrics.Registry) (*adaptive, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, configError("adaptive: "+format, args...)) }
	if cfg.InitialLimit < 0 || cfg.MinLimit < 0 || cfg.MaxLimit < 0 {
		bad("negative initial, min or max limit")
	}
	cfg.MinLimit = cmp.Or(cfg.MinLimit, 1)
	cfg.MaxLimit = cmp.Or(cfg.MaxLimit, 1000)
	cfg.InitialLimit = cmp.Or(cfg.InitialLimit, 20)
	if cfg.MinLimit > cfg.MaxLimit {
		bad("min limit %d above max limit %d", cfg.MinLimit, cfg.MaxLimit)
	}
	cfg.InitialLimit = min(max(cfg.InitialLimit, cfg.MinLimit), cfg.MaxLimit)
	if math.IsNaN(cfg.Smoothing) || cfg.Smoothing < 0 || cfg.Smoothing > 1 {
		bad("smoothing %v out of (0, 1]", cfg.Smoothing)
	}
	cfg.Smoothing = cmp.Or(cfg.Smoothing, 0.5)
	if cfg.Window < 0 || cfg.MaxWindow < 0 || cfg.NoLoadSpan < 0 || cfg.MaxRTT < 0 || cfg.MinSamples < 0 || cfg.MaxKeys < 0 {
		bad("negative window, max window, no-load span, max RTT, min samples or max keys")
	}
	cfg.Window = cmp.Or(cfg.Window, 250*time.Millisecond)
	cfg.MaxWindow = cmp.Or(cfg.MaxWindow, 4*cfg.Window)
	if cfg.MaxWindow < cfg.Window {
		bad("max window %v below window %v", cfg.MaxWindow, cfg.Window)
	}
	cfg.MinSamples = cmp.Or(cfg.MinSamples, 10)
	cfg.NoLoadSpan = cmp.Or(cfg.NoLoadSpan, 30*time.Second)
	cfg.MaxRTT = cmp.Or(cfg.MaxRTT, time.Minute)
	cfg.MaxKeys = cmp.Or(cfg.MaxKeys, 1024)
	if math.IsNaN(cfg.ErrorThreshold) || cfg.ErrorThreshold < 0 || cfg.ErrorThreshold > 1 {
		bad("error threshold %v out of (0, 1]", cfg.ErrorThreshold)
	}
	cfg.ErrorThreshold = cmp.Or(cfg.ErrorThreshold, 0.1)
	classes := slices.Clone(cfg.Classes)
	if len(classes) == 0 {
		classes = []Class{{Priority: math.MinInt, Ceiling: 1}}
	}
	if len(classes) > maxClasses {
		bad("%d classes, more than %d", len(classes), maxClasses)
	}
	sort.SliceStable(classes, func(i, j int) bool { return classes[i].Priority < classes[j].Priority })
	for i, c := range classes {
		if math.IsNaN(c.Ceiling) || c.Ceiling <= 0 || c.Ceiling > 1 {
			bad("class %d: ceiling %v out of (0, 1]", c.Priority, c.Ceiling)
		}
		if i > 0 && c.Priority == classes[i-1].Priority {
			bad("class %d given twice", c.Priority)
		}
		if i > 0 && c.Ceiling < classes[i-1].Ceiling {
			bad("class %d: ceiling %v below the lower class %d's %v", c.Priority, c.Ceiling, classes[i-1].Priority, classes[i-1].Ceiling)
		}
	}
	if len(classes) > 0 && classes[len(classes)-1].Ceiling != 1 {
		bad("the highest class's ceiling is %v, not 1", classes[len(classes)-1].Ceiling)
	}
	if cfg.Algorithm != nil {
		if a := cfg.Algorithm(); a == nil {
			bad("the algorithm constructor returned nil")
		} else if err := validateAlgorithm(a); err != nil {
			bad("%v", err)
		}
	}
	var usage *usageTracker
	if cfg.Usage != nil {
		u, err := newUsageTracker(*cfg.Usage, reg)
		errs = append(errs, err)
		usage = u
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ad := &adaptive{cfg: cfg, reg: reg, classes: classes, bounds: map[string][2]int{}, usage: usage}
	if cfg.Routes != nil {
		ad.routes = make(map[string]bool, len(cfg.Routes))
		for _, r := range cfg.Routes {
			ad.routes[r] = true
		}
	}
	ad.groups.Store(&map[string]*limitGroup{})
	ad.over = ad.newGroup(overflowRoute, "")
	return ad, nil
}

// class returns the index of priority's class.
func (ad *adaptive) class(priority int) int {
	c := 0
	for i := 1; i < len(ad.classes); i++ {
		if ad.classes[i].Priority <= priority {
			c = i
		}
	}
	return c
}

// group returns the limit for (route, tenant), making it if need be; nil when the
// route has no adaptive limit. Known groups cost one or two map lookups and no lock.
func (ad *adaptive) group(route, tenant string) *limitGroup {
	if ad.routes != nil && !ad.routes[route] {
		return nil
	}
	g, ok := (*ad.groups.Load())[route]
	if !ok {
		g = ad.add(route, "", nil)
	}
	if !ad.cfg.PerTenant || tenant == "" || g == ad.over {
		return g
	}
	if tm := g.tenants.Load(); tm != nil {
		if t, ok := (*tm)[tenant]; ok {
			return t
		}
	}
	return ad.add(route, tenant, g)
}

// add makes the group of (route, tenant) under parent (nil for a route's), or returns
// the overflow group when MaxKeys are held.
func (ad *adaptive) add(route, tenant string, parent *limitGroup) *limitGroup {
	if ad.full.Load() {
		// Past MaxKeys, a new key never takes the lock.
		ad.overflowed.Add(1)
		return ad.over
	}
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if parent == nil {
		if g, ok := (*ad.groups.Load())[route]; ok {
			return g
		}
	} else if tm := parent.tenants.Load(); tm != nil {
		if t, ok := (*tm)[tenant]; ok {
			return t
		}
	}
	if ad.keys >= ad.cfg.MaxKeys {
		ad.full.Store(true)
		ad.overflowed.Add(1)
		return ad.over
	}
	ad.keys++
	g := ad.newGroup(route, tenant)
	if b, ok := ad.boundsFor(route); ok {
		g.setBounds(b[0], b[1])
	}
	if parent == nil {
		m := cloneMap(*ad.groups.Load())
		m[route] = g
		ad.groups.Store(&m)
		return g
	}
	var old map[string]*limitGroup
	if tm := parent.tenants.Load(); tm != nil {
		old = *tm
	}
	m := cloneMap(old)
	m[tenant] = g
	parent.tenants.Store(&m)
	return g
}

// boundsFor returns the bounds set at run time for route, or for "*"; ad.mu is held.
func (ad *adaptive) boundsFor(route string) ([2]int, bool) {
	if b, ok := ad.bounds[route]; ok {
		return b, true
	}
	b, ok := ad.bounds["*"]
	return b, ok
}

func (ad *adaptive) newGroup(route, tenant string) *limitGroup {
	algo := LimitAlgorithm(&Vegas{})
	if ad.cfg.Algorithm != nil {
		algo = ad.cfg.Algorithm()
	}
	g := &limitGroup{ad: ad, route: route, tenant: tenant, algo: algo, est: float64(ad.cfg.InitialLimit)}
	g.minLimit.Store(int64(ad.cfg.MinLimit))
	g.maxLimit.Store(int64(ad.cfg.MaxLimit))
	g.classes = make([]classLimit, len(ad.classes))
	for i, c := range ad.classes {
		g.classes[i].key = metrics.ClassKey(route, c.Priority, tenant)
		if c.Priority == math.MinInt {
			g.classes[i].key = metrics.ClassKey(route, 0, tenant)
		}
		if ad.reg != nil {
			g.classes[i].window.Store(ad.reg.Window(metrics.ScopeLimit, g.classes[i].key))
		}
	}
	g.minRTT.Store(math.MaxInt64)
	g.setLimit(ad.cfg.InitialLimit)
	return g
}

// SetLimitBounds sets the bounds of route's adaptive limits (every route's for "*",
// and the bounds of limits made from now on) at run time: the scaling loop's
// limit_bounds action ([autoscale.LimitBounds]) calls it. A limit outside the new
// bounds is moved inside at once. min 0 and max 0 restore the configured bounds. An
// admission without adaptive limits returns an error.
func (a *Admission) SetLimitBounds(route string, minLimit, maxLimit int) error {
	ad := a.adaptive
	switch {
	case ad == nil:
		return errors.New("middleware: set limit bounds: no adaptive limits (WithAdaptiveLimit)")
	case route == "":
		return errors.New("middleware: set limit bounds: empty route")
	case minLimit < 0 || maxLimit < 0 || maxLimit > 0 && minLimit > maxLimit:
		return fmt.Errorf("middleware: set limit bounds: bad bounds [%d, %d]", minLimit, maxLimit)
	}
	minLimit = cmp.Or(minLimit, ad.cfg.MinLimit)
	maxLimit = cmp.Or(maxLimit, ad.cfg.MaxLimit)
	if minLimit > maxLimit {
		return fmt.Errorf("middleware: set limit bounds: min %d above max %d", minLimit, maxLimit)
	}
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if _, ok := ad.bounds[route]; !ok && len(ad.bounds) >= ad.cfg.MaxKeys {
		return fmt.Errorf("%w: %d limit bounds, the most (MaxKeys)", ErrTooManyRules, ad.cfg.MaxKeys)
	}
	ad.bounds[route] = [2]int{minLimit, maxLimit}
	for r, g := range *ad.groups.Load() {
		if route == "*" || r == route {
			g.setBounds(minLimit, maxLimit)
			if tm := g.tenants.Load(); tm != nil {
				for _, t := range *tm {
					t.setBounds(minLimit, maxLimit)
				}
			}
		}
	}
	return nil
}

// LimitState is one adaptive limit's state, as [Admission.Limits] reports it.
type LimitState struct {
	Route, Tenant string
	// Class is the priority class (its lowest priority); 0 for the only class.
	Class int
	// Limit is the class's limit now (its ceiling of the group's limit); GroupLimit is
	// the group's, shared by its classes; InFlight counts the group's requests in
	// flight, of every class.
	Limit, GroupLimit, InFlight int
	// Min and Max are the group's bounds.
	Min, Max int
	// Rejected counts the class's requests the limit turned away; Invalid, the
	// group's discarded latency samples (zero, negative or over MaxRTT).
	Rejected, Invalid uint64
	// RTT is the last window's mean latency, NoLoadRTT the no-load estimate.
	RTT, NoLoadRTT time.Duration
}

// Limits returns the state of every adaptive limit, sorted by route, tenant and
// class: the documented accessor for a Go policy or a status page (Lua reads the
// same through windows, [metrics.ScopeLimit]). It allocates; it is not for the
// request path.
func (a *Admission) Limits() []LimitState {
	ad := a.adaptive
	if ad == nil {
		return nil
	}
	var out []LimitState
	add := func(g *limitGroup) {
		for i, c := range ad.classes {
			out = append(out, g.state(i, c))
		}
	}
	m := *ad.groups.Load()
	for _, g := range m {
		add(g)
		if tm := g.tenants.Load(); tm != nil {
			for _, t := range *tm {
				add(t)
			}
		}
	}
	if ad.over.inFlight.Load() > 0 || ad.overflowed.Load() > 0 {
		add(ad.over)
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.Route != y.Route {
			return x.Route < y.Route
		}
		if x.Tenant != y.Tenant {
			return x.Tenant < y.Tenant
		}
		return x.Class < y.Class
	})
	return out
}

func (a *Admission) limitedCount() uint64 {
	if a.adaptive == nil {
		return 0
	}
	return a.adaptive.limited.Load()
}
