// Package autoscale runs the scaling loop: every tick it snapshots the metric windows,
// asks a policy what to do, passes every action through a safety layer and applies it,
// leaving a record of why.
//
// The pieces:
//
//   - [Loop]: [Loop.Step] for tests and simulation, [Loop.Run] for production; targets
//     ([Target]) with min and max replicas, scaled through an [actuator.Actuator] and
//     read back when it is an [actuator.ReplicaReader].
//   - [Policy]: a Go policy or [PolicyFunc]; Lua policies come from package luabind.
//     Policies read metric windows through a [Reader] (a [RegistryReader] over the
//     gateway's registry, as of the tick's time; [ScopeSnapshots] reads a whole scope in
//     one pass) and return typed actions: [Scale], [SetWeight], [Eject], [Shed],
//     [Throttle], [Route], [Budget].
//   - The safety layer ([Safety]): min/max, a tolerance band, stabilization windows
//     and step limits with the Kubernetes HPA's semantics, a cooldown, no scale-down in
//     panic, hold or KEDA-style fallback when the policy fails; for scale from zero,
//     a pending step (no scale-up while replicas asked for are not ready,
//     [Loop.SetReady]), a wake step (the replicas held requests need, [Loop.Wake],
//     which also steps a running loop at once) and scale to zero after an idle period
//     for any policy ([ScaleToZero]). [Loop.ColdStart] reports the observed cold start.
//   - Appliers ([Pool], [Shedder], [Throttler], [Router], [Budgeter]): small interfaces
//     satisfied by the balancer's pools, the middleware's admission and
//     middleware/llm's token budgets.
//   - [Decision] records, kept in a bounded ring ([Loop.Decisions]), logged with slog,
//     exported as OpenTelemetry metrics and a span per tick; dry-run, shadow policies
//     and a leader gate ([Elector]).
//   - Refused actions (an unknown target, an invalid action, no applier, an applier's
//     error) are never silent: each is kept ([Loop.Refusals]), counted ([Loop.Stats]
//     and the OpenTelemetry counter autoscale.actions.refused) and logged at Warn, at
//     most once per [RefusalLogEvery] per kind and reason.
//   - Shipped policies: [TargetTracking] (the HPA) and [KPA] (Knative) in Go, and the
//     Lua files of [Policies]: adaptive (the recommended default), target_tracking, kpa,
//     threshold, schedule, predictive, llm_cost (AI gateways: scale a model, or send its
//     economy lane to a cheaper one). [NewCanary] splits a model's requests with a
//     canary version and rolls it back on the gateway's own windows.
//
// # Example
//
//	rec := new(actuatortest.Recorder)
//	policy, _ := autoscale.TargetTracking(autoscale.TargetTrackingConfig{TargetValue: 10})
//	loop, _ := autoscale.NewLoop(
//		autoscale.WithPolicy(policy),
//		autoscale.WithRegistry(reg),
//		autoscale.WithTargets(autoscale.Target{Name: "checkout", Min: 1, Max: 20, Actuator: rec}),
//	)
//	go loop.Run(ctx) // or loop.Step(ctx, now) under a manual clock
//
// Actuator calls are asynchronous: a decision is dispatched to a goroutine owned by
// the loop, one per target at most; a newer decision replaces a pending one and
// cancels the context of one in flight, retries back off exponentially with full
// jitter and wait at least what a Retry-After asks ([actuator.RetryAfter], capped by
// Actuation.RetryMax), and each call has a timeout. The loop is the module's one
// retrier: actuators make one attempt per call, so a failing decision makes at most
// Actuation.Attempts calls. The request path never waits on an actuator.
package autoscale
