package middleware

import (
	"cmp"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// UsageShedding makes an adaptive limit shed the heaviest tenants first
// ([AdaptiveConfig.Usage]), after failsafe-go's UsageTracker, reading the tenants'
// windows the middleware already keeps ([metrics.ScopeTenant]). Below Headroom of a
// class's limit, every tenant is admitted; the rest of the limit is kept for light
// tenants: past it, a request is admitted only if its tenant is not heavy (its share
// of the last Span's requests is at most Factor times the fair share, 1 / the active
// tenants) and holds, on every route, fewer requests in flight than Factor times its
// fair part of the rest, (1 − Headroom) × limit / the active tenants (at least two).
// So a noisy neighbour is shed before a quiet tenant notices, from its first burst
// on: the in-flight test needs no history. The shares and the active tenants are
// recomputed on the request path, by TryLock, once per Refresh (allocating the tenant
// list then, never otherwise).
type UsageShedding struct {
	// Span of the tenants' windows read; 0 means 10 s.
	Span time.Duration
	// Refresh is how often the heavy tenants are recomputed; 0 means 1 s.
	Refresh time.Duration
	// Factor times the fair share marks a tenant heavy, at least 1; 0 means 1.5.
	Factor float64
	// Headroom is the fraction of a class's limit from which heavy tenants are
	// shed, in (0, 1]; 0 means 0.5.
	Headroom float64
}

type usageTracker struct {
	cfg    UsageShedding
	reg    *metrics.Registry
	heavy  atomic.Pointer[map[string]bool]
	active atomic.Int64 // tenants with requests in the last Span
	next   atomic.Int64
	mu     sync.Mutex

	shed atomic.Uint64
}

func newUsageTracker(cfg UsageShedding, reg *metrics.Registry) (*usageTracker, error) {
	if cfg.Span < 0 || cfg.Refresh < 0 || math.IsNaN(cfg.Factor) || cfg.Factor != 0 && cfg.Factor < 1 ||
		math.IsNaN(cfg.Headroom) || cfg.Headroom < 0 || cfg.Headroom > 1 {
		return nil, configError("adaptive: usage: negative span or refresh, factor below 1 or headroom out of (0, 1]")
	}
	if reg == nil {
		return nil, configError("adaptive: usage: no registry (WithAdmissionRegistry)")
	}
	cfg.Span = cmp.Or(cfg.Span, 10*time.Second)
	cfg.Refresh = cmp.Or(cfg.Refresh, time.Second)
	cfg.Factor = cmp.Or(cfg.Factor, 1.5)
	cfg.Headroom = cmp.Or(cfg.Headroom, 0.5)
	u := &usageTracker{cfg: cfg, reg: reg}
	u.heavy.Store(&map[string]bool{})
	return u, nil
}

// isHeavy reports whether tenant is heavy at now under a limit of lim, refreshing
// the shares when due.
func (u *usageTracker) isHeavy(tenant string, now time.Time, lim int64) bool {
	if ns := now.UnixNano(); ns >= u.next.Load() && u.mu.TryLock() {
		if ns >= u.next.Load() {
			u.next.Store(ns + int64(u.cfg.Refresh))
			u.refresh(now)
		}
		u.mu.Unlock()
	}
	if (*u.heavy.Load())[tenant] {
		return true
	}
	w, ok := u.reg.Lookup(metrics.ScopeTenant, tenant)
	fair := (1 - u.cfg.Headroom) * float64(lim) / float64(max(2, u.active.Load()))
	return ok && float64(w.InFlight()) >= max(1, u.cfg.Factor*fair)
}

// refresh recomputes the heavy tenants from their windows; u.mu is held.
func (u *usageTracker) refresh(now time.Time) {
	keys := u.reg.Keys(metrics.ScopeTenant)
	counts := make([]float64, len(keys))
	total := 0.0
	for i, k := range keys {
		if w, ok := u.reg.Lookup(metrics.ScopeTenant, k); ok {
			counts[i] = float64(w.SnapshotAt(now, u.cfg.Span).Count)
			total += counts[i]
		}
	}
	heavy := map[string]bool{}
	active := 0
	for _, c := range counts {
		if c > 0 {
			active++
		}
	}
	u.active.Store(int64(active))
	if active > 1 {
		fair := total / float64(active)
		for i, k := range keys {
			if counts[i] > u.cfg.Factor*fair {
				heavy[k] = true
			}
		}
	}
	u.heavy.Store(&heavy)
}

// HeavyTenants returns the tenants usage shedding marks heavy now; nil without it.
func (a *Admission) HeavyTenants() []string {
	if a.adaptive == nil || a.adaptive.usage == nil {
		return nil
	}
	var out []string
	for k := range *a.adaptive.usage.heavy.Load() {
		out = append(out, k)
	}
	return out
}
