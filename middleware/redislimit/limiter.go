package redislimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// Defaults of a [Config].
const (
	DefaultPrefix  = "autoscalelua:limit"
	DefaultRefresh = 100 * time.Millisecond
	MinRefresh     = 10 * time.Millisecond
)

// Errors of the package.
var (
	// ErrInvalidConfig reports a bad setting, limit or option.
	ErrInvalidConfig = errors.New("redislimit: invalid configuration")
	// ErrDeadline reports a refresh that Redis did not answer within the deadline.
	ErrDeadline = errors.New("redislimit: redis did not answer within the deadline")
	// ErrNewerFormat reports a bucket written by a newer version of this package.
	ErrNewerFormat = errors.New("redislimit: bucket written in a newer format")
)

// Config holds a [Limiter]'s settings. The zero value of every field means its default.
type Config struct {
	// Prefix starts every key the limiter writes: Prefix+":b:"+tenant for a tenant's
	// bucket, Prefix+":replicas" for the heartbeat set. Default [DefaultPrefix].
	// Replicas sharing limits share the prefix.
	Prefix string
	// Replica names this replica in the heartbeat set; unique among the replicas.
	// Default: the host name and a random suffix.
	Replica string
	// Refresh is the period of the background refresh, at least [MinRefresh].
	// Default [DefaultRefresh].
	Refresh time.Duration
	// Deadline is how long a refresh waits for Redis before falling back, at most
	// Refresh. Default Refresh / 2.
	Deadline time.Duration
	// Replicas is N, the number of replicas sharing the limits, used for the local
	// shares (limit / N) while Redis has never answered; once it has, N is the number
	// of replicas its heartbeat set counts. Default 1.
	Replicas int
	// HeartbeatTTL is how long a replica counts as live after its last heartbeat.
	// Default 3 × Refresh, at least a second.
	HeartbeatTTL time.Duration
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replica == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		c.Replica = host + "-" + hex.EncodeToString(b[:])
	}
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Deadline == 0 {
		c.Deadline = c.Refresh / 2
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.HeartbeatTTL == 0 {
		c.HeartbeatTTL = max(3*c.Refresh, time.Second)
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	d := c.withDefaults()
	if d.Refresh < MinRefresh {
		errs = append(errs, fmt.Errorf("refresh %v is below %v", c.Refresh, MinRefresh))
	}
	if d.Deadline < 0 || d.Deadline > d.Refresh {
		errs = append(errs, fmt.Errorf("deadline %v out of [0, refresh %v]", c.Deadline, d.Refresh))
	}
	if c.Replicas < 0 {
		errs = append(errs, fmt.Errorf("replicas %d is negative", c.Replicas))
	}
	if d.HeartbeatTTL < d.Refresh {
		errs = append(errs, fmt.Errorf("heartbeat TTL %v is below the refresh %v", c.HeartbeatTTL, d.Refresh))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// Limit is one tenant's budget: Rate units (requests, or tokens) per second, in bursts
// of up to Burst.
type Limit struct {
	// Rate is the sustained rate per second, >= 0 and finite; 0 blocks the tenant.
	Rate float64
	// Burst is the bucket's size, >= 1 unless Rate is 0.
	Burst int
	// MaxBatch is the most a replica leases at once; 0 means Rate × Refresh, at
	// least 1. It bounds the overshoot (see the package doc).
	MaxBatch int
}

// Option configures a [Limiter].
type Option func(*Limiter) error

// WithClock sets the clock the local shares are refilled by. Default
// [metrics.NewSystemClock]. Redis's buckets run on Redis's clock.
func WithClock(c metrics.Clock) Option {
	return func(l *Limiter) error {
		if c == nil {
			return errors.New("nil clock")
		}
		l.clock = c
		return nil
	}
}

// WithLogger sets the logger of state changes. Default [slog.Default], the default
// logger everywhere in this module.
func WithLogger(lg *slog.Logger) Option {
	return func(l *Limiter) error {
		if lg == nil {
			return errors.New("nil logger")
		}
		l.logger = lg
		return nil
	}
}

// Limiter is a cluster-wide limit per tenant, leased in batches from token buckets in
// Redis (see the package doc). [Limiter.AllowN] is the request path; [Limiter.Run]
// refreshes the allowances in the background. A Limiter is safe for concurrent use.
type Limiter struct {
	client redis.UniversalClient
	cfg    Config
	clock  metrics.Clock
	logger *slog.Logger
	hbKey  string

	table atomic.Pointer[map[string]*bucket]
	wake  chan struct{}

	mu sync.Mutex // serializes limit changes; guards bucket limits and state

	roundMu   sync.Mutex // serializes refreshes
	lastAt    time.Time
	fallback  bool
	replicas  int
	straggler atomic.Bool // an abandoned Redis call has not returned yet
	wg        sync.WaitGroup

	running atomic.Bool

	stats struct {
		rounds, failures, fallbacks, keyErrors, scriptLoads, granted, localGranted atomic.Uint64
	}
}

var _ middleware.TenantLimiter = (*Limiter)(nil)

// bucket is one tenant's local allowance.
type bucket struct {
	tokens atomic.Int64 // leased and not yet spent; may dip below 0 for an instant
	used   atomic.Int64 // units asked for, allowed or not, ever
	retry  atomic.Int64 // the Retry-After of a denial, ns
	maxAsk atomic.Int64 // the largest ask denied since the last refresh
	_      [32]byte     // keep two tenants' counters off one cache line

	// guarded by Limiter.mu
	limit    Limit
	key      string
	lastUsed int64
	fetched  bool
	frac     float64 // the fraction of a token a local refill left over
	keyErr   string  // the last per-key error, "" when none
}

// New returns a limiter that shares its limits through client. It starts no goroutine:
// call [Limiter.Run].
func New(client redis.UniversalClient, cfg Config, opts ...Option) (*Limiter, error) {
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("nil redis client"))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	l := &Limiter{client: client, cfg: cfg.withDefaults(), wake: make(chan struct{}, 1)}
	for _, o := range opts {
		if err := o(l); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidConfig, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if l.clock == nil {
		l.clock = metrics.NewSystemClock()
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	l.hbKey = l.cfg.Prefix + ":replicas"
	l.replicas = l.cfg.Replicas
	empty := map[string]*bucket{}
	l.table.Store(&empty)
	return l, nil
}

// SetLimit sets tenant's limit. A tenant without a limit is not limited. Changing a
// tenant's limit keeps its allowance and its bucket in Redis.
func (l *Limiter) SetLimit(tenant string, lim Limit) error {
	var errs []error
	if tenant == "" {
		errs = append(errs, errors.New("empty tenant"))
	}
	if math.IsNaN(lim.Rate) || math.IsInf(lim.Rate, 0) || lim.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %v is not finite and >= 0", lim.Rate))
	}
	if lim.Rate > 0 && lim.Burst < 1 {
		errs = append(errs, fmt.Errorf("burst %d is below 1", lim.Burst))
	}
	if lim.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("max batch %d is negative", lim.MaxBatch))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: tenant %q: %w", ErrInvalidConfig, tenant, err)
	}
	if lim.MaxBatch == 0 {
		lim.MaxBatch = max(1, int(lim.Rate*l.cfg.Refresh.Seconds()))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.table.Load()
	b, ok := old[tenant]
	if !ok {
		b = &bucket{key: l.cfg.Prefix + ":b:" + tenant}
	}
	b.limit = lim
	retry := l.cfg.Refresh
	if lim.Rate == 0 {
		retry = time.Minute
	}
	b.retry.Store(int64(retry))
	if !ok {
		m := maps.Clone(old)
		m[tenant] = b
		l.table.Store(&m)
	}
	l.poke()
	return nil
}

// RemoveLimit takes tenant's limit away: it is no longer limited.
func (l *Limiter) RemoveLimit(tenant string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.table.Load()
	if _, ok := old[tenant]; !ok {
		return
	}
	m := maps.Clone(old)
	delete(m, tenant)
	l.table.Store(&m)
}

// AllowN reports whether n units (requests, or tokens) of tenant may proceed, spending
// them from the local allowance, and otherwise how long the client should wait. It never
// blocks and does no I/O: one map read and one atomic add (BenchmarkAllow). A tenant
// without a limit is always allowed.
func (l *Limiter) AllowN(tenant string, _ time.Time, n int) (bool, time.Duration) {
	b, ok := (*l.table.Load())[tenant]
	if !ok || n <= 0 {
		return true, 0
	}
	b.used.Add(int64(n))
	if b.tokens.Add(-int64(n)) >= 0 {
		return true, 0
	}
	b.tokens.Add(int64(n))
	for m := b.maxAsk.Load(); int64(n) > m && !b.maxAsk.CompareAndSwap(m, int64(n)); m = b.maxAsk.Load() {
	}
	l.poke()
	return false, time.Duration(b.retry.Load())
}

// poke asks the refresher for an early refresh, without waiting.
func (l *Limiter) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run refreshes the allowances every Refresh, and early when a tenant runs out, until
// ctx ends; then it waits for an abandoned Redis call to return (at most the client's
// read timeout) and returns ctx's error. Only one Run may be active at a time.
func (l *Limiter) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("redislimit: already running")
	}
	defer l.running.Store(false)
	defer l.wg.Wait()
	tick := time.NewTicker(l.cfg.Refresh)
	defer tick.Stop()
	var last time.Time
	for {
		l.Refresh(ctx)
		last = time.Now()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-l.wake:
			if wait := l.cfg.Refresh/4 - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
		}
	}
}

