package balancer

import (
	"context"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// every calls f each period on clock, the first time one period after it is called,
// until ctx is done, and returns ctx's error. It waits on one clock timer per period, so
// a manual clock drives it, and keeps a [time.Ticker]'s schedule: ticks fall at whole
// periods from the start, and after a call of f that overran, f runs once at once (the
// tick a ticker buffers) and the ticks in between are dropped.
func every(ctx context.Context, clock metrics.Clock, period time.Duration, f func()) error {
	next := clock.Now()
	for {
		next = next.Add(period)
		if now := clock.Now(); next.After(now) {
			timer := clock.NewTimer(next.Sub(now))
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
