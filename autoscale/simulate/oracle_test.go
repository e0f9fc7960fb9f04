package simulate_test

import (
	"errors"
	"strings"
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
		{"step", simulate.Step{From: 100, To: 600, At: time.Minute}, 1.35},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := simulate.Scenario{Name: tc.name, Duration: 3 * time.Minute, Traffic: tc.traffic, Service: svc}
			s := run(t, sc, simulate.Oracle(), 1).Summary
			// The work bound: each request holds one of a replica's slots for 100 ms.
			work := float64(s.Requests) * 0.1 / 10
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

// TestTableAgainstTheOracle checks the table's two columns against the oracle: a
// row's violations less the oracle's on its scenario, and its replica-seconds over the
// oracle's; "–" on a scenario the oracle did not run.
func TestTableAgainstTheOracle(t *testing.T) {
	sums := []simulate.Summary{
		{Scenario: "a", Policy: simulate.OracleName, Violations: 10, ReplicaSeconds: 1000},
		{Scenario: "a", Policy: "kpa", Violations: 25, ReplicaSeconds: 1500},
		{Scenario: "a", Policy: "lean", Violations: 4, ReplicaSeconds: 900},
		{Scenario: "b", Policy: "kpa", Violations: 7, ReplicaSeconds: 700},
	}
	rows := strings.Split(simulate.Table(sums), "\n")
	want := []struct{ above, ratio string }{{"0", "1.00"}, {"15", "1.50"}, {"-6", "0.90"}, {"–", "–"}}
	for i, w := range want {
		cells := strings.Split(rows[2+i], " | ")
		// | scenario | policy | requests | violations | % | above floor | p50 | p99 | replica-seconds | × oracle | ...
		if got := [2]string{cells[5], cells[9]}; got != [2]string{w.above, w.ratio} {
			t.Errorf("row %d (%s): above floor, × oracle = %q, want %q, %q", i, rows[2+i], got, w.above, w.ratio)
		}
	}
}