// Close waits for an abandoned Redis call to return. It does not close the client.
func (l *Limiter) Close() error {
	l.wg.Wait()
	return nil
}

// want is one tenant's part of a refresh.
type want struct {
	b     *bucket
	limit Limit
	n     int64 // tokens to ask Redis for; 0 for none
}

// plan decides what each tenant asks for.
func (l *Limiter) plan() []want {
	l.mu.Lock()
	defer l.mu.Unlock()
	tab := *l.table.Load()
	out := make([]want, 0, len(tab))
	for _, b := range tab {
		used := b.used.Load()
		d := used - b.lastUsed
		b.lastUsed = used
		held := max(b.tokens.Load(), 0)
		// A batch covers at least the largest single ask denied (a token budget's
		// request may need more than MaxBatch at once), up to the burst.
		mb := max(int64(b.limit.MaxBatch), min(b.maxAsk.Swap(0), int64(b.limit.Burst)))
		w := 2*d - held
		if !b.fetched {
			w = mb
		}
		w = min(max(w, 0), mb)
		if b.limit.Rate == 0 {
			w = 0
		}
		out = append(out, want{b: b, limit: b.limit, n: w})
	}
	return out
}

// Refresh runs one refresh: it tops the allowances up from Redis, or locally in
// fallback (see the package doc). [Limiter.Run] calls it; tests call it to step the
// limiter. It returns the refresh's failure, if any; a failure leaves the limiter in
// fallback, never without an allowance.
func (l *Limiter) Refresh(ctx context.Context) error {
	l.roundMu.Lock()
	defer l.roundMu.Unlock()
	now := l.clock.Now()
	elapsed := time.Duration(0)
	if !l.lastAt.IsZero() {
		elapsed = max(now.Sub(l.lastAt), 0)
	}
	l.lastAt = now
	plan := l.plan()
	l.stats.rounds.Add(1)

	var res exchange
	err := ErrDeadline
	if !l.straggler.Load() {
		res, err = l.roundTrip(ctx, plan)
	}
	if err != nil {
		l.stats.failures.Add(1)
		if !l.fallback {
			l.fallback = true
			l.stats.fallbacks.Add(1)
			l.logger.LogAttrs(ctx, slog.LevelWarn, "redislimit: redis unavailable, limits fall back to local shares",
				slog.Int("replicas", l.replicas), slog.String("error", err.Error()))
		}
		for _, w := range plan {
			l.localGrant(w, elapsed)
		}
		return fmt.Errorf("redislimit: refresh: %w", err)
	}
	if res.replicas > 0 {
		l.replicas = res.replicas
	}
	if l.fallback {
		l.fallback = false
		l.logger.LogAttrs(ctx, slog.LevelInfo, "redislimit: redis answers again, limits are cluster-wide",
			slog.Int("replicas", l.replicas))
	}
	var keyErrs []error
	for i, w := range plan {
		if w.n == 0 {
			continue
		}
		if kerr := res.errs[i]; kerr != nil {
			l.keyError(ctx, w.b, kerr)
			keyErrs = append(keyErrs, kerr)
			l.localGrant(w, elapsed)
			continue
		}
		l.keyError(ctx, w.b, nil)
		w.b.tokens.Add(res.granted[i])
		l.stats.granted.Add(uint64(res.granted[i]))
		l.mu.Lock()
		w.b.fetched = true
		l.mu.Unlock()
	}
	if len(keyErrs) > 0 {
		return fmt.Errorf("redislimit: refresh: %w", errors.Join(keyErrs...))
	}
	return nil
}

