package simulate

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// StandardNames lists the standard scenarios, in the order [Standard] returns them.
func StandardNames() []string {
	return []string{"flash-sale", "diurnal", "bursty", "slow-cold-start", "spike-30x", "tenant-surge",
		"heavy-tail", "pareto-tail", "week", "trace-week", "slows-under-load", "llm-serving", "scale-from-zero"}
}

// Standard returns the standard scenarios the shipped policies are compared on, each
// with the reason it is there. Each serves a service whose replica handles 10
// requests at once (but llm-serving, a language model), for 100 ms on average (log-normal of coefficient of variation 0.5
// unless it says otherwise), so 100 requests per second at full utilisation, with a
// 500 ms SLO and a 30 s client timeout. scale-from-zero comes last so that the short
// comparison under the race detector (the first and the last) covers the hold queue.
//
//   - flash-sale: 100 rps rising to 12× (1,200 rps) over 2 minutes at minute 10,
//     holding 10 minutes, falling back over 3; 10 s cold start; 40 minutes.
//   - diurnal: a day compressed into an hour, 30 to 400 rps; 10 s cold start.
//   - bursty: Poisson at 200 rps with 3× bursts of 20–60 s every 4 minutes on average;
//     10 s cold start; 30 minutes.
//   - slow-cold-start: 100 rps, a step to 500 at minute 5 and down to 150 at minute 20,
//     with a 45 s cold start; 30 minutes.
//   - spike-30x: 50 rps jumping to 1,500 within 5 s for 90 s and back as fast; 10 s
//     cold start; 15 minutes. Load that changes by an order of magnitude within
//     seconds, where a policy that steps up by factors falls behind.
//   - tenant-surge: four tenants at 50 rps; one surges 20× (to 1,000 rps) over 30 s
//     for 5 minutes while the others stay flat, with tenant throttling on: each
//     tenant has a quota of 600 rps ([Tenant.Quota], bursts of 600), so 400 rps of
//     the surge are throttled (429, counted as shed, alike for every policy) and the
//     policy must scale for the admitted 750; 20 minutes. One tenant's surge hidden
//     in a flat total, as multi-tenant gateways meet it.
//   - heavy-tail: the service time log-normal with σ = 1.0 (coefficient of variation
//     sqrt(e-1) ≈ 1.31, 1.8% of requests slower than the SLO by themselves), same
//     100 ms mean, under a diurnal cycle of 40–500 rps over 30 minutes. Real latency
//     tails are wider than σ 0.47, and queueing behind a slow request hurts more.
//   - pareto-tail: a Pareto service time of tail index 2.5 (finite variance, 0.5% of
//     requests slower than the SLO by themselves), same 100 ms mean, under a step
//     from 100 to 600 rps at minute 5; 25 minutes. A power-law tail, as caches and
//     garbage collection give, that no log-normal has.
//   - week: a week compressed into 56 minutes (8-minute days; [Week]): 30–400 rps
//     on weekdays, the weekend at 40% of the height, 15% noise wandering over
//     minutes. Daily and weekly periodicity together, for policies that learn a
//     period.
//   - trace-week: a synthetic trace of per-second counts (testdata/trace-week.csv,
//     embedded; a week in 56 minutes, 20–300 rps, weekend at half height, a 3×
//     launch on Thursday afternoon) replayed. The path a recorded trace takes.
//   - slows-under-load: 50 → 600 rps over 15 min from minute 5, on a service whose
//     service time grows linearly above 50% utilisation to 2× when full ([Slowdown]),
//     so a replica run hot serves half its nominal rate; 30 minutes.
//   - llm-serving: a language model with continuous batching ([LLM]): 4 rps rising
//     to 32 over 5 min from minute 5, 10 min plateau, back over 5; log-normal prompts
//     (mean 1,000 tokens) and outputs (mean 250), a batch of 32 in a 48k-token KV
//     cache, SLOs of 2 s to first token and 60 ms per output token; 60 s (GPU) cold
//     start; 30 minutes. A replica serves about 2.6 rps when full.
//   - scale-from-zero: Min 0, starting with no replica: idle, 20 rps, idle, 150 rps,
//     idle, 5 rps; 3 s cold start; 30 minutes. Requests go through the gateway's hold
//     queue ([Scenario.Hold]: the real middleware.Activator, up to 1,000 held for up
//     to 10 s), which holds them while no replica has a free slot and wakes the loop
//     at once, as Knative's activator does.
func Standard() []Scenario {
	return []Scenario{
		{
			Name:        "flash-sale",
			Description: "100 rps → 1,200 rps in 2 min, 10 min plateau, back in 3 min; 10 s cold start",
			Duration:    40 * time.Minute,
			Traffic: FlashSale{Base: 100, Peak: 12, Start: 10 * time.Minute, Rise: 2 * time.Minute,
				Hold: 10 * time.Minute, Fall: 3 * time.Minute},
			Service: Service{Replicas: 2, Min: 1, Max: 100},
		},
		{
			Name:        "diurnal",
			Description: "a day compressed into an hour, 30–400 rps; 10 s cold start",
			Duration:    time.Hour,
			Traffic:     Diurnal{Min: 30, Max: 400, Period: time.Hour},
			Service:     Service{Replicas: 1, Min: 1, Max: 100},
		},
		{
			Name:        "bursty",
			Description: "Poisson 200 rps with 3× bursts of 20–60 s every ~4 min; 10 s cold start",
			Duration:    30 * time.Minute,
			Traffic:     mustBursty(NewBursty(200, 3, 4*time.Minute, 20*time.Second, 60*time.Second, 30*time.Minute, 7)),
			Service:     Service{Replicas: 3, Min: 1, Max: 100},
		},
		{
			Name:        "slow-cold-start",
			Description: "100 → 500 rps at 5 min, → 150 at 20 min; 45 s cold start",
			Duration:    30 * time.Minute,
			Traffic:     Sum{Step{From: 100, To: 500, At: 5 * time.Minute}, Step{From: 0, To: -350, At: 20 * time.Minute}},
			Service:     Service{Replicas: 2, Min: 1, Max: 100, ColdStart: 45 * time.Second},
		},
		{
			Name:        "spike-30x",
			Description: "50 rps → 1,500 rps in 5 s for 90 s, back in 5 s; 10 s cold start: load jumps by an order of magnitude within seconds",
			Duration:    15 * time.Minute,
			Traffic: FlashSale{Base: 50, Peak: 30, Start: 5 * time.Minute, Rise: 5 * time.Second,
				Hold: 90 * time.Second, Fall: 5 * time.Second},
			Service: Service{Replicas: 1, Min: 1, Max: 100},
		},
		{
			Name: "tenant-surge",
			Description: "four tenants at 50 rps, one surges 20× over 30 s for 5 min; each throttled to 600 rps: " +
				"a tenant's surge inside a flat total",
			Duration: 20 * time.Minute,
			Traffic: Mix{
				{Name: "a", Profile: Constant(50), Quota: 600},
				{Name: "b", Profile: Constant(50), Quota: 600},
				{Name: "c", Profile: Constant(50), Quota: 600},
				{Name: "surge", Quota: 600, Profile: FlashSale{Base: 50, Peak: 20, Start: 5 * time.Minute,
					Rise: 30 * time.Second, Hold: 5 * time.Minute, Fall: 30 * time.Second}},
			},
			Service: Service{Replicas: 2, Min: 1, Max: 100},
		},
		{
			Name:        "heavy-tail",
			Description: "log-normal service time σ 1.0 (cv 1.31), diurnal 40–500 rps in 30 min: real latency tails are wide",
			Duration:    30 * time.Minute,
			Traffic:     Diurnal{Min: 40, Max: 500, Period: 30 * time.Minute},
			Service:     Service{Replicas: 1, Min: 1, Max: 100, ServiceTime: mustDist(NewLogNormal(100*time.Millisecond, math.Sqrt(math.E-1)))},
		},
		{
			Name:        "pareto-tail",
			Description: "Pareto service time α 2.5, 100 → 600 rps at 5 min: a power-law tail",
			Duration:    25 * time.Minute,
			Traffic:     Step{From: 100, To: 600, At: 5 * time.Minute},
			Service:     Service{Replicas: 2, Min: 1, Max: 100, ServiceTime: mustDist(NewPareto(100*time.Millisecond, 2.5))},
		},
		{
			Name:        "week",
			Description: "a week in 56 min: daily 30–400 rps, weekend at 40%, 15% noise: daily and weekly periods",
			Duration:    56 * time.Minute,
			Traffic:     Week{Min: 30, Max: 400, Day: 8 * time.Minute, Weekend: 0.4, Noise: 0.15, Seed: 11},
			Service:     Service{Replicas: 1, Min: 1, Max: 100},
		},
		{
			Name:        "trace-week",
			Description: "a recorded-style week of per-second counts replayed (testdata/trace-week.csv): the trace path",
			Duration:    traceWeek().Length(),
			Traffic:     traceWeek(),
			Service:     Service{Replicas: 1, Min: 1, Max: 100},
		},
		{
			Name:        "slows-under-load",
			Description: "50 → 600 rps over 15 min; service time ×2 at full utilisation, rising from 50%",
			Duration:    30 * time.Minute,
			Traffic:     Ramp{From: 50, To: 600, Start: 5 * time.Minute, Length: 15 * time.Minute},
			Service:     Service{Replicas: 1, Min: 1, Max: 100, Slowdown: Slowdown{Knee: 0.5, Linear: 1}},
		},
		{
			Name:        "llm-serving",
			Description: "LLM, 4 → 32 rps over 5 min, 10 min plateau; batch 32, SLOs TTFT 2 s, TPOT 60 ms; 60 s cold start",
			Duration:    30 * time.Minute,
			Traffic: FlashSale{Base: 4, Peak: 8, Start: 5 * time.Minute, Rise: 5 * time.Minute,
				Hold: 10 * time.Minute, Fall: 5 * time.Minute},
			Service: Service{Replicas: 2, Min: 1, Max: 40, Concurrency: 32, ColdStart: 60 * time.Second, LLM: &StandardLLM},
		},
		{
			Name:        "scale-from-zero",
			Description: "from zero replicas: idle, 20 rps, idle, 150 rps, idle, 5 rps; 3 s cold start; hold queue of 1,000 for 10 s",
			Duration:    30 * time.Minute,
			Traffic: Func(func(t time.Duration) float64 {
				switch {
				case t < 2*time.Minute:
					return 0
				case t < 6*time.Minute:
					return 20
				case t < 12*time.Minute:
					return 0
				case t < 15*time.Minute:
					return 150
				case t < 22*time.Minute:
					return 0
				}
				return 5
			}),
			Service: Service{InitialZero: true, Min: 0, Max: 100, ColdStart: 3 * time.Second},
			Hold:    &HoldQueue{MaxQueue: 1000, MaxWait: 10 * time.Second},
		},
	}
}

