package simulate_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// This file is the comparison report's part over seeds: the runs on every seed, each
// policy's mean and worst seed, the bar for the candidate and the moonshot.

// bySeed holds a comparison's summaries by scenario and policy, one per seed from 1.
type bySeed map[string]map[string][]simulate.Summary

// compareSeeds runs every policy on every scenario with seeds 1 to n, GOMAXPROCS runs
// at once, the longest scenarios first.
func compareSeeds(t *testing.T, scenarios []simulate.Scenario, policies []simulate.Policy, n int) bySeed {
	t.Helper()
	type job struct {
		sc   simulate.Scenario
		p    simulate.Policy
		seed uint64
	}
	var jobs []job
	for _, sc := range scenarios {
		for seed := uint64(1); seed <= uint64(n); seed++ {
			for _, p := range policies {
				jobs = append(jobs, job{sc, p, seed})
			}
		}
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].sc.Duration > jobs[j].sc.Duration })
	sums := make([]simulate.Summary, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Go(func() {
			for k := range next {
				j := jobs[k]
				res, err := simulate.Run(context.Background(), simulate.Config{Scenario: j.sc, Policy: j.p, Seed: j.seed})
				if err != nil {
					errs[k] = fmt.Errorf("%s/%s seed %d: %w", j.sc.Name, j.p.Name, j.seed, err)
					continue
				}
				sums[k] = res.Summary
			}
		})
	}
	for k := range jobs {
		next <- k
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	out := bySeed{}
	for _, sc := range scenarios {
		out[sc.Name] = map[string][]simulate.Summary{}
		for _, p := range policies {
			out[sc.Name][p.Name] = make([]simulate.Summary, n)
		}
	}
	for _, s := range sums {
		out[s.Scenario][s.Policy][s.Seed-1] = s
	}
	return out
}

// seed returns the summaries of one seed in scenario-major, policy order.
func (r bySeed) seed(scenarios []simulate.Scenario, policies []simulate.Policy, seed uint64) []simulate.Summary {
	var out []simulate.Summary
	for _, sc := range scenarios {
		for _, p := range policies {
			out = append(out, r[sc.Name][p.Name][seed-1])
		}
	}
	return out
}

// stats is a policy's figures on one scenario over the seeds.
type stats struct {
	viol, above, rs, ratio, rate [2]float64 // mean, worst (largest)
	flaps                        int        // the most on a seed
	moonshot                     bool       // met on every seed
}

func statsOf(runs, oracle []simulate.Summary) stats {
	st := stats{moonshot: true}
	n := float64(len(runs))
	for i, s := range runs {
		o := oracle[i]
		ratio := s.ReplicaSeconds / o.ReplicaSeconds
		above := float64(s.Violations) - float64(o.Violations)
		for _, v := range []struct {
			acc *[2]float64
			x   float64
		}{{&st.viol, float64(s.Violations)}, {&st.above, above}, {&st.rs, s.ReplicaSeconds}, {&st.ratio, ratio}, {&st.rate, s.ViolationRate}} {
			v.acc[0] += v.x / n
			if i == 0 || v.x > v.acc[1] {
				v.acc[1] = v.x
			}
		}
		st.flaps = max(st.flaps, s.Flaps)
		if ratio > moonshotRatio || s.ViolationRate > moonshotRate {
			st.moonshot = false
		}
	}
	return st
}

