package simulate_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware/llm"
)

// fixedLLM has fixed token counts: 1,000 prompt tokens (100 ms of prefill) and 100
// output tokens, decode steps of 20 ms plus 1 ms per sequence.
func fixedLLM() *simulate.LLM {
	return &simulate.LLM{
		Prompt: simulate.Tokens{Mean: 1000}, Output: simulate.Tokens{Mean: 100},
		PrefillRate: 10_000, StepBase: 20 * time.Millisecond, StepPerSeq: time.Millisecond,
		TTFT: 2 * time.Second, TPOT: 60 * time.Millisecond,
	}
}

func llmScenario(l *simulate.LLM, rate float64, d time.Duration) simulate.Scenario {
	return simulate.Scenario{Name: "llm", Duration: d, Traffic: simulate.Constant(rate),
		Service: simulate.Service{Concurrency: 32, Min: 1, Max: 1, LLM: l}}
}

func within(got, want time.Duration, frac float64) bool {
	return math.Abs(float64(got-want)) <= frac*float64(want)
}

// TestLLMStepMaths checks the step model on requests that rarely meet: a request
// alone is prefilled in one step of 20 + 1 + 100 ms (its first token), then decodes
// its 99 other tokens at 21 ms each.
func TestLLMStepMaths(t *testing.T) {
	s := run(t, llmScenario(fixedLLM(), 0.02, time.Hour), hold(), 1).Summary
	l := s.LLM
	if s.Served < 50 || l.InputTokens != 1000*s.Served || l.OutputTokens != 100*s.Served {
		t.Fatalf("served %d with %d in and %d out tokens", s.Served, l.InputTokens, l.OutputTokens)
	}
	if !within(l.TTFTP50, 121*time.Millisecond, 0.02) || !within(l.TPOTP50, 21*time.Millisecond, 0.02) {
		t.Errorf("TTFT p50 %v, TPOT p50 %v: want 121 ms and 21 ms", l.TTFTP50, l.TPOTP50)
	}
	if !within(s.P50, 121*time.Millisecond+99*21*time.Millisecond, 0.02) {
		t.Errorf("latency p50 %v, want 2.2 s", s.P50)
	}
	if s.Slow != 0 || l.TTFTSlow != 0 || l.TPOTSlow != 0 {
		t.Errorf("slow %d (TTFT %d, TPOT %d) within both SLOs", s.Slow, l.TTFTSlow, l.TPOTSlow)
	}
}

// TestLLMBatching loads one replica near its capacity: it makes several times the
// output tokens per second one sequence alone can (1/21 ms = 48), and each
// sequence's tokens come slower than alone, since the batch shares the steps.
func TestLLMBatching(t *testing.T) {
	const d = 10 * time.Minute
	low := run(t, llmScenario(fixedLLM(), 0.02, d), hold(), 1).Summary
	high := run(t, llmScenario(fixedLLM(), 3, d), hold(), 1).Summary
	perSec := float64(high.LLM.OutputTokens) / d.Seconds()
	t.Logf("at 3 rps: %.0f output tokens/s, TPOT p50 %v (alone %v), TTFT p99 %v", perSec, high.LLM.TPOTP50, low.LLM.TPOTP50, high.LLM.TTFTP99)
	if perSec < 6*48 {
		t.Errorf("%.0f output tokens/s at 3 rps: want ≥ 6× one sequence's 48", perSec)
	}
	if high.LLM.TPOTP50 < low.LLM.TPOTP50*3/2 {
		t.Errorf("TPOT p50 %v with a busy batch, %v alone: want ≥ 1.5×", high.LLM.TPOTP50, low.LLM.TPOTP50)
	}
	if high.Failed != 0 || high.Served+high.Failed+high.Shed > high.Requests {
		t.Errorf("near capacity: %d failed of %d", high.Failed, high.Requests)
	}
}

