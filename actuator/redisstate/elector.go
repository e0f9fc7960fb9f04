package redisstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Leader election defaults: those of the Kubernetes Lease elector.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Errors of the package.
var (
	// ErrInvalidConfig reports a bad setting or option.
	ErrInvalidConfig = errors.New("redisstate: invalid configuration")
	// ErrElectorRunning is returned by [Elector.Run] when the elector already runs.
	ErrElectorRunning = errors.New("redisstate: elector already running")
)

// ElectorConfig configures an [Elector]. Key is required; the zero value of every other
// field means its default.
type ElectorConfig struct {
	// Key is the lock's key; Key+":token" holds the fencing-token counter. Required.
	Key string
	// Identity names this replica in the lock; unique among the replicas. Empty means
	// the host name and a random suffix.
	Identity string
	// LeaseDuration is the lock's expiry (SET PX): the longest a dead leader blocks
	// actuation. At least 10 ms. Zero means [DefaultLeaseDuration].
	LeaseDuration time.Duration
	// RenewDeadline is how long after the start of its last successful renewal the
	// leader still counts itself leader; less than LeaseDuration, so that it stops
	// before another replica may take the lock. Zero means [DefaultRenewDeadline].
	RenewDeadline time.Duration
	// RetryPeriod is the interval between attempts to acquire or renew; less than
	// RenewDeadline. Zero means [DefaultRetryPeriod].
	RetryPeriod time.Duration
}

func (c ElectorConfig) withDefaults() ElectorConfig {
	if c.Identity == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		c.Identity = host + "-" + hex.EncodeToString(b[:])
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	return c
}

// Validate reports every problem with c at once.
func (c ElectorConfig) Validate() error {
	var errs []error
	d := c.withDefaults()
	if c.Key == "" {
		errs = append(errs, errors.New("lock key is required"))
	}
	if d.LeaseDuration < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("lease duration %v is below 10ms", c.LeaseDuration))
	}
	if d.RenewDeadline <= 0 || d.RenewDeadline >= d.LeaseDuration {
		errs = append(errs, fmt.Errorf("renew deadline %v is not in (0, lease duration %v)", d.RenewDeadline, d.LeaseDuration))
	}
	if d.RetryPeriod <= 0 || d.RetryPeriod >= d.RenewDeadline {
		errs = append(errs, fmt.Errorf("retry period %v is not in (0, renew deadline %v)", d.RetryPeriod, d.RenewDeadline))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: elector: %w", ErrInvalidConfig, err)
	}
	return nil
}

// acquireScript takes the lock when it is free (SET NX PX) with a new fencing token, or
// renews it when this identity holds it.
//
//	KEYS[1] the lock, holding "<identity>:<token>"; KEYS[2] the token counter
//	ARGV[1] identity; ARGV[2] lease (ms)
//
// It returns the token held, or 0 when another identity holds the lock.
var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
  local tok = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. tok, 'NX', 'PX', ARGV[2])
  return tok
