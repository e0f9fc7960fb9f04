package autoscale_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
)

// stamped fails its first call with err and records when each call was made.
type stamped struct {
	mu    sync.Mutex
	err   error
	calls []time.Time
}

func (s *stamped) Scale(context.Context, actuator.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, time.Now())
	if len(s.calls) == 1 {
		return s.err
	}
	return nil
}

func (s *stamped) gap() (time.Duration, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) < 2 {
		return 0, len(s.calls)
	}
	return s.calls[1].Sub(s.calls[0]), len(s.calls)
}

// TestRetryAfterIsHonoured checks that a requested wait (actuator.RetryAfter) delays
// the next attempt by at least the wait, capped by RetryMax. The back-off itself is
// zero (the random source returns 0), so without the hint the retry is immediate.
func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name     string
		wait     time.Duration // attached to the first failure; 0 for none
		retryMax time.Duration
		atLeast  time.Duration
	}{
		{"no hint: the back-off alone", 0, time.Second, 0},
		{"the hint is waited for", 150 * time.Millisecond, time.Second, 150 * time.Millisecond},
		// An hour-long hint capped at 100 ms: the flush below (10 s) would time out
		// if the cap did not hold.
		{"the hint is capped by RetryMax", time.Hour, 100 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			act := &stamped{err: actuator.RetryAfter(errors.New("429 too many requests"), tc.wait)}
			if tc.wait == 0 {
				act.err = errors.New("503")
			}
			l := newLoop(t, autoscale.WithPolicy(scaleTo("a", 3)), autoscale.WithDefaultActuator(act),
				autoscale.WithRand(zeroSource{}), // zero back-off
				autoscale.WithActuation(autoscale.Actuation{Attempts: 3, RetryBase: time.Millisecond, RetryMax: tc.retryMax}),
				autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Safety: free}))
			d := step(t, l, t0).Decisions[0]
			flush(t, l)
			got, _ := l.Decision(d.ID)
			if got.Actuation.Err != "" || got.Actuation.Attempts != 2 {
				t.Fatalf("actuation = %+v, want success on the second attempt", got.Actuation)
			}
			gap, calls := act.gap()
			if calls != 2 {
				t.Fatalf("%d calls, want 2", calls)
			}
			if gap < tc.atLeast {
				t.Fatalf("second attempt %v after the first, want at least %v", gap, tc.atLeast)
			}
			if tc.wait > tc.retryMax && gap >= tc.wait {
				t.Fatalf("second attempt %v after the first: the hint was not capped at %v", gap, tc.retryMax)
			}
		})
	}
}
