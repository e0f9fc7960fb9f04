package metrics

import (
	"context"
	"fmt"
	"time"
)

// Every calls f each period on c, the first time one period after it is called, until
// ctx is done, and returns ctx's error; a period that is not positive is an error
// wrapping [ErrInvalidConfig]. It is a [time.Ticker] loop on an injected clock: it
// waits on one timer of c per period, so a [ManualClock] drives it, and keeps a
// ticker's schedule: ticks fall at whole periods from the start, and after a call of f
// that overran, f runs once at once (the tick a ticker buffers) and the ticks in
// between are dropped. f runs on the caller's goroutine.
func Every(ctx context.Context, c Clock, period time.Duration, f func()) error {
	if period <= 0 {
		return fmt.Errorf("%w: period %v is not positive", ErrInvalidConfig, period)
	}
	next := c.Now()
	for {
		next = next.Add(period)
		if now := c.Now(); next.After(now) {
			timer := c.NewTimer(next.Sub(now))
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C():
			}
		} else {
			next = next.Add(now.Sub(next) / period * period) // the latest tick missed
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		f()
	}
}
