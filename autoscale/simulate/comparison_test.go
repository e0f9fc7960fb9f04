package simulate_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

var (
	full = flag.Bool("full", false, "run the whole comparison (every standard scenario, policy and seed) instead of one short scenario; scripts/compare.sh runs it")
	// update rewrites the report and the README's copy of its tables: with -full.
	update = flag.Bool("update", false, "with -full, rewrite testdata/comparison.md and the README's copy of its tables")
	seeds  = flag.Int("seeds", comparisonSeeds, "with -full, the seeds 1 to N every run repeats on (a report with fewer is stale)")
)

// comparisonSeeds is how many seeds the comparison repeats every run on: seeds 1 to
// comparisonSeeds. Seed 1 is the standard seed of the main table.
const comparisonSeeds = 6

// shortScenario is the standard scenario the default suite runs end to end through the
// table code (it has the fewest requests); the others run under -full.
const shortScenario = "scale-from-zero"

// comparedPolicies are the shipped policies of the comparison table; each scenario's
// rows start with the oracle's.
var comparedPolicies = []string{"target_tracking", "kpa", "threshold", "predictive", "adaptive"}

// The policies the bar compares: the candidate and its references, the HPA- and
// KPA-equivalents.
const candidate = "adaptive"

var references = []string{"target_tracking", "kpa"}

// The moonshot: within 25% of the oracle's replica-seconds at no more than 1% of
// requests violating the SLO.
const (
	moonshotRatio = 1.25
	moonshotRate  = 0.01
)

func tablePolicies(t *testing.T) []simulate.Policy {
	ps := []simulate.Policy{simulate.Oracle()}
	for _, name := range comparedPolicies {
		ps = append(ps, mustShipped(t, name))
	}
	return ps
}

// lighter divides a scenario's traffic and per-replica concurrency by 10: the same
// replica dynamics for a tenth of the requests, for runs under the race detector.
func lighter(sc simulate.Scenario) simulate.Scenario {
	sc.Traffic = simulate.Scaled{Profile: sc.Traffic, Factor: 0.1}
	sc.Service.Concurrency = 1
	return sc
}

func comparison(t *testing.T, scenarios []simulate.Scenario) []simulate.Summary {
	t.Helper()
	c := simulate.Comparison{Scenarios: scenarios, Policies: tablePolicies(t), Seed: 1, Workers: runtime.GOMAXPROCS(0)}
	results, err := simulate.Compare(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return simulate.Summaries(results)
}

// TestComparisonTable checks the comparison report, testdata/comparison.md, and the
// README's copy of its tables. By default it runs one short standard scenario
// (shortScenario) for every policy of the table on the standard seed and checks that
// the report holds those rows, and that the README's tables are the report's. With
// -full (scripts/compare.sh) it runs every standard scenario on seeds 1 to
// comparisonSeeds and checks the whole report (-update rewrites it and the README's
// tables). Under the race detector it runs two scenarios at a tenth of their traffic
// and checks only the runs' sanity.
func TestComparisonTable(t *testing.T) {
	path := filepath.Join("testdata", "comparison.md")
	readme := filepath.Join("..", "..", "README.md")
	if raceEnabled {
		// Two scenarios at a tenth of their traffic: the race detector makes Lua ~10×
		// slower.
		std := simulate.Standard()
		checkSane(t, comparison(t, []simulate.Scenario{lighter(std[0]), lighter(std[len(std)-1])}))
		return
	}
	if !*full {
		sc, ok := simulate.ScenarioByName(shortScenario)
		if !ok || !slices.Contains(simulate.StandardNames(), shortScenario) {
			t.Fatalf("%s is not a standard scenario: pick another short one", shortScenario)
		}
		sums := comparison(t, []simulate.Scenario{sc})
		checkSane(t, sums)
		report, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(report), "\n")
		for _, row := range strings.Split(strings.TrimSuffix(simulate.Table(sums), "\n"), "\n") {
			if !slices.Contains(lines, row) {
				t.Errorf("%s lacks the row\n%s\n(run scripts/compare.sh)", path, row)
			}
		}
		readmeDoc, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		if synced, err := readmeWith(string(readmeDoc), string(report)); err != nil {
			t.Fatal(err)
		} else if synced != string(readmeDoc) {
			t.Errorf("the tables in %s are not those of %s (run scripts/compare.sh)", readme, path)
		}
		return
	}

	scenarios := simulate.Standard()
	policies := tablePolicies(t)
	runs := compareSeeds(t, scenarios, policies, *seeds)
	sums := runs.seed(scenarios, policies, 1)
	checkSane(t, sums)
	doc := comparisonDoc(scenarios, sums, *seeds) + seedsSection(scenarios, runs, *seeds) + holdSection(t)
	t.Log("\n" + doc)
	readmeDoc, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	newReadme, err := readmeWith(string(readmeDoc), doc)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(readme, []byte(newReadme), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run scripts/compare.sh)", err)
	}
	if string(want) != doc {
		t.Fatalf("%s is stale: run scripts/compare.sh", path)
	}
	if newReadme != string(readmeDoc) {
		t.Fatalf("the tables in %s are stale: run scripts/compare.sh", readme)
	}
}