// seedsSection returns the sections over seeds 1 to n: each policy's mean and worst
// seed, the bar for the candidate and the moonshot.
func seedsSection(scenarios []simulate.Scenario, runs bySeed, n int) string {
	var b strings.Builder
	names := append([]string{simulate.OracleName}, comparedPolicies...)
	fmt.Fprintf(&b, "\n## Over seeds 1 to %d\n\nEach figure is the mean over the seeds and the worst seed's (the largest); flaps are the most on a seed. The moonshot is within %.0f%% of the oracle's replica-seconds at no more than %.0f%% SLO-violating requests, on every seed.\n\n", n, 100*(moonshotRatio-1), 100*moonshotRate)
	b.WriteString("| scenario | policy | SLO violations | above floor | violation % | replica-seconds | × oracle | flaps | moonshot |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, sc := range scenarios {
		oracle := runs[sc.Name][simulate.OracleName]
		for _, name := range names {
			st := statsOf(runs[sc.Name][name], oracle)
			moon := "no"
			switch {
			case name == simulate.OracleName:
				moon = "–"
			case st.moonshot:
				moon = "yes"
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f / %.0f | %.0f / %.0f | %.3f / %.3f | %.0f / %.0f | %.2f / %.2f | %d | %s |\n",
				sc.Name, name, st.viol[0], st.viol[1], st.above[0], st.above[1], 100*st.rate[0], 100*st.rate[1],
				st.rs[0], st.rs[1], st.ratio[0], st.ratio[1], st.flaps, moon)
		}
	}

	fmt.Fprintf(&b, "\n## The bar for %s\n\nFewer SLO-violating requests than both the HPA- and KPA-equivalents (`%s`) at no more replica-seconds, and zero flaps: on the means over seeds 1 to %d (flaps: on every seed), and seed by seed, with the worst seed (where `%s`'s violations exceed the better reference's by the most) and what it falls short on. A tie at the floor counts as falling short.\n\n",
		candidate, strings.Join(references, "`, `"), n, candidate)
	met := 0
	for _, sc := range scenarios {
		m := runs[sc.Name]
		c := statsOf(m[candidate], m[simulate.OracleName])
		var misses, figs []string
		figs = append(figs, fmt.Sprintf("%s %.0f violations, %.0f replica-seconds", candidate, c.viol[0], c.rs[0]))
		for _, r := range references {
			st := statsOf(m[r], m[simulate.OracleName])
			figs = append(figs, fmt.Sprintf("%s %.0f, %.0f", r, st.viol[0], st.rs[0]))
			if c.viol[0] >= st.viol[0] {
				misses = append(misses, fmt.Sprintf("violations not fewer than %s's", r))
			}
			if c.rs[0] > st.rs[0] {
				misses = append(misses, fmt.Sprintf("replica-seconds more than %s's", r))
			}
		}
		if c.flaps > 0 {
			misses = append(misses, fmt.Sprintf("up to %d flaps on a seed", c.flaps))
		}
		mean := "meets the bar"
		if len(misses) > 0 {
			mean = "falls short (" + strings.Join(misses, ", ") + ")"
		}
		seedsMet, worst, worstGap := 0, 0, math.Inf(-1)
		var worstLine string
		for i := range n {
			var sums []simulate.Summary
			for _, name := range append([]string{candidate}, references...) {
				sums = append(sums, m[name][i])
			}
			line := simulate.Verdict(sums, candidate, references...)[0]
			if strings.HasSuffix(line, ": meets the bar") {
				seedsMet++
			}
			best := math.Inf(1)
			for _, r := range references {
				best = min(best, float64(m[r][i].Violations))
			}
			if gap := float64(m[candidate][i].Violations) - best; gap > worstGap {
				worst, worstGap, worstLine = i+1, gap, line
			}
		}
		if seedsMet == n {
			met++
		}
		_, worstWhat, _ := strings.Cut(worstLine, ": ")
		fmt.Fprintf(&b, "- %s: on the mean %s: %s; on %d of %d seeds meets the bar; worst seed %d: %s\n",
			sc.Name, mean, strings.Join(figs, "; "), seedsMet, n, worst, worstWhat)
	}
	fmt.Fprintf(&b, "\n`%s` meets the bar on every seed on %d of %d scenarios.\n", candidate, met, len(scenarios))

	fmt.Fprintf(&b, "\n## The moonshot\n\nWithin %.0f%% of the oracle's replica-seconds at no more than %.0f%% SLO-violating requests, on every seed 1 to %d (figures: the worst seed's ratio and violation %%):\n\n", 100*(moonshotRatio-1), 100*moonshotRate, n)
	everywhere := map[string]bool{}
	for _, name := range comparedPolicies {
		everywhere[name] = true
	}
	for _, sc := range scenarios {
		var parts []string
		for _, name := range comparedPolicies {
			st := statsOf(runs[sc.Name][name], runs[sc.Name][simulate.OracleName])
			verdict := "misses"
			if st.moonshot {
				verdict = "meets"
			} else {
				everywhere[name] = false
			}
			parts = append(parts, fmt.Sprintf("%s %s (%.2f×, %.3f%%)", name, verdict, st.ratio[1], 100*st.rate[1]))
		}
		fmt.Fprintf(&b, "- %s: %s\n", sc.Name, strings.Join(parts, "; "))
	}
	var all []string
	for _, name := range comparedPolicies {
		if everywhere[name] {
			all = append(all, "`"+name+"`")
		}
	}
	if len(all) == 0 {
		all = []string{"no policy"}
	}
	fmt.Fprintf(&b, "\nOn every scenario: %s.\n", strings.Join(all, ", "))
	return b.String()
}