// TestLLMTokenBudget limits the KV cache to three requests: the batch holds three
// at a time, so each token comes faster than in a batch of up to 32, and requests
// wait longer for their first.
func TestLLMTokenBudget(t *testing.T) {
	const d = 10 * time.Minute
	free := run(t, llmScenario(fixedLLM(), 3, d), hold(), 1).Summary
	l := fixedLLM()
	l.TokenBudget = 3 * 1100
	l.Prompt.Max, l.Output.Max = 1000, 100
	tight := run(t, llmScenario(l, 3, d), hold(), 1).Summary
	t.Logf("TPOT p50 %v / %v, TTFT p99 %v / %v (no budget / 3,300 tokens)", free.LLM.TPOTP50, tight.LLM.TPOTP50, free.LLM.TTFTP99, tight.LLM.TTFTP99)
	if tight.LLM.TPOTP50 >= free.LLM.TPOTP50 || tight.LLM.TTFTP99 <= free.LLM.TTFTP99 {
		t.Error("the token budget did not limit the batch")
	}
	// Three at a time at most: a step of 23 ms, slower only by the others' prefills.
	if tight.LLM.TPOTP50 > 23*time.Millisecond+2*100*time.Millisecond/99+time.Millisecond {
		t.Errorf("TPOT p50 %v with three in the batch", tight.LLM.TPOTP50)
	}
}

// TestLLMSLOViolations counts a served request over either SLO as slow.
func TestLLMSLOViolations(t *testing.T) {
	l := fixedLLM()
	l.TTFT = 100 * time.Millisecond // below a prefill's 121 ms
	s := run(t, llmScenario(l, 0.02, time.Hour), hold(), 1).Summary
	if s.Slow != s.Served || s.LLM.TTFTSlow != s.Served || s.LLM.TPOTSlow != 0 || s.Violations != s.Slow {
		t.Errorf("TTFT SLO 100 ms: slow %d, TTFT %d, TPOT %d of %d served", s.Slow, s.LLM.TTFTSlow, s.LLM.TPOTSlow, s.Served)
	}
	l = fixedLLM()
	l.TPOT = 20 * time.Millisecond // below a step's 21 ms
	s = run(t, llmScenario(l, 0.02, time.Hour), hold(), 1).Summary
	if s.Slow != s.Served || s.LLM.TPOTSlow != s.Served || s.LLM.TTFTSlow != 0 {
		t.Errorf("TPOT SLO 20 ms: slow %d, TTFT %d, TPOT %d of %d served", s.Slow, s.LLM.TTFTSlow, s.LLM.TPOTSlow, s.Served)
	}
	if want := 2*time.Second + 100*20*time.Millisecond; s.SLO != want {
		t.Errorf("summary SLO %v, want TTFT + TPOT × mean output = %v", s.SLO, want)
	}
}

// TestLLMWindowsForPolicy has a Go policy read what the LLM gateway's windows would
// hold: the model's TTFT, TPOT and token windows, and the tokens as the route's
// Value.
func TestLLMWindowsForPolicy(t *testing.T) {
	type seen struct {
		ttft, tpot, in, out, route metrics.Snapshot
		ok                         bool
	}
	var last seen
	var env simulate.Env
	p := simulate.Policy{Name: "reader", New: func(e simulate.Env) (autoscale.Policy, func() error, error) {
		env = e
		return autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
			const span = time.Minute
			var ok [5]bool
			var x seen
			x.ttft, ok[0] = in.Metrics.Snapshot(llm.ScopeTTFT, "llm", span)
			x.tpot, ok[1] = in.Metrics.Snapshot(llm.ScopeTPOT, "llm", span)
			x.in, ok[2] = in.Metrics.Snapshot(llm.ScopeInputTokens, "llm", span)
			x.out, ok[3] = in.Metrics.Snapshot(llm.ScopeOutputTokens, "llm", span)
			x.route, ok[4] = in.Metrics.Snapshot(metrics.ScopeRoute, simulate.RouteName, span)
			x.ok = ok == [5]bool{true, true, true, true, true}
			if x.ok && x.ttft.Count > 0 {
				last = x
			}
			return nil, nil
		}), nil, nil
	}}
	s := run(t, llmScenario(fixedLLM(), 1, 5*time.Minute), p, 1).Summary
	if !last.ok {
		t.Fatal("the policy found no TTFT window")
	}
	n := float64(last.ttft.Count)
	if last.in.Value != 1000*n || last.out.Value != 100*n || last.route.Value != 1100*float64(last.route.Count) {
		t.Errorf("a minute of %v requests: %v in, %v out, route %v over %d", n, last.in.Value, last.out.Value, last.route.Value, last.route.Count)
	}
	if last.ttft.P50 < 121*time.Millisecond*98/100 || last.tpot.P50 < 21*time.Millisecond*98/100 || last.tpot.P50 > 60*time.Millisecond {
		t.Errorf("TTFT p50 %v, TPOT p50 %v", last.ttft.P50, last.tpot.P50)
	}
	// The policy's env: a full batch of 32 at 52 ms a step serves 1 / (0.1 + 100 × 0.052 / 32) rps.
	if want := 1 / (0.1 + 100*0.052/32); math.Abs(env.Capacity()-want) > 1e-6*want {
		t.Errorf("env capacity %v rps, want %v", env.Capacity(), want)
	}
	if s.Served == 0 {
		t.Error("nothing served")
	}
}