// keyError records a tenant's bucket error (nil: none), logging changes once.
func (l *Limiter) keyError(ctx context.Context, b *bucket, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.stats.keyErrors.Add(1)
		if b.keyErr == "" {
			l.logger.LogAttrs(ctx, slog.LevelWarn, "redislimit: tenant bucket unusable, its limit falls back to a local share",
				slog.String("key", b.key), slog.String("error", err.Error()))
		}
		b.keyErr = err.Error()
	case b.keyErr != "":
		l.logger.LogAttrs(ctx, slog.LevelInfo, "redislimit: tenant bucket usable again", slog.String("key", b.key))
		b.keyErr = ""
	}
}

// localGrant refills a tenant's allowance at Rate / N over elapsed, up to Burst / N.
func (l *Limiter) localGrant(w want, elapsed time.Duration) {
	if w.limit.Rate == 0 {
		return
	}
	n := float64(max(l.replicas, 1))
	capTokens := int64(max(math.Floor(float64(w.limit.Burst)/n), 1))
	l.mu.Lock()
	add := w.limit.Rate/n*elapsed.Seconds() + w.b.frac
	whole := math.Floor(add)
	w.b.frac = add - whole
	l.mu.Unlock()
	g := min(int64(whole), max(capTokens-max(w.b.tokens.Load(), 0), 0))
	if g > 0 {
		w.b.tokens.Add(g)
		l.stats.localGranted.Add(uint64(g))
	}
}

