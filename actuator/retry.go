package actuator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Retry defaults.
const (
	DefaultRetryAttempts  = 5
	DefaultRetryBaseDelay = 100 * time.Millisecond
	DefaultRetryMaxDelay  = 5 * time.Second
)

type retryConfig struct {
	attempts int
	base     time.Duration
	max      time.Duration
	rand     *rand.Rand
	clock    metrics.Clock
}

// RetryOption configures [Retry]. A nil argument is an error of Retry.
type RetryOption func(*retryConfig) error

// WithAttempts sets the total number of calls, first one included. Default
// [DefaultRetryAttempts]; values below 1 mean 1 (no retry).
func WithAttempts(n int) RetryOption {
	return func(c *retryConfig) error {
		c.attempts = max(n, 1)
		return nil
	}
}

// WithBackoff sets the base delay before the first retry and the cap on any
// delay. Defaults [DefaultRetryBaseDelay] and [DefaultRetryMaxDelay]; a value
// <= 0 keeps the default, and a cap below base is raised to base.
func WithBackoff(base, maxDelay time.Duration) RetryOption {
	return func(c *retryConfig) error {
		if base > 0 {
			c.base = base
		}
		if maxDelay > 0 {
			c.max = maxDelay
		}
		return nil
	}
}

// WithRand sets the random source of the jitter; it may be called concurrently.
// The default is math/rand/v2's top-level generator. Tests pass a constant
// source to make delays exact.
func WithRand(src rand.Source) RetryOption {
	return func(c *retryConfig) error {
		if src == nil {
			return fmt.Errorf("%w: nil random source", ErrInvalidConfig)
		}
		c.rand = rand.New(src)
		return nil
	}
}

// WithClock sets the clock whose timers time the waits between attempts. The
// default is [metrics.NewSystemClock]; tests pass a [metrics.ManualClock] and
// advance it.
func WithClock(clk metrics.Clock) RetryOption {
	return func(c *retryConfig) error {
		if clk == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidConfig)
		}
		c.clock = clk
		return nil
	}
}

// Backoff returns the delay before retry number attempt (0 for the first
// retry) under "full jitter" exponential back-off: a uniformly random
// duration in [0, min(maxDelay, base·2^attempt)), scaled from r in [0, 1).
// See Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog,
// 2015.
func Backoff(attempt int, base, maxDelay time.Duration, r float64) time.Duration {
	attempt = max(attempt, 0)
	ceiling := maxDelay
	if attempt < 62 && base <= maxDelay>>min(attempt, 62) {
		ceiling = base << attempt
	}
	if !(r >= 0 && r < 1) { // also catches NaN
		r = 0
	}
	return time.Duration(r * float64(ceiling))
}

// Sleep waits d on clk's timer, or until ctx ends; it returns ctx's error then.
// A d <= 0 returns at once.
func Sleep(ctx context.Context, clk metrics.Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// retryAfterError carries a server's requested wait; see [RetryAfter].
type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err with a wait the other side asked for before the next
// attempt, for example an HTTP Retry-After header on a 429 or 503 response:
// [Retry] then waits at least d (capped by its maximum delay) instead of its
// usual back-off when that is shorter. The result wraps err and keeps its
// text, so [errors.Is], [errors.As] and [IsPermanent] see through it.
// RetryAfter(nil, d) is nil, and a d <= 0 returns err unchanged.
func RetryAfter(err error, d time.Duration) error {
	if err == nil || d <= 0 {
		return err
	}
	return &retryAfterError{err: err, d: d}
}

// RetryAfterOf returns the wait attached to err, or to an error it wraps,
// with [RetryAfter], and whether there is one. When several are attached the
// first found by [errors.As] wins. Retrying loops of your own can use it to
// honour the same hint as [Retry].
func RetryAfterOf(err error) (time.Duration, bool) {
	var ra *retryAfterError
	if errors.As(err, &ra) {
		return ra.d, true
	}
	return 0, false
}

// Retry returns an [Actuator] that calls a and, when it fails with an error
// that is not [Permanent], calls it again after an exponential back-off with
// full jitter (see [Backoff]), up to the number of attempts. It stops early
// when ctx is done. Because Scale is idempotent, repeating it is safe.
//
// When the failure carries a requested wait ([RetryAfter]), the delay before
// the next attempt is the larger of the back-off and that wait, the wait
// capped by the maximum delay ([WithBackoff]); the delay still ends early when
// ctx is done.
//
// A permanent error is returned at once, still marked permanent. After the
// last attempt the last error is returned, wrapped. When ctx ends during a
// wait, the error wraps both ctx.Err() and the last failure.
//
// The result implements [ReplicaReader] when a does (reads are not retried).
// It is safe for concurrent use if a is. A nil a or a bad option is an error
// wrapping [ErrInvalidConfig]; every one is reported at once.
func Retry(a Actuator, opts ...RetryOption) (Actuator, error) {
	cfg := retryConfig{
		attempts: DefaultRetryAttempts,
		base:     DefaultRetryBaseDelay,
		max:      DefaultRetryMaxDelay,
	}
	var errs []error
	if a == nil {
		errs = append(errs, fmt.Errorf("%w: nil actuator", ErrInvalidConfig))
	}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, fmt.Errorf("%w: nil option", ErrInvalidConfig))
			continue
		}
		if err := o(&cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("actuator: retry: %w", err)
	}
	if cfg.rand == nil {
		cfg.rand = rand.New(runtimeSource{})
	}
	if cfg.clock == nil {
		cfg.clock = metrics.NewSystemClock()
	}
	cfg.max = max(cfg.max, cfg.base)
	r := &retry{a: a, cfg: cfg}
	if rr, ok := a.(ReplicaReader); ok {
		return &retryReader{retry: r, rr: rr}, nil
	}
	return r, nil
}

// runtimeSource is math/rand/v2's top-level generator as a [rand.Source]: safe
// for concurrent use and lock-free.
type runtimeSource struct{}

func (runtimeSource) Uint64() uint64 { return rand.Uint64() }

type retry struct {
	a   Actuator
	cfg retryConfig
}

func (r *retry) Scale(ctx context.Context, req Request) error {
	var err error
	for attempt := range r.cfg.attempts {
		if attempt > 0 {
			d := Backoff(attempt-1, r.cfg.base, r.cfg.max, r.cfg.rand.Float64())
			if wait, ok := RetryAfterOf(err); ok {
				d = max(d, min(wait, r.cfg.max))
			}
			if serr := Sleep(ctx, r.cfg.clock, d); serr != nil {
				return fmt.Errorf("actuator: retry: gave up after %d attempts: %w (last error: %w)", attempt, serr, err)
			}
		}
		err = r.a.Scale(ctx, req)
		switch {
		case err == nil:
			return nil
		case IsPermanent(err):
			return fmt.Errorf("actuator: retry: attempt %d: %w", attempt+1, err)
		case ctx.Err() != nil:
			return fmt.Errorf("actuator: retry: attempt %d: %w", attempt+1, err)
		}
	}
	return fmt.Errorf("actuator: retry: %d attempts failed: %w", r.cfg.attempts, err)
}

type retryReader struct {
	*retry
	rr ReplicaReader
}

func (r *retryReader) Replicas(ctx context.Context, t Target) (int, error) {
	return r.rr.Replicas(ctx, t)
}