end
local id, tok = string.match(cur, '^(.*):(%d+)$')
if id == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(tok)
end
return 0
`)

// releaseScript deletes the lock when it still holds this identity and token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Elector elects one leader among the gateway replicas with a lock in Redis, for
// gateways that do not run on Kubernetes (there, prefer the Lease elector of package
// actuator/kubernetes). It implements autoscale.Elector.
//
// The lock is a key set with SET NX PX to "<identity>:<token>", where the token comes
// from a counter incremented on every acquisition: a fencing token (Kleppmann, "How to
// do distributed locking", 2016). An [Actuator] given the elector ([WithFence]) sends
// the token with every write and Redis refuses a token older than the counter, so a
// deposed leader's late call — one that started before it lost the lock — is refused
// ([ErrStaleToken]) even though it does not know it was deposed.
//
// [Elector.IsLeader] turns false once RenewDeadline has passed since the start of the
// last successful renewal, before the lock can expire (LeaseDuration), by the local
// monotonic clock; Redis expires the lock by its own. An Elector is safe for concurrent
// use.
type Elector struct {
	client   redis.UniversalClient
	cfg      ElectorConfig
	tokenKey string
	clock    metrics.Clock
	logger   *slog.Logger

	running atomic.Bool
	mu      sync.Mutex
	token   uint64    // held token, 0 when not leader
	renewed time.Time // start of the last successful acquire or renew
}

var (
	_ autoscale.Elector = (*Elector)(nil)
	_ autoscale.Fencer  = (*Elector)(nil)
)

// ElectorOption configures an [Elector].
type ElectorOption func(*Elector) error

// WithElectorClock sets the clock IsLeader measures the renew deadline by. Default
// [metrics.NewSystemClock].
func WithElectorClock(c metrics.Clock) ElectorOption {
	return func(e *Elector) error {
		if c == nil {
			return errors.New("nil clock")
		}
		e.clock = c
		return nil
	}
}

// WithElectorLogger sets the logger of leadership changes. Default [slog.Default],
// the default logger everywhere in this module.
func WithElectorLogger(l *slog.Logger) ElectorOption {
	return func(e *Elector) error {
		if l == nil {
			return errors.New("nil logger")
		}
		e.logger = l
		return nil
	}
}

// NewElector returns an elector on client. It starts no goroutine: call [Elector.Run].
func NewElector(client redis.UniversalClient, cfg ElectorConfig, opts ...ElectorOption) (*Elector, error) {
	var errs []error
	if client == nil {
		errs = append(errs, fmt.Errorf("%w: nil redis client", ErrInvalidConfig))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	e := &Elector{client: client, cfg: cfg.withDefaults(), tokenKey: cfg.Key + ":token"}
	for _, o := range opts {
		if err := o(e); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidConfig, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if e.clock == nil {
		e.clock = metrics.NewSystemClock()
	}
	if e.logger == nil {
		e.logger = slog.Default()
	}
	return e, nil
}

// Identity is the name this replica holds the lock under.
func (e *Elector) Identity() string { return e.cfg.Identity }

// IsLeader reports whether this replica holds the lock, renewed within RenewDeadline.
func (e *Elector) IsLeader() bool {
	_, ok := e.Token()
	return ok
}

// Token returns the fencing token of the lock this replica holds, and whether it leads.
func (e *Elector) Token() (uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token == 0 || e.clock.Now().Sub(e.renewed) >= e.cfg.RenewDeadline {
		return 0, false
	}
	return e.token, true
}

// Term is the fencing token while this replica leads, 0 otherwise: the loop puts it
// in each scale request (actuator.Sequence.Term), and a fenced [Actuator] sends it.
func (e *Elector) Term() uint64 {
	t, _ := e.Token()
	return t
}

// Step makes one attempt to acquire or renew the lock, and returns its error: what
// [Elector.Run] does every RetryPeriod. Tests step electors by hand.
func (e *Elector) Step(ctx context.Context) error {
	start := e.clock.Now()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	tok, err := acquireScript.Run(ctx, e.client, []string{e.cfg.Key, e.tokenKey},
		e.cfg.Identity, e.cfg.LeaseDuration.Milliseconds()).Uint64()
	e.mu.Lock()
	defer e.mu.Unlock()
	was := e.token != 0 && start.Sub(e.renewed) < e.cfg.RenewDeadline
	switch {
	case err != nil:
		// The token stays until the renew deadline passes (Token checks it): a
		// leader rides out a failed renewal or two.
		return fmt.Errorf("redisstate: elector: %w", err)
	case tok == 0:
		if e.token != 0 {
			e.logger.LogAttrs(ctx, slog.LevelInfo, "redisstate: lost leadership", slog.String("identity", e.cfg.Identity))
		}
		e.token = 0
	default:
		if tok != e.token || !was {
			e.logger.LogAttrs(ctx, slog.LevelInfo, "redisstate: leading", slog.String("identity", e.cfg.Identity), slog.Uint64("token", tok))
		}
		e.token, e.renewed = tok, start
	}
	return nil
}

// Run competes for the lock every RetryPeriod until ctx ends, then releases it when it
// holds it, so another replica takes over at its next attempt instead of waiting for
// the lease to expire. It returns ctx's error.
func (e *Elector) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrElectorRunning
	}
	defer e.running.Store(false)
	t := time.NewTicker(e.cfg.RetryPeriod)
	defer t.Stop()
	for {
		if err := e.Step(ctx); err != nil && ctx.Err() == nil {
			e.logger.LogAttrs(ctx, slog.LevelWarn, "redisstate: elector attempt failed", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			e.release()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// release gives the lock up when this replica holds it.
func (e *Elector) release() {
	e.mu.Lock()
	tok := e.token
	e.token = 0
	e.mu.Unlock()
	if tok == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RetryPeriod)
	defer cancel()
	releaseScript.Run(ctx, e.client, []string{e.cfg.Key}, fmt.Sprintf("%s:%d", e.cfg.Identity, tok))
}