// traceWeekCSV is the trace the trace-week scenario replays, generated by
// traceWeekCSV in week_test.go.
//
//go:embed testdata/trace-week.csv
var traceWeekCSV []byte

// traceWeek reads traceWeekCSV once; a Trace is immutable and safe for concurrent use.
var traceWeek = sync.OnceValue(func() *Trace {
	tr, err := ReadTrace(bytes.NewReader(traceWeekCSV))
	if err != nil {
		panic(err) // the file is checked by TestTraceWeekFile
	}
	return tr
})

func mustDist[D Distribution](d D, err error) Distribution {
	if err != nil {
		panic(err) // the arguments are constants checked by the tests
	}
	return d
}

// Extra returns scenarios beyond the standard set, for the command and for tests:
// constant, step, ramp and multi-tenant (three tenants: a steady one, a diurnal one
// and one with a flash sale).
func Extra() []Scenario {
	return []Scenario{
		{Name: "constant", Description: "300 rps", Duration: 20 * time.Minute, Traffic: Constant(300),
			Service: Service{Replicas: 2, Min: 1, Max: 100}},
		{Name: "step", Description: "100 → 600 rps at 5 min", Duration: 20 * time.Minute,
			Traffic: Step{From: 100, To: 600, At: 5 * time.Minute}, Service: Service{Replicas: 2, Min: 1, Max: 100}},
		{Name: "ramp", Description: "50 → 800 rps over 15 min", Duration: 30 * time.Minute,
			Traffic: Ramp{From: 50, To: 800, Start: 5 * time.Minute, Length: 15 * time.Minute},
			Service: Service{Replicas: 1, Min: 1, Max: 100}},
		{Name: "multi-tenant", Description: "three tenants: steady 100 rps, diurnal 20–200 rps, a 10× flash sale from 30 rps",
			Duration: 40 * time.Minute,
			Traffic: Mix{
				{Name: "steady", Profile: Constant(100)},
				{Name: "daily", Profile: Diurnal{Min: 20, Max: 200, Period: 40 * time.Minute}},
				{Name: "sale", Profile: FlashSale{Base: 30, Peak: 10, Start: 15 * time.Minute, Rise: time.Minute,
					Hold: 5 * time.Minute, Fall: time.Minute}},
			},
			Service: Service{Replicas: 3, Min: 1, Max: 100}},
	}
}

