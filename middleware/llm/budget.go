package llm

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Budget is a token budget: a token bucket refilled at TokensPerMinute up to Burst,
// and a quota of tokens per day. A zero field is no limit of that kind.
type Budget struct {
	// TokensPerMinute is the bucket's refill rate; 0 means no rate limit.
	TokensPerMinute int64
	// Burst is the bucket's size, the most one minute's idle time can save up; 0
	// means TokensPerMinute. A request whose reservation exceeds it never fits.
	Burst int64
	// DailyTokens is the quota per day (midnight to midnight in the Budgets'
	// location, UTC by default); 0 means none.
	DailyTokens int64
}

// Validate reports every problem with b.
func (b Budget) Validate() error {
	var errs []error
	if b.TokensPerMinute < 0 {
		errs = append(errs, fmt.Errorf("llm: budget: tokens per minute %d is negative", b.TokensPerMinute))
	}
	if b.Burst < 0 {
		errs = append(errs, fmt.Errorf("llm: budget: burst %d is negative", b.Burst))
	}
	if b.DailyTokens < 0 {
		errs = append(errs, fmt.Errorf("llm: budget: daily tokens %d is negative", b.DailyTokens))
	}
	return errors.Join(errs...)
}

// Errors [Budgets.Reserve] rejects with; the gateway answers each with 429.
var (
	// ErrOverRate: the bucket holds fewer tokens than the reservation.
	ErrOverRate = errors.New("llm: over the tokens-per-minute budget")
	// ErrOverQuota: the day's quota has fewer tokens left than the reservation.
	ErrOverQuota = errors.New("llm: over the daily token quota")
	// ErrTooLargeForBudget: the reservation exceeds the bucket's size: it never fits.
	ErrTooLargeForBudget = errors.New("llm: request larger than the token budget's burst")
)

// AnyTenant, as a tenant in [Budgets.Set], gives every tenant without a budget of its
// own a bucket of that budget (one per tenant, made on first use, at most
// [BudgetsConfig.MaxTenants]).
const AnyTenant = "*"

// BudgetsConfig holds a [Budgets]' settings. The zero value is the defaults.
type BudgetsConfig struct {
	// Location sets where a day starts for daily quotas; nil means UTC.
	Location *time.Location
	// MaxTenants bounds the buckets made for AnyTenant; 0 means 100,000. Tenants
	// past it share one bucket.
	MaxTenants int
}

// Budgets enforces token budgets per tenant and per (tenant, model): a request
// reserves its estimate (prompt estimate plus max output tokens) from each budget that
// applies before the upstream is called, and settles the difference from the
// reported usage after. It is safe for concurrent use: a request takes each of its
// buckets' locks once to reserve and once to settle, so requests contend only when
// they share a tenant.
//
// # Overspend
//
// A reservation is taken only when every applicable bucket holds it, so concurrent
// requests never overspend by what they reserve; they overspend only by what they use
// beyond their reservations. Over any span a tenant uses at most its budget plus
// C × E tokens, where C is the number of its requests in flight at once and E the
// largest excess of one request's actual usage over its reservation. With max_tokens
// set (and honoured upstream) E is the prompt estimate's error; without it, what the
// output runs past [Config.OutputReserve]. TestBudgetsUnderConcurrency checks the
// bound with 64 concurrent clients. A bucket never goes below zero: what a settle
// cannot take is counted in [BudgetStats.Overspent].
type Budgets struct {
	cfg   BudgetsConfig
	clock metrics.Clock
	mu    sync.Mutex // serializes Set and Remove
	rules atomic.Pointer[budgetRules]
	stats struct {
		reserved, settled, rejectedRate, rejectedQuota, tooLarge, overspent atomic.Int64
	}
}

type budgetKey struct{ tenant, model string }

type budgetRules struct {
	buckets  map[budgetKey]*bucket // explicit budgets
	any      *Budget               // AnyTenant's budget, or nil
	anyModel map[string]*Budget    // AnyTenant's per-model budgets
	lazy     *sync.Map             // budgetKey → *bucket made for AnyTenant
	lazyN    *atomic.Int64
}

// overflowTenant keys the bucket that tenants past MaxTenants share (per model).
const overflowTenant = "\x00overflow"

// bucket is one budget's state.
type bucket struct {
	mu       sync.Mutex
	b        Budget
	rate     float64 // tokens per second
	burst    float64
	level    float64
	last     time.Time
	day      int64
	dayUsed  int64
	reserved int64 // tokens reserved and not yet settled
	inFlight int64 // reservations not yet settled
}

