package autoscale_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luatest"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// The config each shipped policy's tests assume (see the top of each *_test.lua).
var luaTestConfigs = map[string]map[string]any{
	"target_tracking": {"target_value": 50, "per_replica": true, "signal": "concurrency"},
	"kpa": {"target_value": 1, "target_utilization": 1, "panic_threshold": 2,
		"max_scale_up_rate": 10, "max_scale_down_rate": 10},
	"threshold": {"target": "api", "up_ms": 200, "down_ms": 80, "breaches": 3, "step": 2, "cooldown": 60},
	"schedule": {"target": "shop", "windows": []any{
		map[string]any{"at": 1700003600, "duration": 1800, "lead": 900, "replicas": 30},
		map[string]any{"daily": "12:00", "duration": 3600, "lead": 600, "replicas": 8},
	}},
	"predictive": {"target": "api", "rps_per_replica": 10, "alpha": 0.5, "beta": 0.5, "cold_start": 10},
	"adaptive":   {"target": "api", "target_value": 10, "cold_start": 10},
	"llm_cost": {"models": map[string]any{
		"large": map[string]any{"target": "large", "slots": 4, "max_queue": 2, "ttft_ms": 800, "cheaper": "small"},
		"small": map[string]any{"slots": 8},
	}, "down_ticks": 2, "idle_to_zero": 30},
}

func TestShippedLuaPolicies(t *testing.T) {
	for _, name := range autoscale.PolicyNames() {
		t.Run(name, func(t *testing.T) {
			cfg, ok := luaTestConfigs[name]
			if !ok {
				t.Fatalf("no test config for %s", name)
			}
			luatest.Run(t, autoscale.Policies(), "policies/"+name+".lua", "policies/"+name+"_test.lua", luabind.WithConfig(cfg),
				// Some tests tick thousands of times: give them room under the race
				// detector.
				luabind.WithLimits(luabind.Limits{LoadBudget: time.Minute, TickBudget: time.Minute}))
		})
	}
}

func TestPolicySource(t *testing.T) {
	for _, name := range autoscale.PolicyNames() {
		if src, err := autoscale.PolicySource(name); err != nil || len(src) == 0 {
			t.Errorf("PolicySource(%q) = %d bytes, %v", name, len(src), err)
		}
	}
	for _, bad := range []string{"nope", "../policy", "kpa_test.lua", ""} {
		if _, err := autoscale.PolicySource(bad); err == nil {
			t.Errorf("PolicySource(%q) succeeded", bad)
		}
	}
}

// fixedReader answers every snapshot with the figure of its span.
type fixedReader map[time.Duration]float64

func (r fixedReader) Snapshot(_ metrics.Scope, _ string, span time.Duration) (metrics.Snapshot, bool) {
	v, ok := r[span]
	if !ok {
		v = r[0]
	}
	return metrics.Snapshot{Concurrency: v, Count: 1}, true
}
func (fixedReader) Keys(metrics.Scope) []string { return nil }

