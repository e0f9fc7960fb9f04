package simulate_test

import (
	"errors"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// TestOracleNeedsARun checks that the oracle's factory refuses an Env that no run
// made: it has no future to read.
func TestOracleNeedsARun(t *testing.T) {
	_, _, err := simulate.Oracle().New(simulate.Env{Target: simulate.TargetName, Concurrency: 10})
	if !errors.Is(err, simulate.ErrInvalidConfig) {
		t.Fatalf("New outside a run: %v, want ErrInvalidConfig", err)
	}
}

// TestOracleBounds runs the oracle where the bound is known: a fixed 100 ms service
// time (so no request's own service time exceeds the SLO) at a constant rate, then a
// step. It can bill no less than the work over the replica's slots (every slot busy
// all the time), and should bill little more; it should violate the SLO almost never.
func TestOracleBounds(t *testing.T) {
	svc := simulate.Service{Replicas: 3, Min: 1, Max: 100, ServiceTime: simulate.Fixed(100 * time.Millisecond)}
	for _, tc := range []struct {
		name    string
		traffic simulate.Profile
		slack   float64 // the most replica-seconds allowed, over the work bound
	}{
		{"constant", simulate.Constant(300), 1.25},
		{"step", simulate.Step{From: 100, To: 600, At: 2 * time.Minute}, 1.35},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := simulate.Scenario{Name: tc.name, Duration: 5 * time.Minute, Traffic: tc.traffic, Service: svc}
			if raceEnabled {
				sc = lighter(sc)
			}
			s := run(t, sc, simulate.Oracle(), 1).Summary
			// The work bound: each request holds one of a replica's slots for 100 ms.
			conc := 10.0
			if raceEnabled {
				conc = 1
			}
			work := float64(s.Requests) * 0.1 / conc
			t.Logf("%d requests, %d violations, %.0f replica-seconds (work bound %.0f), peak %d",
				s.Requests, s.Violations, s.ReplicaSeconds, work, s.PeakReplicas)
			if s.ReplicaSeconds < work || s.ReplicaSeconds > tc.slack*work {
				t.Errorf("replica-seconds %.0f, want within [%.0f, %.0f]", s.ReplicaSeconds, work, tc.slack*work)
			}
			if s.ViolationRate > 0.001 {
				t.Errorf("violation rate %.4f%%, want at most 0.1%%", 100*s.ViolationRate)
			}
		})
	}
}
