package llm

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