func checkSane(t *testing.T, sums []simulate.Summary) {
	t.Helper()
	for _, s := range sums {
		if s.PolicyErrors > 0 || s.Requests == 0 {
			t.Errorf("%s/%s: %d policy errors, %d requests", s.Scenario, s.Policy, s.PolicyErrors, s.Requests)
		}
	}
}

// readmeWith returns readme with its copies of the report's tables replaced by the
// report's.
func readmeWith(readme, report string) (string, error) {
	for _, hdr := range []string{tableHeader, holdHeader} {
		var ok bool
		if readme, ok = withTable(readme, hdr, resultsTable(report, hdr)); !ok {
			return "", fmt.Errorf("the README has no table (a block starting %q) to keep up to date", hdr)
		}
	}
	return readme, nil
}

// The headers of the comparison document's tables that the README copies.
const (
	tableHeader = "| scenario | policy |"
	holdHeader  = "| policy | hold queue |"
)

// resultsTable returns a table of a comparison document: the block of table lines
// that starts with header.
func resultsTable(doc, header string) string {
	_, rest, _ := strings.Cut(doc, header)
	var b strings.Builder
	b.WriteString(header)
	for i, line := range strings.Split(rest, "\n") {
		if i > 0 && !strings.HasPrefix(line, "|") {
			break
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// withTable returns readme with its table that starts with header replaced by table.
func withTable(readme, header, table string) (string, bool) {
	before, rest, ok := strings.Cut(readme, header)
	if !ok {
		return readme, false
	}
	lines := strings.SplitAfter(rest, "\n")
	n := 1
	for n < len(lines) && strings.HasPrefix(lines[n], "|") {
		n++
	}
	return before + table + strings.Join(lines[n:], ""), true
}

func comparisonDoc(scenarios []simulate.Scenario, sums []simulate.Summary, seeds int) string {
	var b strings.Builder
	b.WriteString("# Shipped policies on the standard scenarios\n\n")
	fmt.Fprintf(&b, "Generated by `scripts/compare.sh` (`go test ./autoscale/simulate/ -run TestComparisonTable -full -update`): the table is seed 1, the sections after it seeds 1 to %d; `go test ./autoscale/simulate/` checks one scenario's rows against it, and the full run all of it.\n\n", seeds)
	b.WriteString("Unless its description says otherwise, a scenario serves a service whose replica handles 10 requests at once for a log-normal 100 ms (cv 0.5), 100 rps at full use; the SLO is 500 ms; clients give up after 30 s. ")
	b.WriteString("An SLO-violating request is one served slower than the SLO, shed, or failed (timed out). Replica-seconds count starting, ready and draining replicas. ")
	b.WriteString(fmt.Sprintf("A flap is a reversal of the scaling direction within %s of the previous scale event. ", simulate.DefaultFlapWindow))
	b.WriteString("Reaction is, for each rise of the offered load (from when the rate crossed half again its level), the time until ready capacity covered it for 10 s in a row and through the new level.\n\n")
	b.WriteString("Policies: `oracle` is the baseline, not a shipped policy: it knows the run's arrivals and service times in advance and asks, one cold start ahead, for the fewest replicas whose pooled slots keep every request within the SLO (`simulate.Oracle` explains the construction and why it is a lower bound on replica-seconds at the floor of violations, approximately); ")
	b.WriteString("`target_tracking` is the HPA (15 s sync period, concurrency averaged over 15 s at 70% of a replica, tolerance 0.1, 300 s scale-down stabilisation and the HPA's default rate limits); ")
	b.WriteString("`kpa` is Knative's KPA with its defaults (2 s tick, 60 s stable / 6 s panic windows, panic threshold 200%, rates 1000 up / 2 down, utilisation 0.7, scale to zero after 30 s); ")
	b.WriteString("`threshold` is the seed article's latency rule; `predictive` is Holt's trend on the request rate; `adaptive` is the recommended default (autoscale/policies/adaptive.lua).\n\n")
	b.WriteString("Above floor is a run's SLO-violating requests less the oracle's on the same scenario and seed: the oracle's violations are the unavoidable floor (the requests whose own service time exceeds the SLO, those of the first seconds before a replica ordered at the first tick can be ready, and the balancer's misses). × oracle is a run's replica-seconds over the oracle's.\n\n")
	b.WriteString("| scenario | what |\n|---|---|\n")
	for _, sc := range scenarios {
		fmt.Fprintf(&b, "| %s | %s (%s) |\n", sc.Name, sc.Description, sc.Duration)
	}
	b.WriteString("\n")
	b.WriteString(simulate.Table(sums))
	// The standard service's own floor: a log-normal service time with mean 100 ms and
	// cv 0.5 exceeds the 500 ms SLO with probability P(Z > (ln 500 - mu) / sigma).
	sigma := math.Sqrt(math.Log(1 + 0.5*0.5))
	mu := math.Log(100) - sigma*sigma/2
	floor := 0.5 * math.Erfc((math.Log(500)-mu)/sigma/math.Sqrt2)
	fmt.Fprintf(&b, "\nNo policy can have fewer violations than the requests whose own service time exceeds the SLO: %.4f%% of requests with the standard service, about 1.8%% on heavy-tail and 0.5%% on pareto-tail. The oracle's violations are those and the few it cannot avoid besides (on tenant-surge, the quota's throttles too, alike for every policy).\n",
		100*floor)
	return b.String()
}

// TestAdaptiveMeetsAnSLO shows how a user asserts that a policy meets an SLO on a
// profile: here, at most 5% of requests violate it through a 6× step (the ~10 s of
// excess load that arrives while new replicas cold-start queues and is served late).
func TestAdaptiveMeetsAnSLO(t *testing.T) {
	sc, _ := simulate.ScenarioByName("step")
	if raceEnabled {
		sc = lighter(sc)
	}
	sc.Duration = 10 * time.Minute
	s := run(t, sc, mustShipped(t, "adaptive"), 1).Summary
	if s.ViolationRate > 0.05 || s.Flaps > 0 {
		t.Fatalf("violation rate %.4f, %d flaps:\n%s", s.ViolationRate, s.Flaps, s)
	}
}

// holdSection runs the shipped policies on scale-from-zero without the hold queue
// (requests wait for a first replica in a buffer, then queue at the replica they were
// sent to), with the scenario's (1,000 for 10 s) and with a small one (100 for 10 s),
// and returns a section comparing them.
func holdSection(t *testing.T) string {
	t.Helper()
	base, _ := simulate.ScenarioByName("scale-from-zero")
	modes := []struct {
		name string
		hold *simulate.HoldQueue
	}{
		{"none", nil},
		{"1,000 for 10 s", base.Hold},
		{"100 for 10 s", &simulate.HoldQueue{MaxQueue: 100, MaxWait: 10 * time.Second}},
	}
	var scenarios []simulate.Scenario
	for _, m := range modes {
		sc := base
		sc.Hold = m.hold
		scenarios = append(scenarios, sc)
	}
	sums := comparison(t, scenarios)
	var b strings.Builder
	b.WriteString("\n## The hold queue on scale-from-zero\n\n")
	b.WriteString("`scale-from-zero` above runs behind the gateway's hold queue: the real `middleware.Activator`, driven without blocking (`TryAcquire`) on the simulated clock. ")
	b.WriteString("A request that finds no free slot among the ready replicas (none ready, or all busy) waits there and goes to the balancer's pick when a slot frees or a replica becomes ready; the held demand wakes the loop, which steps at once (`StepWake` raises its decision to the replicas the held requests need). ")
	b.WriteString("Without it, requests wait for a first replica in a buffer, all go to that replica's queue when it is ready, and the loop learns of them at its next tick. ")
	b.WriteString("A 503 (queue full, or held past the maximum wait) is a violation; its Retry-After error is against the true remaining cold start, for the 503s sent while no replica was ready. ")
	b.WriteString("First request is the latency of the first request that arrived while no replica was ready, over each such period.\n\n")
	b.WriteString(holdHeader + " SLO violations | 503 full + timed out | held | hold wait p50 / p99 | first request mean / max | replica-seconds | Retry-After error mean / max (503s checked) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range comparedPolicies {
		for k, m := range modes {
			per := len(sums) / len(modes)
			for _, s := range sums[k*per : (k+1)*per] {
				if s.Policy != name {
					continue
				}
				h := s.Hold
				wait, retry := "–", "–"
				if m.hold != nil {
					wait = fmt.Sprintf("%s / %s", ms(h.WaitP50), ms(h.WaitP99))
				}
				if h.RetryChecked > 0 {
					retry = fmt.Sprintf("%s / %s (%d)", ms(h.RetryErrMean), ms(h.RetryErrMax), h.RetryChecked)
				}
				fmt.Fprintf(&b, "| %s | %s | %d | %d + %d | %d | %s | %s / %s | %.0f | %s |\n",
					name, m.name, s.Violations, h.Full, h.TimedOut, h.Held, wait,
					ms(s.FirstLatency), ms(s.FirstMax), s.ReplicaSeconds, retry)
			}
		}
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