// exchange is what one refresh got from Redis.
type exchange struct {
	replicas int
	granted  []int64
	errs     []error // per tenant in plan order
}

// roundTrip runs the exchange on a goroutine and waits at most Deadline for it: a
// hanging Redis never holds the refresher up longer than that.
func (l *Limiter) roundTrip(ctx context.Context, plan []want) (exchange, error) {
	type result struct {
		ex  exchange
		err error
	}
	done := make(chan result, 1)
	l.straggler.Store(true)
	l.wg.Go(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Deadline)
		ex, err := l.exchange(cctx, plan)
		cancel()
		l.straggler.Store(false) // before the result: the next refresh may start at once
		done <- result{ex, err}
	})
	t := time.NewTimer(l.cfg.Deadline)
	defer t.Stop()
	select {
	case r := <-done:
		return r.ex, r.err
	case <-t.C:
		return exchange{}, ErrDeadline
	case <-ctx.Done():
		return exchange{}, ctx.Err()
	}
}

// exchange sends the heartbeat and the tenants' asks in one pipeline, loading the
// scripts and sending again once when Redis does not know them (after a restart or a
// SCRIPT FLUSH).
func (l *Limiter) exchange(ctx context.Context, plan []want) (exchange, error) {
	for attempt := 0; ; attempt++ {
		ex, noscript, err := l.send(ctx, plan)
		if err != nil || !noscript || attempt == 1 {
			return ex, err
		}
		l.stats.scriptLoads.Add(1)
		for _, s := range []*redis.Script{heartbeatScript, takeScript} {
			if err := s.Load(ctx, l.client).Err(); err != nil {
				return exchange{}, fmt.Errorf("load script: %w", err)
			}
		}
	}
}