// StandardLLM is the language model of the llm-serving scenario: prompts of mean
// 1,000 tokens and outputs of 250 (log-normal, coefficient of variation 0.6), 10,000
// prompt tokens prefilled per second, a decode step of 20 ms plus 0.5 ms per
// sequence in the batch, a 48,000-token KV cache, and SLOs of 2 s to the first token
// and 60 ms per output token. With a batch of 32 a full replica makes about 890
// output tokens per second and serves about 2.6 requests per second.
var StandardLLM = LLM{
	Prompt:      Tokens{Mean: 1000, CV: 0.6, Min: 16, Max: 8000},
	Output:      Tokens{Mean: 250, CV: 0.6, Min: 1, Max: 1000},
	PrefillRate: 10_000, StepBase: 20 * time.Millisecond, StepPerSeq: 500 * time.Microsecond,
	TokenBudget: 48_000, TTFT: 2 * time.Second, TPOT: 60 * time.Millisecond,
}

func mustBursty(b *Bursty, err error) *Bursty {
	if err != nil {
		panic(err) // the arguments are constants checked by the tests
	}
	return b
}

// ScenarioByName returns a standard or extra scenario by name.
func ScenarioByName(name string) (Scenario, bool) {
	for _, sc := range append(Standard(), Extra()...) {
		if sc.Name == name {
			return sc, true
		}
	}
	return Scenario{}, false
}

