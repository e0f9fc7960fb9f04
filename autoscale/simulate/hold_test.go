package simulate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// A backlog built while one replica serves moves to the replicas that come up later
// when it waits at the gateway, and stays pinned to the first replica's queue when it
// does not.
func TestHoldQueueSpreadsABacklog(t *testing.T) {
	// One replica (100 rps) under 300 rps; four more ready after a 5 s cold start.
	sc := simulate.Scenario{Name: "backlog", Duration: time.Minute, Traffic: simulate.Constant(300),
		Service: simulate.Service{Replicas: 1, Max: 5, ColdStart: 5 * time.Second, ServiceTime: simulate.Fixed(100 * time.Millisecond)}}
	pinned := run(t, sc, fixed(5), 1).Summary
	sc.Hold = &simulate.HoldQueue{MaxQueue: 10_000, MaxWait: 30 * time.Second}
	held := run(t, sc, fixed(5), 1).Summary
	if held.Hold.Held == 0 || held.Hold.Full+held.Hold.TimedOut != 0 || held.Failed != 0 {
		t.Fatalf("with the hold queue: %+v, %d failed", held.Hold, held.Failed)
	}
	if pinned.Hold != (simulate.HoldSummary{}) {
		t.Errorf("hold figures without a hold queue: %+v", pinned.Hold)
	}
	// Pinned, the ~1,000 requests queued at the first replica drain at its 100 rps
	// while the others serve newcomers at once; held, they drain at the spare
	// capacity of all five, and newcomers wait behind them in arrival order: the
	// worst wait is much shorter, but more requests wait past the SLO.
	if held.Max > pinned.Max/2 || held.P99 > pinned.P99/2 {
		t.Fatalf("max latency %v, p99 %v held; %v, %v pinned: want the held backlog to drain faster",
			held.Max, held.P99, pinned.Max, pinned.P99)
	}
	if held.Violations <= pinned.Violations {
		t.Errorf("%d violations held, %d pinned: want more held (newcomers wait behind the backlog)",
			held.Violations, pinned.Violations)
	}
	if held.Hold.WaitP99 > held.Max || held.Hold.WaitP50 <= 0 {
		t.Errorf("hold wait p50 %v, p99 %v, max latency %v", held.Hold.WaitP50, held.Hold.WaitP99, held.Max)
	}
	if a, b := run(t, sc, fixed(5), 1).Summary.String(), held.String(); a != b {
		t.Errorf("same seed, different summaries:\n%s\n%s", a, b)
	}
}

// From zero, the first held request wakes the loop at once: the first request waits
// for the cold start, not for the policy's next tick too.
func TestHoldQueueWakesTheLoop(t *testing.T) {
	sc := simulate.Scenario{Name: "wake", Duration: 3 * time.Minute,
		Traffic: simulate.Step{From: 0, To: 20, At: time.Minute},
		Service: simulate.Service{InitialZero: true, Max: 10, ColdStart: 3 * time.Second}}
	p := mustShipped(t, "target_tracking") // a 15 s tick
	without := run(t, sc, p, 1).Summary
	sc.Hold = &simulate.HoldQueue{}
	with := run(t, sc, p, 1).Summary
	if with.ColdArrivals != 1 || without.ColdArrivals != 1 {
		t.Fatalf("periods at zero with a request: %d with, %d without; want 1", with.ColdArrivals, without.ColdArrivals)
	}
	if with.FirstLatency > 4*time.Second || without.FirstLatency <= 4*time.Second {
		t.Fatalf("first request %v with the hold queue, %v without: want the cold start (3 s) with, more without",
			with.FirstLatency, without.FirstLatency)
	}
	if with.Failed != 0 || with.Hold.Held == 0 {
		t.Fatalf("%d failed, %+v", with.Failed, with.Hold)
	}
}

// Beyond the queue's bound or its maximum wait a request gets 503, with a Retry-After
// close to the remaining cold start while no replica is ready.
func TestHoldQueueRejects(t *testing.T) {
	sc := simulate.Scenario{Name: "reject", Duration: 2 * time.Minute,
		Traffic: simulate.Step{From: 0, To: 100, At: time.Minute},
		Service: simulate.Service{InitialZero: true, Max: 10, ColdStart: 5 * time.Second},
		Hold:    &simulate.HoldQueue{MaxQueue: 20}}
	p := mustShipped(t, "adaptive")
	s := run(t, sc, p, 1).Summary
	h := s.Hold
	if h.Full == 0 || h.TimedOut != 0 || h.Held < 20 || s.Failed < h.Full {
		t.Fatalf("queue of 20 under 100 rps for a 5 s cold start: %+v, %d failed", h, s.Failed)
	}
	if h.RetryChecked == 0 || h.RetryErrMean > time.Second || h.RetryErrMax > 2*time.Second {
		t.Fatalf("Retry-After error mean %v, max %v over %d: want within a second of the remaining cold start",
			h.RetryErrMean, h.RetryErrMax, h.RetryChecked)
	}
	sc.Hold = &simulate.HoldQueue{MaxQueue: 10_000, MaxWait: time.Second}
	s = run(t, sc, p, 1).Summary
	if s.Hold.TimedOut == 0 || s.Hold.Full != 0 || s.Failed < s.Hold.TimedOut {
		t.Fatalf("held for at most 1 s of a 5 s cold start: %+v, %d failed", s.Hold, s.Failed)
	}
	sc.Hold = &simulate.HoldQueue{MaxQueue: -1, MaxWait: 2 * time.Hour}
	if _, err := simulate.Run(context.Background(), simulate.Config{Scenario: sc, Policy: p}); !errors.Is(err, simulate.ErrInvalidConfig) {
		t.Fatalf("bad hold queue: %v", err)
	}
}
