package llm

import (
	"errors"
	"math"
)

// TokenThrottler lets the scaling loop set token budgets at run time. Registered as
// the loop's throttler (autoscale.WithThrottler(llm.TokenThrottler{Budgets: b})), a
// policy's throttle action — autoscale.Throttle{Tenant, RPS, Burst} in Go,
// throttle(tenant, rate, burst) in Lua — sets the tenant's token budget instead of a
// request rate: RPS tokens per second and a bucket of Burst tokens. RPS +Inf removes
// the rate limit (a daily quota stays); RPS 0 leaves a bucket of one token, which no
// request fits. The loop's other throttles then go to no request-rate limiter: a
// gateway that wants both registers a throttler of its own that dispatches by
// tenant.
type TokenThrottler struct {
	Budgets *Budgets
}

// Throttle sets tenant's token rate (tokens per second) and burst (tokens).
func (t TokenThrottler) Throttle(tenant string, rps float64, burst int) error {
	if t.Budgets == nil {
		return errors.New("llm: token throttler without budgets")
	}
	if math.IsNaN(rps) || rps < 0 {
		return errors.New("llm: token throttle: rate is not >= 0")
	}
	cur, _ := t.Budgets.Get(tenant, "")
	switch {
	case math.IsInf(rps, 1):
		cur.TokensPerMinute, cur.Burst = 0, 0
		if cur.DailyTokens == 0 {
			t.Budgets.Remove(tenant, "")
			return nil
		}
	case rps == 0:
		cur.TokensPerMinute, cur.Burst = 1, 1
	default:
		cur.TokensPerMinute = max(1, int64(math.Round(rps*60)))
		cur.Burst = int64(max(burst, 1))
	}
	return t.Budgets.Set(tenant, "", cur)
}

// Get returns (tenant, model)'s own budget (not one it has from AnyTenant).
func (b *Budgets) Get(tenant, model string) (Budget, bool) {
	r := b.rules.Load()
	if tenant == AnyTenant {
		def := r.any
		if model != "" {
			def = r.anyModel[model]
		}
		if def == nil {
			return Budget{}, false
		}
		return *def, true
	}
	k, ok := r.buckets[budgetKey{tenant, model}]
	if !ok {
		return Budget{}, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.b, true
}

// SetTokenRate sets the rate (tokens per minute; 0 removes the rate limit) and burst
// (0: the rate) of (tenant, model)'s budget, keeping its daily quota; a budget left
// with no limit at all is removed. It makes Budgets the scaling loop's budgeter
// (autoscale.WithBudgeter(b)): a policy's budget action — autoscale.Budget{Tenant,
// Model, TokensPerMinute, Burst} in Go, budget(tenant, model, tokens_per_minute[,
// burst]) in Lua — calls it.
func (b *Budgets) SetTokenRate(tenant, model string, tokensPerMinute, burst int64) error {
	cur, ok := b.Get(tenant, model)
	cur.TokensPerMinute, cur.Burst = tokensPerMinute, burst
	if cur == (Budget{}) {
		if ok {
			b.Remove(tenant, model)
		}
		return nil
	}
	return b.Set(tenant, model, cur)
}