// ScenarioNames lists the standard and extra scenarios' names.
func ScenarioNames() []string {
	var out []string
	for _, sc := range append(Standard(), Extra()...) {
		out = append(out, sc.Name)
	}
	return out
}

// TraceScenario returns a scenario replaying a trace (see [Trace]) for its length, on
// the default service, named after name. A log that names tenants replays as a [Mix]
// of them ([Trace.Tenants]); one that records latencies draws service times from
// them ([Trace.ServiceTime]).
func TraceScenario(name string, tr *Trace) Scenario {
	sc := Scenario{Name: name, Description: fmt.Sprintf("replay of %d requests", tr.Requests()),
		Duration: max(tr.Length(), time.Second), Traffic: tr,
		Service: Service{Replicas: 1, Min: 1, Max: 100}}
	if m := tr.Tenants(); m != nil {
		sc.Traffic = m
		sc.Description += fmt.Sprintf(" from %d tenants", len(m))
	}
	if d, ok := tr.ServiceTime(); ok {
		sc.Service.ServiceTime = d
		sc.Description += fmt.Sprintf(", service times from %d recorded latencies (mean %v)", d.Len(), d.Mean().Round(time.Millisecond))
	}
	return sc
}

// Comparison runs every policy on every scenario.
type Comparison struct {
	Scenarios []Scenario
	Policies  []Policy
	// Seed seeds every run (each run gets the same seed).
	Seed uint64
	// Workers is how many runs go at once; zero means 1. Results do not depend on it.
	Workers int
}

// Compare runs every policy of c on every scenario and returns the results in
// scenario-major order (all policies of the first scenario first). It returns the
// first error; the runs are independent and deterministic, so Workers changes only
// the wall time.
func Compare(ctx context.Context, c Comparison) ([]*Result, error) {
	if len(c.Scenarios) == 0 || len(c.Policies) == 0 {
		return nil, fmt.Errorf("%w: comparison needs scenarios and policies", ErrInvalidConfig)
	}
	n := len(c.Scenarios) * len(c.Policies)
	out := make([]*Result, n)
	errs := make([]error, n)
	workers := min(max(c.Workers, 1), n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for k := range jobs {
				sc, p := c.Scenarios[k/len(c.Policies)], c.Policies[k%len(c.Policies)]
				out[k], errs[k] = Run(ctx, Config{Scenario: sc, Policy: p, Seed: c.Seed})
			}
		})
	}
	for k := range n {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Summaries returns the summaries of results.
func Summaries(results []*Result) []Summary {
	out := make([]Summary, len(results))
	for i, r := range results {
		out[i] = r.Summary
	}
	return out
}

// Verdict compares a candidate policy with references on each scenario: the
// candidate meets the bar on a scenario when it has fewer SLO-violating requests than
// every reference, no more replica-seconds than any, and no flap. It returns one line
// per scenario, in the order of first appearance, saying which parts of the bar were
// met.
func Verdict(sums []Summary, candidate string, references ...string) []string {
	byScenario := map[string]map[string]Summary{}
	var order []string
	for _, s := range sums {
		if byScenario[s.Scenario] == nil {
			byScenario[s.Scenario] = map[string]Summary{}
			order = append(order, s.Scenario)
		}
		byScenario[s.Scenario][s.Policy] = s
	}
	var out []string
	for _, name := range order {
		m := byScenario[name]
		c, ok := m[candidate]
		if !ok {
			continue
		}
		var misses []string
		refs := append([]string(nil), references...)
		sort.Strings(refs)
		for _, r := range refs {
			s, ok := m[r]
			if !ok {
				continue
			}
			if c.Violations >= s.Violations {
				misses = append(misses, fmt.Sprintf("%d violations, not fewer than %s's %d", c.Violations, r, s.Violations))
			}
			if c.ReplicaSeconds > s.ReplicaSeconds {
				misses = append(misses, fmt.Sprintf("%.0f replica-seconds, more than %s's %.0f", c.ReplicaSeconds, r, s.ReplicaSeconds))
			}
		}
		if c.Flaps > 0 {
			misses = append(misses, fmt.Sprintf("%d flaps", c.Flaps))
		}
		if len(misses) == 0 {
			out = append(out, fmt.Sprintf("%s: meets the bar", name))
		} else {
			out = append(out, fmt.Sprintf("%s: falls short: %s", name, strings.Join(misses, "; ")))
		}
	}
	return out
}
