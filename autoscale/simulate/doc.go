// Package simulate runs the real scaling loop against a model of a service on a manual
// clock, so a policy can be tried on hours of traffic in seconds and compared with
// others before it is deployed.
//
// The simulation is discrete-event and deterministic: arrivals come from a traffic
// [Profile] (constant, step, ramp, flash sale, diurnal, bursty, multi-tenant mixes, or
// a replayed CSV trace), each request passes the real admission control
// (middleware.Admission: shedding and throttling actions apply) and the real load
// balancer (balancer.Pool, power of two choices over the ready replicas), queues at a
// replica with a fixed number of concurrency slots, is served for a time drawn from a
// [Distribution], and is recorded into a real metrics.Registry with the same calls the
// middleware makes. Every tick, the real autoscale.Loop steps at the simulated time,
// runs the policy (Lua or Go) on those windows, passes its decision through the real
// safety layer, and scales the model through a simulated actuator: new replicas serve
// after a cold start, removed ones drain and are billed for a scale-down delay, and
// replicas may crash. One seed gives byte-identical results.
//
// A run yields a [Result]: a per-second timeline ([Sample], written as CSV by
// [Result.WriteCSV]) and a [Summary] — requests, SLO-violating requests (slower than the
// scenario's SLO, shed, or failed), p50 and p99, replica-seconds (cost), scale events,
// flaps and reaction times. [Compare] runs several policies over several scenarios and
// [Table] renders the comparison in markdown. The sub-package simulate/plot draws
// timelines as SVG; it is apart so that a program calling [Run] does not link gonum.
//
// # Example
//
//	sc := simulate.Standard()[0] // the flash sale
//	p, _ := simulate.Shipped("adaptive")
//	res, err := simulate.Run(ctx, simulate.Config{Scenario: sc, Policy: p, Seed: 1})
//	if err != nil { ... }
//	fmt.Println(res.Summary.Violations, res.Summary.ReplicaSeconds)
//
// Tests can assert that a policy meets an SLO on a profile: run it and check
// Summary.ViolationRate.
//
// # Replaying recorded ticks
//
// [Replay] re-runs what a production loop saw against another policy: keep each
// step's [autoscale.Tick.Input] (an observer given with autoscale.WithObserver; the
// input's Metrics is the tick's frozen autoscale.Snapshot, and the slice of them
// marshals to JSON), then
//
//	ticks, err := simulate.Replay(ctx, simulate.ReplayConfig{Policy: changed, Ticks: recorded})
//
// steps a fresh loop once per recorded tick, at its time, on its snapshot and with the
// replica counts it recorded, through the real safety layer; compare its decisions with
// the recorded ones. A recorded snapshot holds what was read when it was recorded, so
// a changed policy that reads other windows finds none there.
package simulate