func (l *Limiter) send(ctx context.Context, plan []want) (ex exchange, noscript bool, err error) {
	pipe := l.client.Pipeline()
	hb := heartbeatScript.EvalSha(ctx, pipe, []string{l.hbKey}, l.cfg.Replica, l.cfg.HeartbeatTTL.Milliseconds())
	cmds := make([]*redis.Cmd, len(plan))
	for i, w := range plan {
		if w.n > 0 {
			cmds[i] = takeScript.EvalSha(ctx, pipe, []string{w.b.key}, w.limit.Rate, w.limit.Burst, w.n, formatVersion)
		}
	}
	_, perr := pipe.Exec(ctx)
	if perr != nil && !isRedisError(perr) {
		return exchange{}, false, perr // the network, not a reply
	}
	ex.granted = make([]int64, len(plan))
	ex.errs = make([]error, len(plan))
	if n, err := hb.Int64(); err == nil {
		ex.replicas = int(n)
	} else if isNoScript(err) {
		noscript = true
	} else {
		l.stats.keyErrors.Add(1) // the heartbeat key is unusable: keep the last N
	}
	for i, c := range cmds {
		if c == nil {
			continue
		}
		g, err := c.Int64()
		switch {
		case err == nil:
			ex.granted[i] = g
		case isNoScript(err):
			noscript = true
		case strings.HasPrefix(err.Error(), "NEWERFORMAT"):
			ex.errs[i] = fmt.Errorf("%s: %w: %w", plan[i].b.key, ErrNewerFormat, err)
		default:
			ex.errs[i] = fmt.Errorf("%s: %w", plan[i].b.key, err)
		}
	}
	return ex, noscript, nil
}

func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.ErrClosed)
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Stats counts what the limiter did.
type Stats struct {
	// Fallback is true while the limits are local shares.
	Fallback bool
	// Replicas is N, the replicas the local shares divide the limits by.
	Replicas int
	// Refreshes and Failures count refreshes and those that failed (Redis down,
	// erring or past the deadline).
	Refreshes, Failures uint64
	// Fallbacks counts entries into fallback.
	Fallbacks uint64
	// KeyErrors counts tenant buckets (or the heartbeat set) Redis could not use: a
	// wrong type, a newer format.
	KeyErrors uint64
	// ScriptLoads counts the times the scripts were loaded after NOSCRIPT.
	ScriptLoads uint64
	// Granted is the tokens leased from Redis; LocalGranted those refilled locally.
	Granted, LocalGranted uint64
}

// Stats returns the limiter's counts and state.
func (l *Limiter) Stats() Stats {
	l.roundMu.Lock()
	fb, n := l.fallback, l.replicas
	l.roundMu.Unlock()
	return Stats{
		Fallback: fb, Replicas: n,
		Refreshes: l.stats.rounds.Load(), Failures: l.stats.failures.Load(),
		Fallbacks: l.stats.fallbacks.Load(), KeyErrors: l.stats.keyErrors.Load(),
		ScriptLoads: l.stats.scriptLoads.Load(),
		Granted:     l.stats.granted.Load(), LocalGranted: l.stats.localGranted.Load(),
	}
}
