package autoscale_test

import (
	"context"
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// A loop driven step by step under a manual clock, as tests and simulations do.
func ExampleLoop_Step() {
	clock := metrics.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	reg, _ := metrics.NewRegistry(metrics.WithClock(clock))
	route := reg.Window(metrics.ScopeRoute, "checkout")

	// 30 requests in flight for a whole minute.
	for range 30 {
		route.StartAt(clock.Now())
	}
	clock.Advance(time.Minute)

	// Hold 10 concurrent requests per replica, as the Kubernetes HPA would.
	policy, _ := autoscale.TargetTracking(autoscale.TargetTrackingConfig{TargetValue: 10})
	rec := new(actuatortest.Recorder)
	rec.SetReplicas(actuator.Target{Name: "checkout"}, 1)
	loop, err := autoscale.NewLoop(
		autoscale.WithPolicy(policy),
		autoscale.WithRegistry(reg),
		autoscale.WithTargets(autoscale.Target{Name: "checkout", Min: 1, Max: 20, Actuator: rec}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer loop.Close()

	tick, _ := loop.Step(context.Background(), clock.Now())
	d := tick.Decisions[0]
	fmt.Printf("%s: %d → %d (%s)\n", d.Target, d.Current, d.Desired, d.Why)
	for _, s := range d.Steps {
		fmt.Printf("  %s: %d → %d\n", s.Name, s.Before, s.After)
	}
	_ = loop.Flush(context.Background())
	last, _ := rec.Last(actuator.Target{Name: "checkout"})
	fmt.Println("actuator asked for", last.Replicas)
	// Output:
	// checkout: 1 → 3 (applied)
	// actuator asked for 3
}

// The safety layer: the HPA's default behaviour limits a scale-up from 2 replicas to
// max(2 + 4 pods, 2 · 200%) = 6 per 15 s.
func ExampleSafety() {
	rec := new(actuatortest.Recorder)
	rec.SetReplicas(actuator.Target{Name: "api"}, 2)
	loop, _ := autoscale.NewLoop(
		autoscale.WithPolicy(autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
			return []autoscale.Action{autoscale.Scale{Target: "api", Replicas: 50, Reason: "surge"}}, nil
		})),
		autoscale.WithTargets(autoscale.Target{Name: "api", Min: 1, Max: 30, Actuator: rec}),
		autoscale.WithDryRun(true),
	)
	defer loop.Close()
	tick, _ := loop.Step(context.Background(), time.Unix(0, 0))
	d := tick.Decisions[0]
	for _, s := range d.Steps {
		fmt.Printf("%s: %d → %d\n", s.Name, s.Before, s.After)
	}
	fmt.Println(d.Desired, d.Why)
	// Output:
	// max: 50 → 30
	// rate-up: 30 → 6
	// 6 dry-run
}

// The Kubernetes HPA's published case: 4 pods at 80% utilisation against a 50% target.
func ExampleHPARecommendation() {
	n, _ := autoscale.HPARecommendation(4, 80, 50, autoscale.DefaultTolerance, autoscale.PerReplica)
	fmt.Println(n)
	// Output: 7
}

// The shipped Lua policies, for luabind.
func ExamplePolicySource() {
	src, _ := autoscale.PolicySource("kpa")
	fmt.Println(len(src) > 0, autoscale.PolicyNames())
	// Output: true [adaptive kpa llm_cost predictive schedule target_tracking threshold]
}

// A schedule that pre-warms for a sale, combined with a reactive policy: the loop takes
// the larger ask.
func ExampleCombine() {
	prewarm := autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
		return []autoscale.Action{autoscale.Scale{Target: "shop", Replicas: 30, Reason: "sale at noon"}}, nil
	})
	reactive := autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
		return []autoscale.Action{autoscale.Scale{Target: "shop", Replicas: 12, Reason: "load"}}, nil
	})
	loop, _ := autoscale.NewLoop(
		autoscale.WithPolicy(autoscale.Combine(prewarm, reactive)),
		autoscale.WithTargets(autoscale.Target{Name: "shop", Max: 50, Actuator: actuator.NewLog(nil),
			Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}}}),
		autoscale.WithDryRun(true),
	)
	defer loop.Close()
	tick, _ := loop.Step(context.Background(), time.Unix(0, 0))
	fmt.Println(tick.Decisions[0].Desired, tick.Decisions[0].Policy.Reason)
	// Output: 30 sale at noon
}
