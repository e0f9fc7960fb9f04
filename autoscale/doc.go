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
//     Policies read the tick's [Snapshot] ([Input.Metrics]) and return typed actions:
//     [Scale], [SetWeight], [Eject], [ScoreWeights], [Shed], [LimitBounds], [Throttle],
//     [Route], [Budget].
//   - The safety layer ([Safety]): min/max, a tolerance band, stabilization windows
//     and step limits with the Kubernetes HPA's semantics, a cooldown, no scale-down in
//     panic, hold or KEDA-style fallback when the policy fails; for scale from zero,
//     a pending step (no scale-up while replicas asked for are not ready,
//     [Loop.SetReady]), a wake step (the replicas held requests need, [Loop.Wake],
//     which also steps a running loop at once) and scale to zero after an idle period
//     for any policy ([ScaleToZero]). [Loop.ColdStart] reports the observed cold start.
//   - Appliers ([Pool], [Scorer], [Shedder], [Throttler], [Router], [Budgeter]): small interfaces
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
// # A tick's data flow
//
// Every tick the loop asks its source for a [Reader] as of the tick's time (a
// [RegistryReader] over the gateway's registry with [WithRegistry], or what
// [WithReader] returns, such as a merge of several gateways' windows) and wraps it in
// one [Snapshot]: a frozen, memoising view. The first read of a (scope, key, span), or
// the first pass over a scope ([Snapshot.Scope]), computes the figures from the
// windows; every later read of it in the tick returns the same figures. The live
// policy reads that snapshot, then each shadow policy reads the same one, so a shadow
// sees what the live policy saw even when requests moved the windows in between. The
// tick's [Decision] records refer to what the live policy read: its first
// [MaxRecordedReads] key reads with their figures ([Decision.Inputs]) and each scope
// pass by its scope, span and size ([Decision.ScopeInputs]), never a copy of a whole
// scope, so the history's memory is bounded (about 6.5 MB for 1,024 decisions of a
// policy aggregating 1,000 windows). When the step ends the snapshot is frozen and
// kept in [Tick.Input], for an observer ([WithObserver]) to record: frozen, it answers
// exactly the reads made during the tick, marshals to JSON, and package
// autoscale/simulate replays a recorded sequence of ticks against another policy.
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
