package simulate_test

import (
	"context"
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// A step from 100 to 600 rps under the adaptive policy: the simulated service gets six
// times the load at minute 5 and the policy adds replicas within a cold start. Five
// minutes later it still keeps headroom for a surprise like the step (13 replicas where
// 600 rps needs 7), for burst_memory (10 minutes).
func ExampleRun() {
	sc := simulate.Scenario{
		Name:     "step",
		Duration: 10 * time.Minute,
		Traffic:  simulate.Step{From: 100, To: 600, At: 5 * time.Minute},
		Service:  simulate.Service{Replicas: 2, Min: 1, Max: 50, ColdStart: 10 * time.Second},
	}
	policy, err := simulate.Shipped("adaptive")
	if err != nil {
		panic(err)
	}
	res, err := simulate.Run(context.Background(), simulate.Config{Scenario: sc, Policy: policy, Seed: 1})
	if err != nil {
		panic(err)
	}
	s := res.Summary
	fmt.Println("flaps:", s.Flaps)
	fmt.Println("replicas at the end:", res.Timeline[len(res.Timeline)-1].Replicas)
	fmt.Println("violations under 5%:", s.ViolationRate < 0.05)
	// Output:
	// flaps: 0
	// replicas at the end: 13
	// violations under 5%: true
}