// TestLLMCrash crashes replicas mid-batch: their sequences fail, the replica comes
// back after its cold start and serves again, and the summary still agrees with
// the timeline.
func TestLLMCrash(t *testing.T) {
	sc := llmScenario(fixedLLM(), 2, 20*time.Minute)
	sc.Service.Max, sc.Service.Replicas, sc.Service.Min = 2, 2, 2
	sc.Service.CrashEvery = 2 * time.Minute
	sc.Service.ColdStart = 5 * time.Second
	res := run(t, sc, hold(), 1)
	s := res.Summary
	if s.Failed == 0 || s.Served < s.Requests*8/10 {
		t.Errorf("%d failed, %d served of %d", s.Failed, s.Served, s.Requests)
	}
	checkSummary(t, sc, res)
}

func TestLLMValidate(t *testing.T) {
	bad := []func(l *simulate.LLM){
		func(l *simulate.LLM) { l.Prompt.Mean = 0 },
		func(l *simulate.LLM) { l.Output.CV = -1 },
		func(l *simulate.LLM) { l.Output.Min, l.Output.Max = 10, 5 },
		func(l *simulate.LLM) { l.PrefillRate = 0 },
		func(l *simulate.LLM) { l.StepBase = 0 },
		func(l *simulate.LLM) { l.TTFT = 0 },
		func(l *simulate.LLM) { l.TokenBudget = 500 },
		func(l *simulate.LLM) { l.Prompt.Max, l.TokenBudget = 4000, 4000 },
		func(l *simulate.LLM) { l.Prompt.Max, l.Output.Max, l.TokenBudget = 0, 100, 4000 },
	}
	for i, f := range bad {
		l := fixedLLM()
		l.Output.Max = 200
		f(l)
		if err := llmScenario(l, 1, time.Minute).Validate(); !errors.Is(err, simulate.ErrInvalidConfig) {
			t.Errorf("case %d: Validate = %v, want ErrInvalidConfig", i, err)
		}
	}
	sc := llmScenario(fixedLLM(), 1, time.Minute)
	sc.Service.Slowdown = simulate.Slowdown{Linear: 1}
	if err := sc.Validate(); !errors.Is(err, simulate.ErrInvalidConfig) {
		t.Errorf("LLM with a slowdown: Validate = %v", err)
	}
	sc = llmScenario(fixedLLM(), 1, time.Minute)
	sc.Changes = []simulate.Change{{At: time.Second, ServiceTime: simulate.Fixed(time.Second)}}
	if err := sc.Validate(); !errors.Is(err, simulate.ErrInvalidConfig) {
		t.Errorf("LLM with a service-time change: Validate = %v", err)
	}
	if err := llmScenario(fixedLLM(), 1, time.Minute).Validate(); err != nil {
		t.Errorf("fixed LLM: %v", err)
	}
}