func luaPolicy(t *testing.T, name string, cfg map[string]any) *luabind.Runtime {
	t.Helper()
	src, err := luabind.FromFS(autoscale.Policies(), "policies/"+name+".lua")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := luabind.New(src, luabind.WithConfig(cfg), luabind.WithFailMode(luabind.HookTick, luabind.FailClosed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func scales(acts []autoscale.Action) []autoscale.Scale {
	var out []autoscale.Scale
	for _, a := range acts {
		s := a.(autoscale.Scale)
		s.Reason = ""
		out = append(out, s)
	}
	return out
}

// TestLuaMatchesGo checks the Lua twins against the Go policies on random inputs.
func TestLuaMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t.Run("target_tracking", func(t *testing.T) {
		lp := luaPolicy(t, "target_tracking", map[string]any{"target_value": 7.5})
		gp, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{TargetValue: 7.5})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			in := &autoscale.Input{Now: t0, Tick: time.Second,
				Targets: []autoscale.TargetState{{Name: "a", Replicas: rng.IntN(30), Max: 100}},
				Metrics: autoscale.NewSnapshot(t0, fixedReader{0: rng.Float64() * 300})}
			la, lerr := lp.Decide(context.Background(), in)
			ga, gerr := gp.Decide(context.Background(), in)
			if (lerr != nil) != (gerr != nil) {
				t.Fatalf("case %d: lua err %v, go err %v", i, lerr, gerr)
			}
			if diff := cmp.Diff(scales(ga), scales(la)); diff != "" {
				t.Fatalf("case %d (%+v, %v): go (-) vs lua (+):\n%s", i, in.Targets, in.Metrics, diff)
			}
		}
	})
	t.Run("kpa", func(t *testing.T) {
		lp := luaPolicy(t, "kpa", map[string]any{"target_value": 10})
		gp, err := autoscale.KPA(autoscale.KPAConfig{TargetValue: 10})
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		replicas := 5
		for i := range 300 {
			now = now.Add(time.Duration(1+rng.IntN(20)) * time.Second)
			stable := rng.Float64() * 200
			if rng.IntN(5) == 0 {
				stable = 0
			}
			panicV := stable * (0.5 + 2*rng.Float64())
			in := &autoscale.Input{Now: now, Tick: time.Second,
				Targets: []autoscale.TargetState{{Name: "a", Replicas: replicas, Max: 1000}},
				Metrics: autoscale.NewSnapshot(now, fixedReader{autoscale.DefaultKPAStableWindow: stable, autoscale.DefaultKPAPanicWindow: panicV})}
			la, lerr := lp.Decide(context.Background(), in)
			ga, gerr := gp.Decide(context.Background(), in)
			if lerr != nil || gerr != nil {
				t.Fatalf("case %d: lua err %v, go err %v", i, lerr, gerr)
			}
			if diff := cmp.Diff(scales(ga), scales(la)); diff != "" {
				t.Fatalf("case %d (replicas %d, stable %v, panic %v): go (-) vs lua (+):\n%s", i, replicas, stable, panicV, diff)
			}
			replicas = ga[0].(autoscale.Scale).Replicas
		}
	})
}

// BenchmarkStepLua100 is a Step over 100 targets with the Lua target-tracking policy.
// The budget is 2 ms.
func BenchmarkStepLua100(b *testing.B) {
	rt, err := func() (*luabind.Runtime, error) {
		src, err := luabind.FromFS(autoscale.Policies(), "policies/target_tracking.lua")
		if err != nil {
			return nil, err
		}
		return luabind.New(src, luabind.WithConfig(map[string]any{"target_value": 10}))
	}()
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	benchStep(b, rt)
}

func benchStep(b *testing.B, p autoscale.Policy) {
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		b.Fatal(err)
	}
	var targets []autoscale.Target
	for i := range 100 {
		name := fmt.Sprintf("svc-%03d", i)
		w := reg.Window(metrics.ScopeRoute, name)
		for j := range 50 {
			w.StartAt(t0.Add(time.Duration(j) * 10 * time.Millisecond))
		}
		targets = append(targets, autoscale.Target{Name: name, Min: 1, Max: 100, Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}}})
	}
	clock.Advance(30 * time.Second)
	l, err := autoscale.NewLoop(autoscale.WithPolicy(p), autoscale.WithRegistry(reg),
		autoscale.WithDefaultActuator(nopActuator{}), autoscale.WithTargets(targets...), autoscale.WithDryRun(true))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	now := clock.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(time.Second)
		if _, err := l.Step(ctx, now); err != nil {
			b.Fatal(err)
		}
	}
}

// spanReader answers a snapshot for the spans it holds and none for any other, so a
// twin that reads a window in the wrong unit finds no window.
type spanReader map[time.Duration]metrics.Snapshot

