package actuator

import (
	"errors"
	"time"
)

// Retrying is the scaling loop's job (autoscale.Loop, see its Actuation settings): it
// is the module's one retrier, with latest-wins, exponential back-off with full
// jitter, Retry-After and cancellation of a superseded call. An Actuator makes one
// attempt per Scale call and says, with its error, whether another is worth making
// ([Permanent]) and how soon ([RetryAfter]). What is here is shared by the loop and by
// the brokers' redelivery (actuator/queue): the back-off formula and the Retry-After
// hint.

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

// retryAfterError carries a server's requested wait; see [RetryAfter].
type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err with a wait the other side asked for before the next
// attempt, for example an HTTP Retry-After header on a 429 or 503 response:
// the scaling loop then waits at least d (capped by its maximum delay) instead
// of its usual back-off when that is shorter. The result wraps err and keeps its
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
// first found by [errors.As] wins. The scaling loop reads it to honour the hint.
func RetryAfterOf(err error) (time.Duration, bool) {
	var ra *retryAfterError
	if errors.As(err, &ra) {
		return ra.d, true
	}
	return 0, false
}