// TestLLMCostPolicyReadsTTFT runs the shipped llm_cost policy, written for the LLM
// gateway, on the llm-serving scenario: it reads the model's in-flight requests
// (m.model) and the p99 of the ttft scope the simulator records as the gateway does,
// and scales the model's target on them. It must keep far more requests within the
// SLOs than the starting two replicas do.
func TestLLMCostPolicyReadsTTFT(t *testing.T) {
	sc, ok := simulate.ScenarioByName("llm-serving")
	if !ok {
		t.Fatal("no llm-serving scenario")
	}
	if raceEnabled {
		sc.Duration = 16 * time.Minute
	}
	cost := simulate.Policy{Name: "llm_cost", Tick: time.Second, New: func(e simulate.Env) (autoscale.Policy, func() error, error) {
		src, err := luabind.FromFS(autoscale.Policies(), "policies/llm_cost.lua")
		if err != nil {
			return nil, nil, err
		}
		cfg := map[string]any{"models": map[string]any{"llm": map[string]any{
			"target": e.Target, "slots": e.Concurrency, "ttft_ms": float64(simulate.StandardLLM.TTFT / time.Millisecond)}}}
		rt, err := luabind.New(src, luabind.WithConfig(cfg), luabind.WithClock(e.Clock),
			luabind.WithLimits(luabind.Limits{TickBudget: 10 * time.Second, PoolSize: 1}))
		if err != nil {
			return nil, nil, err
		}
		return rt, rt.Close, nil
	}}
	pinned := sc
	pinned.Service.Min, pinned.Service.Max = 2, 2
	base := run(t, pinned, hold(), 1).Summary
	s := run(t, sc, cost, 1).Summary
	t.Logf("llm_cost: %d violations (TTFT %d, TPOT %d) of %d, %.0f replica-seconds, peak %d, %d policy errors; two replicas: %d violations",
		s.Violations, s.LLM.TTFTSlow, s.LLM.TPOTSlow, s.Requests, s.ReplicaSeconds, s.PeakReplicas, s.PolicyErrors, base.Violations)
	if s.PolicyErrors != 0 || s.PeakReplicas <= 2 || s.Violations*5 > base.Violations {
		t.Errorf("llm_cost: %d violations (two replicas: %d), peak %d, %d policy errors", s.Violations, base.Violations, s.PeakReplicas, s.PolicyErrors)
	}
}

// TestLLMTenantWindows serves two tenants: each has its own TTFT and token windows,
// keyed by its name, as the gateway's tenant twins are.
func TestLLMTenantWindows(t *testing.T) {
	got := map[string]metrics.Snapshot{}
	p := simulate.Policy{Name: "reader", New: func(simulate.Env) (autoscale.Policy, func() error, error) {
		return autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
			for _, k := range []string{"a", "b"} {
				for _, sc := range []metrics.Scope{llm.ScopeTenantTTFT, llm.ScopeTenantOutputTokens} {
					if s, ok := in.Metrics.Snapshot(sc, k, time.Hour); ok {
						got[string(sc)+"/"+k] = s
					}
				}
			}
			return nil, nil
		}), nil, nil
	}}
	sc := llmScenario(fixedLLM(), 0, 5*time.Minute)
	sc.Traffic = simulate.Mix{{Name: "a", Profile: simulate.Constant(0.5)}, {Name: "b", Profile: simulate.Constant(1)}}
	s := run(t, sc, p, 1).Summary
	a, b := got[string(llm.ScopeTenantOutputTokens)+"/a"], got[string(llm.ScopeTenantOutputTokens)+"/b"]
	if a.Count == 0 || b.Count <= a.Count || a.Value != 100*float64(a.Count) || b.Value != 100*float64(b.Count) {
		t.Errorf("output tokens: a %d requests, %v tokens; b %d, %v", a.Count, a.Value, b.Count, b.Value)
	}
	if ta, tb := got[string(llm.ScopeTenantTTFT)+"/a"], got[string(llm.ScopeTenantTTFT)+"/b"]; ta.Count != a.Count || tb.Count != b.Count {
		t.Errorf("TTFT windows: a %d, b %d requests", ta.Count, tb.Count)
	}
	if len(s.Tenants) != 2 || s.Tenants[0].Served+s.Tenants[1].Served != s.Served {
		t.Errorf("tenants %+v", s.Tenants)
	}
}
