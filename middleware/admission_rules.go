package middleware

import (
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// The rules a policy or an operator sets on an admission at run time: shedding by
// route and by priority class, tenant throttles, re-routes. Each kind is a ruleMap,
// changed under a.mu and read lock-free by Admit.

type shedRule struct {
	fraction   float64
	retryAfter time.Duration
}

type routeRule struct {
	to       string
	fraction float64
}

// setRule sets key's rule in m under a.mu: an existing key's rule is swapped in
// place (no copy), a new key copies one shard, unless m holds MaxRules keys after
// pruning the expired ones. update, if set, changes an existing rule in place
// instead of replacing it (a throttle keeps its bucket's tokens).
func setRule[V any](a *Admission, m *ruleMap[V], key string, rule *V, update func(old *V)) error {
	now := a.clock.Now().UnixNano()
	a.pruneLocked(m, now, false)
	if e, ok := m.get(key); ok {
		if update != nil {
			update(e.rule.Load())
		} else {
			e.rule.Store(rule)
		}
		e.setAt.Store(now)
		return nil
	}
	if m.n.Load() >= int64(a.cfg.MaxRules) {
		// A full sweep at most once per 1/16 of the TTL: between two, nothing much
		// can have expired, and a refusal stays O(1).
		if a.ttl > 0 && now-m.fullAt >= a.ttl/16 {
			m.fullAt = now
			a.pruneLocked(m, now, true)
		}
		if m.n.Load() >= int64(a.cfg.MaxRules) {
			a.stats.rulesRefused.Add(1)
			return fmt.Errorf("%w: %d rules of this kind, the most (MaxRules)", ErrTooManyRules, a.cfg.MaxRules)
		}
	}
	e := &ruleEntry[V]{}
	e.rule.Store(rule)
	e.setAt.Store(now)
	m.add(key, e)
	return nil
}

// pruneLocked drops m's expired rules, from one shard or all; a.mu is held.
func (a *Admission) pruneLocked(m interface{ prune(int64, bool) int }, now int64, all bool) {
	if a.ttl == 0 {
		return
	}
	if n := m.prune(now-a.ttl, all); n > 0 {
		a.stats.rulesExpired.Add(uint64(n))
	}
}

// live reports whether a rule set at setAt still holds at now (Info.Now; a zero
// time never expires a rule).
func (a *Admission) live(setAt int64, now time.Time) bool {
	return a.ttl == 0 || now.IsZero() || now.UnixNano()-setAt <= a.ttl
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func checkFraction(f float64) error {
	if math.IsNaN(f) || f < 0 || f > 1 {
		return fmt.Errorf("middleware: fraction %v out of [0, 1]", f)
	}
	return nil
}

// Shed rejects fraction (0..1) of route's requests with 503; route "*" means every
// route, and fraction 0 stops shedding. A retryAfter of zero lets the admission
// estimate one from its state at each rejection (see [Admission.RetryAfterEstimate]).
func (a *Admission) Shed(route string, fraction float64, retryAfter time.Duration) error {
	if err := checkShed(fraction, retryAfter); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if fraction == 0 {
		a.shed.del(route)
		return nil
	}
	return setRule(a, a.shed, route, &shedRule{fraction, retryAfter}, nil)
}

// checkShed checks the arguments of [Admission.Shed] and [Admission.ShedPriority].
func checkShed(fraction float64, retryAfter time.Duration) error {
	if err := checkFraction(fraction); err != nil {
		return err
	}
	if retryAfter < 0 {
		return fmt.Errorf("middleware: negative retry-after %v", retryAfter)
	}
	return nil
}

// ShedPriority rejects fraction of the requests of one priority class, as [Admission.Shed]
// does for a route.
func (a *Admission) ShedPriority(class int, fraction float64, retryAfter time.Duration) error {
	if err := checkShed(fraction, retryAfter); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.shedPrio.Load()
	if _, ok := old[class]; !ok && fraction != 0 && len(old) >= a.cfg.MaxRules {
		a.stats.rulesRefused.Add(1)
		return fmt.Errorf("%w: %d priority classes shed, the most (MaxRules)", ErrTooManyRules, a.cfg.MaxRules)
	}
	m := cloneMap(old)
	if fraction == 0 {
		delete(m, class)
	} else {
		m[class] = shedRule{fraction, retryAfter}
	}
	a.shedPrio.Store(&m)
	return nil
}

// Throttle limits tenant to rps requests per second with bursts of burst, by a token
// bucket (golang.org/x/time/rate). rps = +Inf removes the limit; rps = 0 blocks the
// tenant. Changing a tenant's limit keeps its bucket's tokens. The rule lasts RuleTTL
// from this call; a new tenant past MaxRules is refused with [ErrTooManyRules].
func (a *Admission) Throttle(tenant string, rps float64, burst int) error {
	switch {
	case tenant == "":
		return errors.New("middleware: throttle: empty tenant")
	case math.IsNaN(rps) || rps < 0:
		return fmt.Errorf("middleware: throttle: rps %v is not >= 0", rps)
	case !math.IsInf(rps, 1) && burst < 1 && rps > 0:
		return fmt.Errorf("middleware: throttle: burst %d is below 1", burst)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if math.IsInf(rps, 1) {
		a.throttle.del(tenant)
		return nil
	}
	if rps == 0 {
		burst = 0
	}
	if _, ok := a.throttle.get(tenant); ok {
		return setRule(a, a.throttle, tenant, nil, func(l *rate.Limiter) {
			now := a.clock.Now()
			l.SetLimitAt(now, rate.Limit(rps))
			l.SetBurstAt(now, burst)
		})
	}
	return setRule(a, a.throttle, tenant, rate.NewLimiter(rate.Limit(rps), burst), nil)
}

// Route sends fraction (0..1) of from's requests to to; fraction 0 stops re-routing
// from. From names a route or a model (one rule table serves both): a request whose
// route is from goes to route to ([Permit.Route]), one whose model is from goes to model
// to ([Permit.Model]) — a canary's weighted split, or a cheaper model for part of the
// load. The middleware passes both on to a balancer.Proxy behind it.
func (a *Admission) Route(from, to string, fraction float64) error {
	if err := checkFraction(fraction); err != nil {
		return err
	}
	if from == "" || to == "" {
		return errors.New("middleware: route: empty from or to")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if fraction == 0 {
		a.route.del(from)
		return nil
	}
	return setRule(a, a.route, from, &routeRule{to, fraction}, nil)
}

// SetMaxConcurrency changes the concurrency limit; 0 removes it. Requests already
// admitted keep their slots; queued ones are admitted as slots free up.
func (a *Admission) SetMaxConcurrency(n int) error {
	if n < 0 {
		return fmt.Errorf("middleware: max concurrency %d is negative", n)
	}
	a.limit.Store(int64(n))
	a.handOff()
	return nil
}
