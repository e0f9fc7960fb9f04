package kubernetes_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/kubernetes"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// TestLoopKPAScalesDeployment drives the scaling loop with the KPA policy and this
// actuator on a manual clock: idle, the Deployment stays at one replica; when a load
// step of 50 concurrent requests arrives, the KPA panics and scales the Deployment up
// on the API server, reaching ceil(50 / (10 · 0.7)) = 8 replicas once the 6 s panic
// window is full. The loop reads the count back through the actuator every tick.
func TestLoopKPAScalesDeployment(t *testing.T) {
	e := newEnv(t)
	e.deployment(t, "web", 1)
	ctx := testCtx(t)
	clock := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	route := reg.Window(metrics.ScopeRoute, "web")
	kpa, err := autoscale.KPA(autoscale.KPAConfig{TargetValue: 10})
	if err != nil {
		t.Fatal(err)
	}
	loop, err := autoscale.NewLoop(
		autoscale.WithPolicy(kpa),
		autoscale.WithTargets(autoscale.Target{
			Name: "web", Ref: actuator.Target{Namespace: e.ns, Kind: "deployments.apps"},
			Min: 1, Max: 20,
			// Let the KPA's own windows and rates govern, as in Knative.
			Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{}},
		}),
		autoscale.WithDefaultActuator(newActuator(t, e.cfg)),
		autoscale.WithRegistry(reg),
		autoscale.WithClock(clock),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	step := func() autoscale.Decision {
		t.Helper()
		tk, err := loop.Step(ctx, clock.Advance(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := loop.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return tk.Decisions[0]
	}

	for range 5 {
		if d := step(); d.Desired != 1 {
			t.Fatalf("idle: desired %d (%s), want 1", d.Desired, d.Why)
		}
	}
	if got := e.deploymentReplicas(t, "web"); got != 1 {
		t.Fatalf("idle: %d replicas, want 1", got)
	}

	for range 50 { // the load step: 50 requests in flight from now on
		route.StartAt(clock.Now())
	}
	var trace []string
	prev := int32(1)
	for i := range 10 {
		d := step()
		got := e.deploymentReplicas(t, "web")
		trace = append(trace, fmt.Sprintf("t+%ds: current %d → desired %d, deployment %d (%s)", i+1, d.Current, d.Desired, got, d.Policy.Reason))
		if got < prev {
			t.Errorf("scaled down during the load step: %d after %d", got, prev)
		}
		prev = got
	}
	for _, l := range trace {
		t.Log(l)
	}
	if prev != 8 {
		t.Errorf("after the load step the deployment has %d replicas, want 8", prev)
	}
	if d := step(); d.Current != 8 {
		t.Errorf("the loop read back %d replicas, want 8", d.Current)
	}
	var _ actuator.ReplicaReader = (*kubernetes.Actuator)(nil) // what lets the loop read back
}
