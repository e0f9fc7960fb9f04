// Package simulate runs the real scaling loop against a model of a service on a manual
// clock, so a policy can be tried on hours of traffic in seconds and compared with
// others before it is deployed.
//
// The simulation is discrete-event and deterministic: arrivals come from a traffic
// [Profile] (constant, step, ramp, flash sale, diurnal, a compressed [Week], bursty,
// multi-tenant mixes with optional per-tenant quotas, or a replayed trace), each
// request passes the real admission control (middleware.Admission: shedding and
// throttling actions apply) and the real load balancer (balancer.Pool, power of two
// choices over the ready replicas), queues at a replica with a fixed number of
// concurrency slots, is served for a time drawn from a [Distribution] (fixed,
// exponential, [LogNormal] or the heavier-tailed [Pareto]), and is recorded into a
// real metrics.Registry with the same calls the middleware makes. Every tick, the real
// autoscale.Loop steps at the simulated time, runs the policy (Lua or Go) on those
// windows, passes its decision through the real safety layer, and scales the model
// through a simulated actuator: new replicas serve after a cold start, removed ones
// drain and are billed for a scale-down delay, and replicas may crash. One seed gives
// byte-identical results.
//
// A run yields a [Result]: a per-second timeline ([Sample], written as CSV by
// [Result.WriteCSV]) and a [Summary] — requests, SLO-violating requests (slower than the
// scenario's SLO, shed, or failed), p50 and p99, replica-seconds (cost), scale events,
// flaps and reaction times. [Compare] runs several policies over several scenarios and
// [Table] renders the comparison in markdown. [Oracle] is the baseline: a policy that
// knows the run's future and provisions, one cold start ahead, the fewest replicas
// that keep every request within the SLO; [Table] gives each run's replica-seconds over
// the oracle's and its violations above the oracle's, the unavoidable floor. The
// sub-package simulate/plot draws timelines as SVG; it is apart so that a program
// calling [Run] does not link gonum.
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
// # Two service models
//
// The default model is a request service: a replica has [Service.Concurrency] slots,
// and a request holds one for a service time drawn from [Service.ServiceTime]. With
// [Service.Slowdown] that time grows with the replica's utilisation (busy slots over
// concurrency, counting the request, when it takes its slot): a factor of one up to a
// knee, then rising linearly, exponentially or both to its value at full
// utilisation, so a service that slows under load loses capacity as it fills (the
// slows-under-load scenario: ×2 when full, from 50%). A steep slowdown collapses a
// replica held past its knee, since each slowed request keeps its slot longer and
// raises the utilisation that slows the next: two replicas of 10 slots on a fixed
// 100 ms at 45% of their nominal rate serve a median request in 100 ms, in 141 ms
// with ×2 when full from 50%, and with ×3 queue until clients time out.
//
// [Service.LLM] replaces it with a language-model server with continuous batching.
// Each request draws a prompt and an output token count ([Tokens]: log-normal,
// bounded); a replica runs up to Concurrency sequences whose tokens fit its KV cache
// ([LLM.TokenBudget]), in steps: a step of n sequences that prefills p prompt tokens
// (of the sequences that joined since the last step, each giving its first token)
// and decodes one token of each other lasts StepBase + n·StepPerSeq + p/PrefillRate.
// Throughput rises with the batch (n tokens a step) while each sequence's time per
// output token (TPOT) grows with it, and a long prompt stalls the batch, as without
// chunked prefill. A served request violates the SLO when its time to first token
// (TTFT, from arrival, queueing included) or its TPOT is over the model's; the
// summary counts both ([LLMSummary]: tokens, TTFT and TPOT quantiles, each SLO's
// violations; Summary.Slow counts a request over either once). Served requests are
// recorded as the LLM gateway (middleware/llm) records them: tokens as the Value of
// the route's, tenant's and model's windows, and the model's (and tenants') ttft,
// tpot, input_tokens and output_tokens scopes, so a policy can scale on TTFT or on
// tokens per second. The policy's [Env] gets the mean latency at a full batch as
// ServiceTime (so Env.Capacity is a full replica's rate) and TTFT + TPOT × the mean
// output as SLO. The llm-serving scenario ([StandardLLM]) runs 4 to 32 rps, a
// batch of 32 in a 48,000-token cache, SLOs of 2 s and 60 ms, with a 60 s cold start.
//
// # Admission and capacity changes
//
// A scenario can configure the real admission ([Scenario.Admission]: a fixed
// concurrency limit; [Scenario.Adaptive]: adaptive limits per priority class, with
// each [Tenant] of a [Mix] carrying its Priority) and change the backend's capacity
// mid-run ([Scenario.Changes]: per-replica concurrency or service time at a time).
// The timeline records the adaptive limit each second ([Sample.Limit]); the summary
// gives each tenant's counts, goodput and p99 ([Summary.Tenants]). [Config.Admitter]
// replaces the real admission with another, to compare limiters on the same
// arrivals; a [WaitingAdmitter] may hold requests back in a queue of its own and
// decide later. TestAdaptiveLimitFollowsAHalvedBackend halves a backend's concurrency
// mid-run: the Vegas limit is within 20% of the new optimum (replicas × concurrency)
// 5 s after and stays there, with 94% of the best fixed limit's goodput in
// hindsight. TestAgainstFailsafeGo floods a high-priority tenant (400 rps) with a
// low-priority one (2,000 rps) on a backend of 1,000 rps, under this library's limit
// per class and under failsafe-go v0.9.8's adaptivelimiter: its AdaptiveLimiter (one
// limit, no queue) with its default windows and with 100 ms ones like ours, and its
// PriorityLimiter (a queue of up to 2-3× the limit, in which priority decides who may
// wait):
//
//	go test -run TestAgainstFailsafeGo -v ./autoscale/simulate
//
//	| limiter                             | class | requests | goodput/s | admitted p99 | rejected |
//	| ----------------------------------- | ----- | -------: | --------: | -----------: | -------: |
//	| autoscalelua, Vegas per class       | high  |   15,813 |       394 |       157 ms |        3 |
//	| autoscalelua, Vegas per class       | low   |   51,537 |       402 |       157 ms |   35,404 |
//	| failsafe-go v0.9.8, defaults        | high  |   15,813 |       240 |       118 ms |    6,197 |
//	| failsafe-go v0.9.8, defaults        | low   |   51,537 |       506 |       127 ms |   31,207 |
//	| failsafe-go v0.9.8, 100 ms windows  | high  |   15,813 |       251 |       237 ms |    5,752 |
//	| failsafe-go v0.9.8, 100 ms windows  | low   |   51,537 |       556 |       245 ms |   29,180 |
//	| failsafe-go v0.9.8, PriorityLimiter | high  |   15,813 |       149 |       713 ms |      155 |
//	| failsafe-go v0.9.8, PriorityLimiter | low   |   51,537 |        44 |       730 ms |   34,546 |
//
// Goodput is requests served within the SLO (300 ms) per second over the 40 s run,
// the flood starting at 15 s. failsafe-go's PriorityLimiter sheds the low class
// first, but the requests it lets wait in its queue miss the SLO. failsafe-go reads
// time.Now, so its runs go inside a testing/synctest bubble whose clock follows the
// simulated one. The flood uses a fixed service time; the halving test runs with
// fixed and log-normal service times (coefficients of variation 0.1 and 0.5), since a
// no-load latency estimated from the fastest requests would read the spread of
// service times as a queue and sink the limit (see middleware's AdaptiveConfig).
//
// # The hold queue
//
// A scenario may put a gateway-side hold queue between admission and the balancer
// ([Scenario.Hold]; scale-from-zero does): the real middleware.Activator, with the
// service's concurrency per replica, on the run's clock. Its blocking Acquire would
// wait on the one goroutine that also has to free the slot, so the run drives its
// non-blocking twin, Activator.TryAcquire, whose rules (fast path, count bound,
// maximum wait, release by priority then arrival, no more released than the ready
// replicas' slots, 503 with a Retry-After from the observed cold start and the drain
// time, the wake of the loop with the held demand) are the same code: a request
// that finds no free slot among the ready replicas waits in the activator and, when
// a replica becomes ready (Activator.SetReady, from the model) or a slot frees
// (Hold.Done, after the instant the request ended), goes to the balancer's pick, not
// to the queue of the replica it would have been pinned to. The run calls
// Ticket.Expire at each held request's deadline and Ticket.Cancel when its client
// gives up; the activator wakes the loop (autoscale.Loop.Wake, and a step at once,
// as Loop.Run steps on a wake) and passes the ready count on (Loop.SetReady). The
// summary's [HoldSummary] counts the held requests, their hold times and the 503s,
// and checks each 503 sent with no replica ready against the true remaining cold
// start. Without a hold queue, requests wait for a first replica in a buffer and
// then queue at the replica the balancer picked.
//
// # Replaying recorded traffic
//
// [ReadTraceFile] reads what a service saw, so last Tuesday can be replayed against
// a new policy before it is deployed: a CSV of arrival timestamps or of per-second
// counts, an access log in the Common or Combined Log Format (with an optional
// trailing latency: nginx's $request_time, Apache's %D or a Go duration), or JSON
// lines with a timestamp (RFC 3339 or Unix seconds or milliseconds) and optional
// latency_ms or duration, tenant and route. The format is told by the file's
// extension (.csv, .jsonl, .ndjson) or else from its first line; [Trace] gives each in
// full. [TraceScenario] replays a log's tenants as a [Mix] and draws service times
// from its latencies. The trace-week standard scenario replays a CSV shipped in
// testdata.
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
