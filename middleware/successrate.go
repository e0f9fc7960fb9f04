package middleware

import (
	"cmp"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// ErrBackoff: the route's backend has been failing and the request fell in the
// fraction that success-rate admission rejects before it reaches it (503). See
// [SuccessRateConfig].
var ErrBackoff = errors.New("middleware: backend failing, request rejected client-side")

// SuccessRateConfig sets up success-rate admission ([WithSuccessRate]): the adaptive
// throttling of Google's SRE book ("Handling Overload", chapter 21, client-side
// throttling). Per route (a backend group), over the last Window of its window in the
// registry ([metrics.ScopeRoute], which the middleware records into), requests are all
// the requests that arrived, rejected ones included, and accepts those the backend
// served without failing; a new request is rejected with probability
//
//	max(0, (requests − K·accepts) / (requests + 1))
//
// So while the backend accepts more than 1/K of what is sent, nothing is rejected; as
// it fails, the gateway stops sending it the part it would fail anyway, and some
// requests still go through to notice its recovery. K is the aggression: 2 (the
// book's) lets through twice what the backend accepts; nearer 1 rejects sooner. The
// probability is recomputed from the window at most every Refresh per route, off the
// fast path (one request does it while the others read the last value).
type SuccessRateConfig struct {
	// K is the multiplier of accepts, at least 1; 0 means 2.
	K float64
	// Window is the span of the route's window read; 0 means 2 minutes (the book's),
	// at most the window's length.
	Window time.Duration
	// Refresh is how often the probability is recomputed; 0 means 1 s.
	Refresh time.Duration
	// MinRequests is how many requests the span must hold before any is rejected; 0
	// means 20.
	MinRequests int
	// MaxRoutes bounds the routes tracked; further routes are not throttled. 0 means
	// 1,024.
	MaxRoutes int
}

// WithSuccessRate turns on success-rate admission (see [SuccessRateConfig]). It
// reads the windows of the registry set by [WithAdmissionRegistry], which must be
// the one the middleware records into: without one, it is an error of
// [NewAdmission].
func WithSuccessRate(cfg SuccessRateConfig) AdmissionOption {
	return func(a *Admission) error {
		var errs []error
		if math.IsNaN(cfg.K) || cfg.K != 0 && cfg.K < 1 {
			errs = append(errs, configError("success rate: K %v below 1", cfg.K))
		}
		if cfg.Window < 0 || cfg.Refresh < 0 || cfg.MinRequests < 0 || cfg.MaxRoutes < 0 {
			errs = append(errs, configError("success rate: negative window, refresh, min requests or max routes"))
		}
		cfg.K = cmp.Or(cfg.K, 2)
		cfg.Window = cmp.Or(cfg.Window, 2*time.Minute)
		cfg.Refresh = cmp.Or(cfg.Refresh, time.Second)
		cfg.MinRequests = cmp.Or(cfg.MinRequests, 20)
		cfg.MaxRoutes = cmp.Or(cfg.MaxRoutes, 1024)
		if err := errors.Join(errs...); err != nil {
			return err
		}
		sr := &successRate{cfg: cfg}
		sr.routes.Store(&map[string]*srRoute{})
		a.success = sr
		return nil
	}
}

type successRate struct {
	cfg    SuccessRateConfig
	reg    *metrics.Registry
	routes atomic.Pointer[map[string]*srRoute] // copy on write
	mu     sync.Mutex
	full   atomic.Bool

	rejected atomic.Uint64
}

type srRoute struct {
	prob   atomic.Uint64 // float64 bits
	next   atomic.Int64  // clock nanoseconds of the next refresh
	mu     sync.Mutex    // the refresh, by TryLock
	window *metrics.Window
}

// probability returns route's rejection probability at now, refreshing it when due.
func (sr *successRate) probability(route string, now time.Time) float64 {
	r, ok := (*sr.routes.Load())[route]
	if !ok {
		if r = sr.add(route); r == nil {
			return 0
		}
	}
	if ns := now.UnixNano(); ns >= r.next.Load() && r.mu.TryLock() {
		if ns >= r.next.Load() {
			r.next.Store(ns + int64(sr.cfg.Refresh))
			s := r.window.SnapshotAt(now, sr.cfg.Window)
			requests := float64(s.Count)
			accepts := float64(s.Count - s.Errors - s.Rejected - min(s.Canceled, s.Count-s.Errors-s.Rejected))
			p := 0.0
			if s.Count >= uint64(sr.cfg.MinRequests) {
				p = max(0, (requests-sr.cfg.K*accepts)/(requests+1))
			}
			r.prob.Store(math.Float64bits(p))
		}
		r.mu.Unlock()
	}
	return math.Float64frombits(r.prob.Load())
}

func (sr *successRate) add(route string) *srRoute {
	if sr.full.Load() {
		return nil
	}
	sr.mu.Lock()
	defer sr.mu.Unlock()
	old := *sr.routes.Load()
	if r, ok := old[route]; ok {
		return r
	}
	if len(old) >= sr.cfg.MaxRoutes {
		sr.full.Store(true)
		return nil
	}
	r := &srRoute{window: sr.reg.Window(metrics.ScopeRoute, route)}
	m := cloneMap(old)
	m[route] = r
	sr.routes.Store(&m)
	return r
}

// SuccessRate returns route's rejection probability under success-rate admission as
// last computed; 0 without it.
func (a *Admission) SuccessRate(route string) float64 {
	if a.success == nil {
		return 0
	}
	if r, ok := (*a.success.routes.Load())[route]; ok {
		return math.Float64frombits(r.prob.Load())
	}
	return 0
}

func (a *Admission) backoffCount() uint64 {
	if a.success == nil {
		return 0
	}
	return a.success.rejected.Load()
}

// nowOr returns t, or the admission clock's time when t is zero.
func (a *Admission) nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return a.clock.Now()
	}
	return t
}
