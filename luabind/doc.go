// Package luabind runs request- and tick-level policy scripts written in Lua in a
// sandboxed, pooled gopher-lua runtime, and binds them to the library: on_request,
// pick, on_response and on_tick hooks, the autoscale action constructors, and
// read-only views of requests, backends and metric windows.
//
// A script is compiled once (its *lua.FunctionProto shared) and run in a bounded pool
// of VMs, each opened with an allowlist (base without dofile, loadfile, load,
// loadstring and require of files; string; table; math). A VM whose call errored or
// overran its budget is discarded, never reused. Failures follow a per-hook
// [FailMode] (fail-open by default), are counted in [Runtime.Stats] and in the OTel
// counter luabind.hook.failures, and are logged with slog at most once per interval.
// [Runtime.Reload] compiles and self-tests a new script before swapping it in
// atomically. REFERENCE.md, next to this package, lists every hook, field, function,
// action, error and limit, and a test keeps it true.
//
// # Costs
//
// Measured on the 2-core build machine (shared; figures vary by ±25%): an on_request
// call with a five-line decision costs about 490–620 ns and no allocation without a
// time budget, and about 860 ns with one (the budget makes gopher-lua check a context
// at every instruction, and arms a reused timer per call). An on_tick that reads the
// rate and p99 of 1,000 windows with the aggregates m.sum and m.max costs about 0.05 ms
// over precomputed snapshots, 0.12 ms over 1,000 live 60-bucket windows read again
// within their second, and 0.7 ms when every window moved on by a bucket since the last
// tick (what a loop ticking every second sees: each read then gives back the bucket
// that left and adds the one that completed, in cold memory). The same on_tick as a
// Lua loop over m.keys costs 0.65, 1.1 and 1.8 ms: gopher-lua charges about 0.5 µs a
// window for the three Go calls (m.backend and two field reads; BenchmarkOnTickParts).
// Reloading a 500-line script costs about 4 ms. See bench_test.go.
//
// # Example
//
//	rt, err := luabind.New(luabind.FromString("policy.lua", `
//	    function on_request(req)
//	      if req.tenant == "" then return { status = 401 } end
//	    end`))
//	if err != nil { ... }
//	defer rt.Close()
//	d, err := rt.OnRequest(ctx, &luabind.Request{Path: "/", Tenant: "acme"})
//
// A [Runtime] is an autoscale.Policy (its on_tick), and [Runtime.BalancerPick] adapts
// its pick to a balancer pool. Package luatest runs a script's Lua unit tests as Go
// subtests; the harness lives there, not in the runtime, and reaches the VMs through
// the internal package seam.
package luabind
