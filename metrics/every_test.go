package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

func TestEvery(t *testing.T) {
	const period = time.Second
	t0 := time.Unix(1_700_000_000, 0)
	clock := metrics.NewManualClock(t0)
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- metrics.Every(ctx, clock, period, func() { calls.Add(1) }) }()
	steps := []struct {
		name      string
		advance   time.Duration
		next      time.Duration // from t0, where the armed timer is due
		wantCalls int64
	}{
		{"start: no call", 0, period, 0},
		{"just before the tick", period - time.Millisecond, period, 0},
		{"the tick", time.Millisecond, 2 * period, 1},
		{"a jump past two ticks: one call at once, the schedule kept", 2*period + period/2, 4 * period, 3},
		{"the next tick", period / 2, 5 * period, 4},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err := clock.WaitTimers(wctx, 1)
		wcancel()
		if err != nil {
			t.Fatalf("%s: Every armed no timer: %v", s.name, err)
		}
		if at, _ := clock.NextTimer(); !at.Equal(t0.Add(s.next)) {
			t.Fatalf("%s: next tick at %v, want %v", s.name, at.Sub(t0), s.next)
		}
		if got := calls.Load(); got != s.wantCalls {
			t.Fatalf("%s: %d calls, want %d", s.name, got, s.wantCalls)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Every = %v, want context.Canceled", err)
	}
	if n := clock.Timers(); n != 0 {
		t.Errorf("Every left %d timers", n)
	}
}

func TestEveryBadPeriod(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		err := metrics.Every(t.Context(), metrics.NewSystemClock(), d, func() { t.Error("f called") })
		if !errors.Is(err, metrics.ErrInvalidConfig) {
			t.Errorf("Every(period %v) = %v, want ErrInvalidConfig", d, err)
		}
	}
}

// ExampleEvery drives a periodic job with a manual clock, as a test does.
func ExampleEvery() {
	clock := metrics.NewManualClock(time.Unix(0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	done := make(chan error)
	go func() { done <- metrics.Every(ctx, clock, time.Minute, func() { ticks <- clock.Now() }) }()
	for range 3 {
		clock.WaitTimers(ctx, 1)
		clock.Advance(time.Minute)
		fmt.Println((<-ticks).UTC().Format(time.TimeOnly))
	}
	cancel()
	fmt.Println(<-done)
	// Output:
	// 00:01:00
	// 00:02:00
	// 00:03:00
	// context canceled
}