func (r spanReader) Snapshot(_ metrics.Scope, _ string, span time.Duration) (metrics.Snapshot, bool) {
	s, ok := r[span]
	return s, ok
}
func (spanReader) Keys(metrics.Scope) []string { return nil }

// agree runs the Go twin and the Lua policy on the same inputs and fails on the first
// decision they differ on. next returns the i-th input, given the replicas the Go twin
// asked for last (the current count when there is none yet).
func agree(t *testing.T, gp, lp autoscale.Policy, n int, next func(i, replicas int) *autoscale.Input) {
	t.Helper()
	replicas := 5
	for i := range n {
		in := next(i, replicas)
		ga, gerr := gp.Decide(context.Background(), in)
		la, lerr := lp.Decide(context.Background(), in)
		if gerr != nil || lerr != nil {
			t.Fatalf("case %d: go err %v, lua err %v", i, gerr, lerr)
		}
		if len(ga) == 0 {
			t.Fatalf("case %d: no decision", i)
		}
		if diff := cmp.Diff(scales(ga), scales(la)); diff != "" {
			t.Fatalf("case %d (%+v): go (-) vs lua (+):\n%s", i, in.Targets, diff)
		}
		replicas = ga[0].(autoscale.Scale).Replicas
	}
}

// TestTwinsSpeakTheSameUnits configures each Go twin and its Lua policy with the same
// numbers, in the units autoscale.Policies documents, and checks they decide alike:
// latency targets in milliseconds on both sides, spans and windows as durations in Go
// and seconds in Lua, and the one documented difference, Lua's tolerance = 0 being Go's
// negative Tolerance.
func TestTwinsSpeakTheSameUnits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	for _, c := range []struct {
		signal string
		sig    autoscale.Signal
		set    func(*metrics.Snapshot, time.Duration)
	}{
		{"p99", autoscale.SignalP99, func(s *metrics.Snapshot, d time.Duration) { s.P99 = d }},
		{"mean", autoscale.SignalMean, func(s *metrics.Snapshot, d time.Duration) { s.Mean = d }},
	} {
		t.Run("target_tracking/"+c.signal, func(t *testing.T) {
			lp := luaPolicy(t, "target_tracking", map[string]any{"target_value": 250, "signal": c.signal,
				"span": 15, "per_replica": true, "tolerance": 0.05})
			gp, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{TargetValue: 250,
				Source: autoscale.Source{Signal: c.sig}, Span: 15 * time.Second,
				Aggregation: autoscale.PerReplica, Tolerance: 0.05})
			if err != nil {
				t.Fatal(err)
			}
			agree(t, gp, lp, 200, func(int, int) *autoscale.Input {
				var s metrics.Snapshot
				c.set(&s, ms(50+rng.Float64()*600))
				return &autoscale.Input{Now: t0, Tick: time.Second,
					Targets: []autoscale.TargetState{{Name: "a", Replicas: 1 + rng.IntN(30), Max: 1000}},
					Metrics: autoscale.NewSnapshot(t0, spanReader{15 * time.Second: s})}
			})
		})
	}
	t.Run("target_tracking/tolerance 0", func(t *testing.T) {
		lp := luaPolicy(t, "target_tracking", map[string]any{"target_value": 10, "tolerance": 0})
		gp, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{TargetValue: 10, Tolerance: -1})
		if err != nil {
			t.Fatal(err)
		}
		agree(t, gp, lp, 200, func(_, replicas int) *autoscale.Input {
			// Within 10% of the target: only "no tolerance" scales.
			s := metrics.Snapshot{Concurrency: float64(replicas) * 10 * (0.92 + 0.16*rng.Float64())}
			return &autoscale.Input{Now: t0, Tick: time.Second,
				Targets: []autoscale.TargetState{{Name: "a", Replicas: replicas, Max: 1000}},
				Metrics: autoscale.NewSnapshot(t0, spanReader{0: s})}
		})
	})
	t.Run("kpa/windows and grace", func(t *testing.T) {
		lp := luaPolicy(t, "kpa", map[string]any{"target_value": 10, "stable_window": 30, "panic_window": 3,
			"scale_to_zero_grace": 10})
		gp, err := autoscale.KPA(autoscale.KPAConfig{TargetValue: 10, StableWindow: 30 * time.Second,
			PanicWindow: 3 * time.Second, ScaleToZeroGrace: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		agree(t, gp, lp, 300, func(_, replicas int) *autoscale.Input {
			now = now.Add(time.Duration(1+rng.IntN(8)) * time.Second)
			stable := rng.Float64() * 200
			if rng.IntN(3) == 0 {
				stable = 0
			}
			panicV := stable * (0.5 + 2*rng.Float64())
			return &autoscale.Input{Now: now, Tick: time.Second,
				Targets: []autoscale.TargetState{{Name: "a", Replicas: replicas, Max: 1000}},
				Metrics: autoscale.NewSnapshot(now, spanReader{30 * time.Second: {Concurrency: stable},
					3 * time.Second: {Concurrency: panicV}})}
		})
	})
}

// TestKPATwinsDecideAlikeWithTheDeciderSettings runs the two KPAs with every decider
// setting on (activation scale, scale-down delay, target burst capacity, an unreachable
// target, no grace) over two targets whose counts are sometimes unknown, and checks
// the same actions and the same excess burst capacity in their reasons.
func TestKPATwinsDecideAlikeWithTheDeciderSettings(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	lp := luaPolicy(t, "kpa", map[string]any{"target_value": 10, "activation_scale": 3, "scale_down_delay": 20,
		"target_burst_capacity": 50, "unreachable": []any{"b"}, "stable_window": 30, "panic_window": 3})
	gp, err := autoscale.KPA(autoscale.KPAConfig{TargetValue: 10, ActivationScale: 3, ScaleDownDelay: 20 * time.Second,
		TargetBurstCapacity: new(50.0), Unreachable: []string{"b"}, StableWindow: 30 * time.Second, PanicWindow: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ebc := regexp.MustCompile(`excess burst capacity (-?\d+)$`)
	now := t0
	replicas := map[string]int{"a": 4, "b": 4}
	for i := range 400 {
		now = now.Add(time.Duration(1+rng.IntN(5)) * time.Second)
		stable := rng.Float64() * 150
		if rng.IntN(3) == 0 {
			stable = 0
		}
		panicV := stable * (0.5 + 2*rng.Float64())
		var targets []autoscale.TargetState
		for _, n := range []string{"a", "b"} {
			r := replicas[n]
			if rng.IntN(10) == 0 {
				r = -1
			}
			targets = append(targets, autoscale.TargetState{Name: n, Replicas: r, Max: 1000})
		}
		in := &autoscale.Input{Now: now, Tick: time.Second, Targets: targets,
			Metrics: autoscale.NewSnapshot(now, spanReader{30 * time.Second: {Concurrency: stable}, 3 * time.Second: {Concurrency: panicV}})}
		ga, gerr := gp.Decide(context.Background(), in)
		la, lerr := lp.Decide(context.Background(), in)
		if gerr != nil || lerr != nil {
			t.Fatalf("case %d: go err %v, lua err %v", i, gerr, lerr)
		}
		if diff := cmp.Diff(scales(ga), scales(la)); diff != "" {
			t.Fatalf("case %d (%+v, stable %v, panic %v): go (-) vs lua (+):\n%s", i, targets, stable, panicV, diff)
		}
		for j := range ga {
			g, l := ga[j].(autoscale.Scale), la[j].(autoscale.Scale)
			gm, lm := ebc.FindStringSubmatch(g.Reason), ebc.FindStringSubmatch(l.Reason)
			if gm == nil || lm == nil || gm[1] != lm[1] {
				t.Fatalf("case %d: excess burst capacity: go %q, lua %q", i, g.Reason, l.Reason)
			}
			replicas[g.Target] = g.Replicas
		}
	}
}
