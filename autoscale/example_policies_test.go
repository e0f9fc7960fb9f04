package autoscale_test

import (
	"context"
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// hold keeps n more requests in flight on w from now on.
func hold(w *metrics.Window, now time.Time, n int) {
	for range n {
		w.StartAt(now)
	}
}

// Knative's algorithm alone, asked directly: a steady load is sized over the 60 s
// stable window; a burst that doubles the ready replicas' capacity over the 6 s panic
// window switches it to panic mode, which scales up at once and never down.
func ExampleKPA() {
	clock := metrics.NewManualClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	reg, _ := metrics.NewRegistry(metrics.WithClock(clock))
	route := reg.Window(metrics.ScopeRoute, "api")

	// Each replica carries 10 requests at once; the KPA aims at 70% of that.
	kpa, err := autoscale.KPA(autoscale.KPAConfig{TargetValue: 10})
	if err != nil {
		fmt.Println(err)
		return
	}
	decide := func(replicas int) {
		in := &autoscale.Input{Now: clock.Now(), Tick: 2 * time.Second,
			Targets: []autoscale.TargetState{{Name: "api", Replicas: replicas, Desired: replicas, Max: 100}},
			Metrics: autoscale.NewSnapshot(clock.Now(), autoscale.NewRegistryReader(reg, clock.Now()))}
		actions, err := kpa.Decide(context.Background(), in)
		if err != nil {
			fmt.Println(err)
			return
		}
		s := actions[0].(autoscale.Scale)
		fmt.Printf("%d → %d, panic %t: %s\n", replicas, s.Replicas, s.Panic, s.Reason)
	}

	// 28 in flight for a minute: 28 / 7 = 4 replicas. First seen with 3 replicas, the
	// decider starts in panic (as Knative's does), so it would not go below 3 for a
	// stable window.
	hold(route, clock.Now(), 28)
	clock.Advance(time.Minute)
	decide(3)

	hold(route, clock.Now(), 42) // 70 in flight for the last 6 s
	clock.Advance(6 * time.Second)
	decide(4)
	// Output:
	// 3 → 4, panic true: kpa panic: observed in total, stable 28 → 4 replicas, panic 28 → 4; target 10 per replica; excess burst capacity -209
	// 4 → 10, panic true: kpa panic: observed in total, stable 32.2 → 5 replicas, panic 70 → 10; target 10 per replica; excess burst capacity -241
}

// The Kubernetes HPA's algorithm alone: hold 10 requests in flight per replica, with
// its 10% tolerance.
func ExampleTargetTracking() {
	clock := metrics.NewManualClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	reg, _ := metrics.NewRegistry(metrics.WithClock(clock))
	route := reg.Window(metrics.ScopeRoute, "api")
	tt, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{TargetValue: 10, Span: 15 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, step := range []struct{ add, replicas int }{{45, 3}, {4, 5}, {-30, 5}} {
		if step.add > 0 {
			hold(route, clock.Now(), step.add)
		}
		for range -step.add {
			route.DoneAt(clock.Now(), metrics.Observation{})
		}
		clock.Advance(15 * time.Second)
		in := &autoscale.Input{Now: clock.Now(), Tick: 15 * time.Second,
			Targets: []autoscale.TargetState{{Name: "api", Replicas: step.replicas, Desired: step.replicas, Max: 100}},
			Metrics: autoscale.NewSnapshot(clock.Now(), autoscale.NewRegistryReader(reg, clock.Now()))}
		actions, _ := tt.Decide(context.Background(), in)
		s := actions[0].(autoscale.Scale)
		fmt.Printf("%d → %d: %s\n", step.replicas, s.Replicas, s.Reason)
	}
	// Output:
	// 3 → 5: target tracking: observed 45 in total, target 10 per replica
	// 5 → 5: target tracking: observed 49 in total, target 10 per replica
	// 5 → 2: target tracking: observed 19 in total, target 10 per replica
}

// The loop runs a Lua policy (here the shipped target_tracking.lua, the HPA in Lua) on
// each tick, passes its ask through the safety layer (by default the HPA's: up by at
// most max(4 pods, 100%), down only to the highest ask of the last 5 minutes) and sends
// the result to the target's actuator. Step drives it under a manual clock; Run does
// the same on a ticker.
func ExampleNewLoop() {
	clock := metrics.NewManualClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	reg, _ := metrics.NewRegistry(metrics.WithClock(clock))
	src, _ := luabind.FromFS(autoscale.Policies(), "policies/target_tracking.lua")
	policy, err := luabind.New(src, luabind.WithClock(clock), luabind.WithConfig(map[string]any{
		"targets": []string{"api"}, "signal": "concurrency", "target_value": 10, "span": 15}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer policy.Close()

	rec := new(actuatortest.Recorder)
	rec.SetReplicas(actuator.Target{Name: "api"}, 2)
	loop, err := autoscale.NewLoop(
		autoscale.WithPolicy(policy),
		autoscale.WithRegistry(reg),
		autoscale.WithClock(clock),
		autoscale.WithTargets(autoscale.Target{Name: "api", Min: 1, Max: 20, Actuator: rec}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer loop.Close()

	route := reg.Window(metrics.ScopeRoute, "api")
	step := func() {
		clock.Advance(15 * time.Second)
		tick, err := loop.Step(context.Background(), clock.Now())
		if err != nil {
			fmt.Println(err)
			return
		}
		d := tick.Decisions[0]
		fmt.Printf("%s: %d → %d %s (%s)\n", d.Target, d.Current, d.Desired, d.Why, d.Policy.Reason)
		for _, st := range d.Steps {
			if st.Clamped() {
				fmt.Printf("  %s: %d → %d\n", st.Name, st.Before, st.After)
			}
		}
		_ = loop.Flush(context.Background())
	}
	hold(route, clock.Now(), 55) // 55 requests in flight
	step()
	for range 40 { // the load falls to 15
		route.DoneAt(clock.Now(), metrics.Observation{})
	}
	step()
	last, _ := rec.Last(actuator.Target{Name: "api"})
	fmt.Println("the actuator was asked for", last.Replicas)
	// Output:
	// api: 2 → 6 applied (target tracking: concurrency 55 in total, target 10 per replica)
	// api: 6 → 6 unchanged (target tracking: concurrency 15 in total, target 10 per replica)
	//   stabilize-down: 2 → 6
	// the actuator was asked for 6
}
