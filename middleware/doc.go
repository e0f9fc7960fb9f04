// Package middleware wraps any [http.Handler] so that every request is recorded into the
// metric windows of a [metrics.Registry]: per route, tenant and model, or any keys a
// [Classifier] derives.
//
// It is the data plane's entry point: cheap enough to leave on in production (the
// benchmarks in this package compare it with a bare handler and with otelhttp), it keeps
// the optional ResponseWriter interfaces working (Flusher, Hijacker, ReaderFrom, and
// Unwrap for [http.ResponseController]), times streamed responses to their first flush,
// records a panicking handler as a failure before letting the panic go on, and tells a
// client that went away from a server error.
//
// In front of the handler it can run a [Hook] (where a Lua on_request plugs in) and an
// [Admission]: shedding fractions of routes and priority classes with 503 and a
// Retry-After estimated from the backlog, per-tenant token buckets with 429, a
// concurrency limit, and a bounded priority queue with deadlines. The scaling loop
// drives the admission at run time through its Shed, Throttle and Route actions.
// Those rules are level-triggered and bounded: each expires RuleTTL (10 minutes) after
// it was last set, so a policy re-issues the rules it wants every tick, and each kind
// holds at most MaxRules (10,000); a change costs one shard's copy, not the rule set's.
//
// An admission can also find its limits by itself: adaptive concurrency limits per
// route and priority class ([WithAdaptiveLimit], [Vegas], [Gradient2], [AIMD]) shared
// so that the lowest class is shed first; success-rate admission that stops sending a
// failing backend what it would fail ([WithSuccessRate], Google SRE's client-side
// throttling); and self-protection that sheds whole classes when the gateway's own
// heap, goroutines or open requests pass their limits ([WithSelfProtection]). Limits,
// their rejections and the queue's depth and wait are windows ([metrics.ScopeLimit],
// [metrics.ScopeQueue]) the scaling loop and Lua read.
//
// After every request, served or rejected, it can run a [ResponseHook] (the log phase,
// where a Lua on_response plugs in, through luabind/luahttp) with the status, latency and
// bytes sent and the values the handler attached with [SetValue]: tokens used, cost, a
// cache hit. Without a response hook the middleware keeps no values.
//
// A request with a model, or one whose route was re-routed, carries its final route and
// model (after the hook and the admission had their say) as a [balancer.Destination] in
// its context, which a [balancer.Proxy] behind the middleware follows: a Lua
// on_request that returns {model = "llama-8b"}, or a route action from "llama-70b" to
// "llama-70b-canary", changes which backends serve the request with no dispatch code in
// the host. That costs the request two small allocations (the context value and the
// request's shallow copy); requests without a model pay nothing.
//
// An [Activator] holds requests for a target without ready capacity (scaled to zero,
// or every ready replica busy) in a bounded priority queue (count and bytes, a maximum
// wait), wakes the scaling loop at once ([Scaler], satisfied by autoscale.Loop) with
// the replicas the held demand needs, and releases the held requests as replicas turn
// ready ([Activator.SetReady], [Activator.Discovered]) no faster than their concurrency
// allows. Beyond its bounds a request gets 503 with [HoldHeader] and a Retry-After of
// the predicted remaining cold start plus the queue's drain time; a released one carries
// [ColdStartHeader]. [Activator.TryAcquire] applies the same rules without blocking: a
// request that must wait gets a [Ticket] and its verdict later through a callback, for
// an event loop or a single-goroutine simulation (autoscale/simulate).
//
// Usage:
//
//	reg, _ := metrics.NewRegistry()
//	mw, err := middleware.New(middleware.WithRegistry(reg))
//	if err != nil {
//		return err
//	}
//	http.ListenAndServe(":8080", mw(mux))
//	...
//	w, _ := reg.Lookup(metrics.ScopeRoute, "GET /checkout")
//	fmt.Println(w.Snapshot(10*time.Second).P99)
package middleware
