package simulate_test

import (
	"errors"
	"math"
	"slices"
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

// steadyDesired returns the median of the oracle's decisions over the seconds [from,
// to) of a run: its count for a steady load.
func steadyDesired(tl []simulate.Sample, from, to time.Duration) int {
	var ds []int
	for _, s := range tl {
		if s.T >= from && s.T < to {
			ds = append(ds, s.Desired)
		}
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// TestOracleSlowdown runs the oracle on a replica that slows above half its slots
// (×2 at full, linearly): it serves the most per second at the knee, five busy slots
// of ten, and no more above, so at 300 rps of 100 ms requests the oracle needs
// 300 × 0.1 / 5 = 6 replicas and a little for Poisson's bursts. An oracle that
// ignored the slowdown would fill all ten slots and ask for 3 or 4.
func TestOracleSlowdown(t *testing.T) {
	sc := simulate.Scenario{Name: "slow", Duration: 3 * time.Minute, Traffic: simulate.Constant(300),
		Service: simulate.Service{Replicas: 6, Min: 1, Max: 100, ServiceTime: simulate.Fixed(100 * time.Millisecond),
			Slowdown: simulate.Slowdown{Knee: 0.5, Linear: 1}}}
	r := run(t, sc, simulate.Oracle(), 1)
	s := r.Summary
	n := steadyDesired(r.Timeline, 30*time.Second, 150*time.Second)
	work := float64(s.Requests) * 0.1 / 5 // each request holds one of five slots for 100 ms
	t.Logf("%d replicas, %d violations of %d, %.0f replica-seconds (work bound at the knee %.0f)",
		n, s.Violations, s.Requests, s.ReplicaSeconds, work)
	if n < 6 || n > 8 {
		t.Errorf("oracle asks for %d replicas at 300 rps: want 6 to 8 (five slots a replica)", n)
	}
	if s.ReplicaSeconds < work {
		t.Errorf("replica-seconds %.0f below the work bound at the knee %.0f", s.ReplicaSeconds, work)
	}
	// The balancer's misses put replicas above the knee, and queue (see Oracle).
	if s.ViolationRate > 0.01 {
		t.Errorf("violation rate %.3f%%, want at most 1%%", 100*s.ViolationRate)
	}
}

// TestOracleQuota runs the oracle on one tenant offering 600 rps under a 200 rps
// quota: the 400 rps throttled at the gateway need no replica, so it needs
// 200 × 0.1 / 10 = 2 replicas and some for the service time's spread (3), not the 7
// or 8 the whole offer would.
func TestOracleQuota(t *testing.T) {
	sc := simulate.Scenario{Name: "quota", Duration: 3 * time.Minute,
		Traffic: simulate.Mix{{Name: "t", Profile: simulate.Constant(600), Quota: 200, QuotaBurst: 200}},
		Service: simulate.Service{Replicas: 2, Min: 1, Max: 100}}
	r := run(t, sc, simulate.Oracle(), 1)
	s := r.Summary
	n := steadyDesired(r.Timeline, 30*time.Second, 150*time.Second)
	// The bucket's first burst of 200 meets the two warm replicas, before any the
	// oracle orders can be ready: count from the first cold start on.
	var served, bad uint64
	for _, x := range r.Timeline {
		if x.T >= 20*time.Second {
			served, bad = served+x.Served, bad+x.Slow+x.Failed
		}
	}
	t.Logf("%d replicas; %d shed of %d; after 20 s, %d slow or failed of %d served", n, s.Shed, s.Requests, bad, served)
	if n < 2 || n > 4 {
		t.Errorf("oracle asks for %d replicas for 200 admitted rps: want 2 to 4", n)
	}
	if bad > served/1000 {
		t.Errorf("after 20 s, %d slow or failed of %d served: want at most 0.1%%", bad, served)
	}
}

// llmRate returns the requests per second a full LLM replica serves at the largest
// batch whose time per output token stays within the SLO (two standard deviations
// over the mean), by iterating the step model to its fixed point: a request holds its sequence for T_h = a + s + (O−1)·T,
// with a its prefill and s = base + n·perSeq a step, the replica admits n/T_h a
// second and spends that times a of each second prefilling, so T = s/(1 − n·a/T_h).
func llmRate(l simulate.LLM, conc int) (n int, rate float64) {
	a := l.Prompt.Mean / l.PrefillRate
	for k := 1; k <= conc; k++ {
		s := (l.StepBase + time.Duration(k)*l.StepPerSeq).Seconds()
		tpot := s
		for range 200 {
			h := a + s + (l.Output.Mean-1)*tpot
			tpot = (tpot + s/(1-float64(k)*a/h)) / 2 // damped
		}
		r := float64(k) / (a + s + (l.Output.Mean-1)*tpot)
		// A mean request's TPOT, with a Poisson count of prefill stalls, two standard
		// deviations over the mean.
		worst := tpot + 2*a*math.Sqrt(r*(l.Output.Mean-1)*tpot)/(l.Output.Mean-1)
		if worst <= l.TPOT.Seconds() && r > rate {
			n, rate = k, r
		}
	}
	return n, rate
}

// TestOracleLLMSaturated loads LLM replicas at 20 rps with a TPOT SLO of 40 ms that
// a full batch of 32 breaks: the oracle must size the batch to the SLO (7
// sequences, 2.0 rps a replica, about 10 replicas), where the mean full-batch
// latency alone (32 sequences, 3.8 rps a replica) gives 6.
func TestOracleLLMSaturated(t *testing.T) {
	l := *fixedLLM()
	l.TPOT = 40 * time.Millisecond
	n, rate := llmRate(l, 32)
	want := 20 / rate
	sc := llmScenario(&l, 20, 5*time.Minute)
	sc.Service.Max = 40
	sc.Service.ColdStart = time.Second
	r := run(t, sc, simulate.Oracle(), 1)
	got := steadyDesired(r.Timeline, time.Minute, 4*time.Minute)
	s := r.Summary
	t.Logf("batch %d, %.2f rps a replica: want %.1f replicas, oracle asks %d; TTFT p99 %v, TPOT p50 %v p99 %v; %d slow of %d",
		n, rate, want, got, s.LLM.TTFTP99, s.LLM.TPOTP50, s.LLM.TPOTP99, s.Slow, s.Requests)
	if n != 7 {
		t.Fatalf("formula: batch %d, want 7", n)
	}
	if float64(got) < want || float64(got) > 1.2*want+1 {
		t.Errorf("oracle asks for %d replicas at 20 rps: want %.1f to %.1f", got, want, 1.2*want+1)
	}
	if s.LLM.TTFTSlow > s.Requests/100 || s.LLM.TPOTSlow > s.Requests/50 {
		t.Errorf("of %d, %d over the TTFT SLO (want at most 1%%) and %d over the TPOT SLO (2%%)",
			s.Requests, s.LLM.TTFTSlow, s.LLM.TPOTSlow)
	}
}

// TestOracleAgainstShipped runs the oracle and the compared policies on the
// scenarios whose service time the oracle models beyond one draw a request: it
// should violate the SLO on few requests, and no shipped policy should match it on
// violations at fewer replica-seconds. (Under the race detector, the Go KPA alone.)
func TestOracleAgainstShipped(t *testing.T) {
	policies := []string{"target_tracking", "kpa", "threshold", "predictive", "adaptive"}
	if raceEnabled {
		policies = []string{"kpa_go"}
	}
	for _, tc := range []struct {
		name    string
		maxRate float64 // the most SLO-violating requests the oracle may have, a fraction
	}{
		// The balancer's misses put replicas above the knee (see Oracle).
		{"slows-under-load", 0.01},
		{"llm-serving", 0.001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, ok := simulate.ScenarioByName(tc.name)
			if !ok {
				t.Fatalf("no scenario %q", tc.name)
			}
			o := run(t, sc, simulate.Oracle(), 1).Summary
			t.Logf("oracle: %d violations (%.3f%%), %.0f replica-seconds", o.Violations, 100*o.ViolationRate, o.ReplicaSeconds)
			if o.ViolationRate > tc.maxRate {
				t.Errorf("oracle violation rate %.3f%%, want at most %.1f%%", 100*o.ViolationRate, 100*tc.maxRate)
			}
			for _, name := range policies {
				s := run(t, sc, mustShipped(t, name), 1).Summary
				t.Logf("%s: %d violations (%.3f%%), %.0f replica-seconds (%.2f× oracle)",
					name, s.Violations, 100*s.ViolationRate, s.ReplicaSeconds, s.ReplicaSeconds/o.ReplicaSeconds)
				// Comparable violations: at most twice the oracle's, and 0.1% of requests.
				if s.Violations <= 2*o.Violations+o.Requests/1000 && s.ReplicaSeconds < o.ReplicaSeconds {
					t.Errorf("%s: %d violations at %.0f replica-seconds, under the oracle's %.0f with %d",
						name, s.Violations, s.ReplicaSeconds, o.ReplicaSeconds, o.Violations)
				}
			}
		})
	}
}