// NewBudgets returns budgets with cfg's settings and no budget set: everything passes
// until [Budgets.Set] adds one. clock nil means the system clock.
func NewBudgets(cfg BudgetsConfig, clock metrics.Clock) (*Budgets, error) {
	if cfg.MaxTenants < 0 {
		return nil, errors.New("llm: budgets: max tenants is negative")
	}
	if cfg.MaxTenants == 0 {
		cfg.MaxTenants = 100_000
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if clock == nil {
		clock = metrics.NewSystemClock()
	}
	b := &Budgets{cfg: cfg, clock: clock}
	b.rules.Store(&budgetRules{buckets: map[budgetKey]*bucket{}, anyModel: map[string]*Budget{}, lazy: new(sync.Map), lazyN: new(atomic.Int64)})
	return b, nil
}

func (b *Budgets) dayOf(t time.Time) int64 {
	y, m, d := t.In(b.cfg.Location).Date()
	return int64(y)*400 + int64(m)*32 + int64(d)
}

func (b *Budgets) newBucket(bud Budget, now time.Time) *bucket {
	k := &bucket{last: now, day: b.dayOf(now)}
	k.set(bud, now)
	k.level = k.burst
	return k
}

// set changes the bucket's budget, keeping its level (held to the new burst) and the
// day's use. k.mu is held or k is new.
func (k *bucket) set(bud Budget, now time.Time) {
	k.refill(now)
	k.b = bud
	k.rate = float64(bud.TokensPerMinute) / 60
	k.burst = float64(bud.Burst)
	if bud.Burst == 0 {
		k.burst = float64(bud.TokensPerMinute)
	}
	k.level = min(k.level, k.burst)
}

func (k *bucket) refill(now time.Time) {
	if dt := now.Sub(k.last); dt > 0 {
		k.level = min(k.burst, k.level+k.rate*dt.Seconds())
		k.last = now
	}
}

// Set gives (tenant, model) budget bud, or changes it, keeping the bucket's tokens.
// model "" is the tenant's budget across models; tenant [AnyTenant] is the default
// for every tenant without one of its own (per model too).
func (b *Budgets) Set(tenant, model string, bud Budget) error {
	if tenant == "" {
		return errors.New("llm: budgets: empty tenant")
	}
	if err := bud.Validate(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	old := b.rules.Load()
	if tenant == AnyTenant {
		r := old.clone()
		nb := bud
		if model == "" {
			r.any = &nb
		} else {
			r.anyModel[model] = &nb
		}
		// Buckets made for the old default follow the new one.
		r.lazy.Range(func(key, v any) bool {
			k := v.(*bucket)
			if key.(budgetKey).model == model {
				k.mu.Lock()
				k.set(bud, now)
				k.mu.Unlock()
			}
			return true
		})
		b.rules.Store(r)
		return nil
	}
	key := budgetKey{tenant, model}
	if k, ok := old.buckets[key]; ok {
		k.mu.Lock()
		k.set(bud, now)
		k.mu.Unlock()
		return nil
	}
	r := old.clone()
	r.buckets[key] = b.newBucket(bud, now)
	b.rules.Store(r)
	return nil
}

// Remove drops (tenant, model)'s budget; reservations already taken still settle.
func (b *Budgets) Remove(tenant, model string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rules.Load().clone()
	if tenant == AnyTenant {
		if model == "" {
			r.any = nil
		} else {
			delete(r.anyModel, model)
		}
		r.lazy, r.lazyN = new(sync.Map), new(atomic.Int64)
	} else {
		delete(r.buckets, budgetKey{tenant, model})
	}
	b.rules.Store(r)
}

func (r *budgetRules) clone() *budgetRules {
	n := &budgetRules{buckets: make(map[budgetKey]*bucket, len(r.buckets)+1), any: r.any,
		anyModel: make(map[string]*Budget, len(r.anyModel)+1), lazy: r.lazy, lazyN: r.lazyN}
	for k, v := range r.buckets {
		n.buckets[k] = v
	}
	for k, v := range r.anyModel {
		n.anyModel[k] = v
	}
	return n
}

// find returns the bucket of (tenant, model) under r: an explicit one, or one made
// for AnyTenant's budget, or nil.
func (b *Budgets) find(r *budgetRules, tenant, model string, now time.Time) *bucket {
	if k, ok := r.buckets[budgetKey{tenant, model}]; ok {
		return k
	}
	var def *Budget
	if model == "" {
		def = r.any
	} else {
		def = r.anyModel[model]
	}
	if def == nil {
		return nil
	}
	key := budgetKey{tenant, model}
	if v, ok := r.lazy.Load(key); ok {
		return v.(*bucket)
	}
	if r.lazyN.Load() >= int64(b.cfg.MaxTenants) {
		key = budgetKey{overflowTenant, model}
		if v, ok := r.lazy.Load(key); ok {
			return v.(*bucket)
		}
		v, _ := r.lazy.LoadOrStore(key, b.newBucket(*def, now))
		return v.(*bucket)
	}
	v, loaded := r.lazy.LoadOrStore(key, b.newBucket(*def, now))
	if !loaded {
		r.lazyN.Add(1)
	}
	return v.(*bucket)
}

// Reservation is tokens held from up to two buckets (the tenant's and the tenant's
// for the model) for one request. Exactly one [Budgets.Settle] ends it; the zero
// value holds nothing. It is a value: reserving allocates nothing.
type Reservation struct {
	tenant, model *bucket
	tokens        int64
	// Remaining is the fewest tokens left in the applicable buckets after the
	// reservation (or at the rejection), -1 when no rate limit applies.
	Remaining int64
	// Limit is the smallest burst among them, -1 when none applies.
	Limit int64
	// Reset is how long until the emptiest bucket is full again.
	Reset time.Duration
	// RetryAfter is, after a rejection, when the reservation would fit.
	RetryAfter time.Duration
}

// Held reports whether the reservation holds tokens to settle.
func (r Reservation) Held() bool { return r.tenant != nil || r.model != nil }

// Reserve takes tokens from the budgets of tenant and of (tenant, model) at now. It
// takes from both or from neither; on a rejection the error is [ErrOverRate],
// [ErrOverQuota] or [ErrTooLargeForBudget] and the Reservation's RetryAfter, Remaining
// and Reset describe the bucket that refused. A tenant without budgets reserves
// nothing and passes.
func (b *Budgets) Reserve(tenant, model string, tokens int64, now time.Time) (Reservation, error) {
	res := Reservation{Remaining: -1, Limit: -1}
	if tenant == "" {
		return res, nil
	}
	r := b.rules.Load()
	if len(r.buckets) == 0 && r.any == nil && len(r.anyModel) == 0 {
		return res, nil
	}
	tokens = max(tokens, 0)
	kt := b.find(r, tenant, "", now)
	km := b.find(r, tenant, model, now)
	day := b.dayOf(now)
	if kt != nil {
		kt.mu.Lock()
		if err := kt.take(tokens, now, day, &res, b); err != nil {
			kt.mu.Unlock()
			return res, b.rejected(err)
		}
		kt.mu.Unlock()
		res.tenant = kt
	}
	if km != nil {
		km.mu.Lock()
		if err := km.take(tokens, now, day, &res, b); err != nil {
			km.mu.Unlock()
			if kt != nil {
				kt.mu.Lock()
				kt.untake(tokens)
				kt.mu.Unlock()
				res.tenant = nil
			}
			return res, b.rejected(err)
		}
		km.mu.Unlock()
		res.model = km
	}
	res.tokens = tokens
	if res.Held() {
		b.stats.reserved.Add(1)
	}
	return res, nil
}

func (b *Budgets) rejected(err error) error {
	switch err {
	case ErrOverRate:
		b.stats.rejectedRate.Add(1)
	case ErrOverQuota:
		b.stats.rejectedQuota.Add(1)
	default:
		b.stats.tooLarge.Add(1)
	}
	return err
}

// take reserves n tokens from k, noting its state in res. k.mu is held.
func (k *bucket) take(n int64, now time.Time, day int64, res *Reservation, b *Budgets) error {
	k.refill(now)
	if k.day != day {
		k.day, k.dayUsed = day, 0
	}
	limited := k.b.TokensPerMinute > 0
	if limited {
		if float64(n) > k.burst {
			k.note(res)
			return ErrTooLargeForBudget
		}
		if float64(n) > k.level {
			k.note(res)
			res.RetryAfter = time.Duration(math.Ceil((float64(n)-k.level)/k.rate*1e3)) * time.Millisecond
			return ErrOverRate
		}
	}
	if q := k.b.DailyTokens; q > 0 && k.dayUsed+n > q {
		k.note(res)
		next := now.In(b.cfg.Location)
		y, m, d := next.Date()
		res.RetryAfter = time.Date(y, m, d+1, 0, 0, 0, 0, b.cfg.Location).Sub(now)
		return ErrOverQuota
	}
	if limited {
		k.level -= float64(n)
	}
	k.dayUsed += n
	k.reserved += n
	k.inFlight++
	k.note(res)
	return nil
}

// untake gives back a reservation that the other bucket refused. k.mu is held.
func (k *bucket) untake(n int64) {
	if k.b.TokensPerMinute > 0 {
		k.level = min(k.burst, k.level+float64(n))
	}
	k.dayUsed = max(0, k.dayUsed-n)
	k.reserved -= n
	k.inFlight--
}

// note folds k's state into res's headers: the fewest tokens remaining, the smallest
// limit, the longest reset. k.mu is held.
func (k *bucket) note(res *Reservation) {
	if k.b.TokensPerMinute == 0 {
		return
	}
	rem := int64(math.Floor(k.level))
	if res.Remaining < 0 || rem < res.Remaining {
		res.Remaining = rem
	}
	if lim := int64(k.burst); res.Limit < 0 || lim < res.Limit {
		res.Limit = lim
	}
	reset := time.Duration((k.burst - k.level) / k.rate * float64(time.Second))
	res.Reset = max(res.Reset, reset)
}

// give settles a reservation of n tokens that used used. k.mu is held.
func (k *bucket) give(n, used int64, now time.Time, day int64) (overspent int64) {
	k.refill(now)
	k.reserved -= n
	k.inFlight--
	diff := n - used
	if k.b.TokensPerMinute > 0 {
		if diff >= 0 {
			k.level = min(k.burst, k.level+float64(diff))
		} else {
			take := min(float64(-diff), k.level)
			k.level -= take
			overspent = -diff - int64(take)
		}
	}
	if k.day == day {
		k.dayUsed = max(0, k.dayUsed-diff)
	}
	return overspent
}

// Settle ends a reservation with the tokens the request used: the difference goes
// back to (or, beyond the reservation, is taken from) each bucket, never below zero.
func (b *Budgets) Settle(res Reservation, used int64, now time.Time) {
	if !res.Held() {
		return
	}
	used = max(used, 0)
	day := b.dayOf(now)
	var over int64
	for _, k := range [...]*bucket{res.tenant, res.model} {
		if k == nil {
			continue
		}
		k.mu.Lock()
		over = max(over, k.give(res.tokens, used, now, day))
		k.mu.Unlock()
	}
	b.stats.settled.Add(1)
	b.stats.overspent.Add(over)
}

// BudgetStats counts what budgets did.
type BudgetStats struct {
	// Reserved and Settled count reservations taken and settled; their difference is
	// the requests in flight.
	Reserved, Settled int64
	// RejectedRate, RejectedQuota and TooLarge count rejections by cause.
	RejectedRate, RejectedQuota, TooLarge int64
	// Overspent is the tokens used beyond reservations that a bucket could not take
	// (it was empty).
	Overspent int64
	// Outstanding is the tokens reserved and not yet settled, over every bucket.
	Outstanding int64
}

// Stats returns the budgets' counts.
func (b *Budgets) Stats() BudgetStats {
	s := BudgetStats{
		Reserved: b.stats.reserved.Load(), Settled: b.stats.settled.Load(),
		RejectedRate: b.stats.rejectedRate.Load(), RejectedQuota: b.stats.rejectedQuota.Load(),
		TooLarge: b.stats.tooLarge.Load(), Overspent: b.stats.overspent.Load(),
	}
	r := b.rules.Load()
	add := func(k *bucket) {
		k.mu.Lock()
		s.Outstanding += k.reserved
		k.mu.Unlock()
	}
	for _, k := range r.buckets {
		add(k)
	}
	r.lazy.Range(func(_, v any) bool { add(v.(*bucket)); return true })
	return s
}

// BudgetState is one bucket's state, for dashboards and tests.
type BudgetState struct {
	Budget Budget
	// Level is the tokens in the bucket; DayUsed the tokens used today.
	Level   float64
	DayUsed int64
	// Reserved and InFlight are the tokens and reservations not yet settled.
	Reserved, InFlight int64
}

// State returns (tenant, model)'s bucket state at now, false without one (for a
// tenant under AnyTenant, once it was made).
func (b *Budgets) State(tenant, model string, now time.Time) (BudgetState, bool) {
	r := b.rules.Load()
	k, ok := r.buckets[budgetKey{tenant, model}]
	if !ok {
		v, ok2 := r.lazy.Load(budgetKey{tenant, model})
		if !ok2 {
			return BudgetState{}, false
		}
		k = v.(*bucket)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refill(now)
	used := k.dayUsed
	if k.day != b.dayOf(now) {
		used = 0
	}
	return BudgetState{Budget: k.b, Level: k.level, DayUsed: used, Reserved: k.reserved, InFlight: k.inFlight}, true
}
