package actuator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
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
	random   func() float64
	sleep    func(ctx context.Context, d time.Duration) error
}

// RetryOption configures [Retry].
type RetryOption func(*retryConfig)

// WithAttempts sets the total number of calls, first one included. Default
// [DefaultRetryAttempts]; values below 1 mean 1 (no retry).
func WithAttempts(n int) RetryOption {
	return func(c *retryConfig) { c.attempts = max(n, 1) }
}

// WithBackoff sets the base delay before the first retry and the cap on any
// delay. Defaults [DefaultRetryBaseDelay] and [DefaultRetryMaxDelay]; a value
// <= 0 keeps the default, and a cap below base is raised to base.
func WithBackoff(base, maxDelay time.Duration) RetryOption {
	return func(c *retryConfig) {
		if base > 0 {
			c.base = base
		}
		if maxDelay > 0 {
			c.max = maxDelay
		}
	}
}

// WithRandom sets the random source used for jitter: f returns a number in
// [0, 1) and may be called concurrently. The default is math/rand/v2's
// Float64. Tests pass a constant to make delays exact.
func WithRandom(f func() float64) RetryOption {
	return func(c *retryConfig) {
		if f != nil {
			c.random = f
		}
	}
}

// WithSleep sets the function that waits between attempts. It must return
// ctx.Err() early when ctx is done. The default uses a [time.Timer]. Tests
// pass a function that records the delays and returns at once.
func WithSleep(f func(ctx context.Context, d time.Duration) error) RetryOption {
	return func(c *retryConfig) {
		if f != nil {
			c.sleep = f
		}
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

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
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
// It is safe for concurrent use if a is. A nil a yields an actuator whose
// Scale returns a permanent [ErrInvalidRequest].
func Retry(a Actuator, opts ...RetryOption) Actuator {
	cfg := retryConfig{
		attempts: DefaultRetryAttempts,
		base:     DefaultRetryBaseDelay,
		max:      DefaultRetryMaxDelay,
		random:   rand.Float64,
		sleep:    sleepCtx,
	}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	cfg.max = max(cfg.max, cfg.base)
	r := &retry{a: a, cfg: cfg}
	if rr, ok := a.(ReplicaReader); ok {
		return &retryReader{retry: r, rr: rr}
	}
	return r
}

type retry struct {
	a   Actuator
	cfg retryConfig
}

func (r *retry) Scale(ctx context.Context, req Request) error {
	if r.a == nil {
		return Permanent(fmt.Errorf("%w: nil actuator passed to Retry", ErrInvalidRequest))
	}
	var err error
	for attempt := range r.cfg.attempts {
		if attempt > 0 {
			d := Backoff(attempt-1, r.cfg.base, r.cfg.max, r.cfg.random())
			if wait, ok := RetryAfterOf(err); ok {
				d = max(d, min(wait, r.cfg.max))
			}
			if serr := r.cfg.sleep(ctx, d); serr != nil {
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
