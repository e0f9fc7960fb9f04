// Package balancer spreads requests over a pool of backends: algorithms, passive and
// active health, run-time weights, and a reverse proxy that picks, proxies, retries
// safely and feeds per-backend metric windows.
//
// A [Pool] holds [Backend]s, made from [Endpoint]s by [Pool.Update] (from any
// [Discovery]; [Static] is a fixed list). Membership, weights and health live in an
// immutable snapshot swapped atomically, so [Pool.Pick] is one atomic load, the
// algorithm's [Picker], and one atomic add; per-backend live state (in flight,
// peak-EWMA latency, failure counters, the metrics window) survives every swap.
// [Result.Done] ends a request, as grpc-go's PickResult.Done.
//
// Algorithms ([Algorithm]), each citing its source: [RoundRobin], [SmoothWeighted]
// (nginx), [Random], [P2C] (least request, Envoy and grpc-go; the default), [PeakEWMA]
// (Finagle, Linkerd), [Hash] (consistent hashing with bounded loads, Mirrokni,
// Thorup and Zadimoghaddam 2018) and [Scoring] (filter, score and pick for model
// servers, after the Gateway API inference extension and llm-d). A [PickFunc] plugs in a custom pick, such as a Lua
// pick(req, backends) function; an invalid answer falls back to the algorithm.
// [SlowStart] ramps new backends up (Envoy).
//
// Health: [Outlier] configures passive outlier detection (consecutive 5xx, consecutive
// gateway failures, success-rate and latency outliers, exponential back-off, a maximum
// ejected percentage); [Pool.Eject] and [Pool.SetWeight] are what the scaling loop
// calls (weight 0 drains a backend); [HealthChecker] runs optional active checks.
//
// [Proxy] is a [net/http.Handler] around a [net/http/httputil.ReverseProxy]
// (Rewrite, streaming, X-Forwarded-*), with retries of failed connections for
// idempotent requests and 502/503/504 mapping.
//
// # Models, routes and fallback
//
// Backends carry the models they serve in the [LabelModel] label ("model":
// "llama-70b", or a comma-separated list). The pool builds a picker per model with each
// snapshot, so a [Request] whose Model is set is placed on a ready backend of its
// model in one more map lookup (no allocation; BenchmarkPickModel); a model with no
// ready backend — unknown, drained, cooled down, scaled to zero — is [ErrNoBackend],
// which the proxy answers with 503 and Retry-After, never 502. A model's backends do
// not panic-route while others in the pool are healthy: an ejected model is a model
// without a live backend.
//
// The [Proxy] reads a request's model and route from the [Destination] the layer in
// front put in its context (the middleware package does, after its hook and
// admission: that is how a Lua on_request's model or route, or a route action, changes
// where a request goes), or else from [WithModel]. [WithRoute] gives a route its own
// pool. [WithFallback] adds ordered fallback chains per model (large → medium → a
// hosted provider) on 429, 5xx and timeouts, with a retry budget per class of
// failure, a cool-down of the failing backend, the window [ScopeFallback] and the
// response header [FallbackHeader] recording each step (see [Fallback]).
//
// # Load reports
//
// An active health check ([HealthCheck]) that passes may carry a load report, read
// from a response header (Endpoint-Load-Metrics by default) or, failing that, from a
// JSON body (Content-Type application/json). The header holds comma-separated
// key=value pairs, optionally after "TEXT " (as the text form of gRPC's ORCA reports):
//
//	Endpoint-Load-Metrics: utilization=0.73, in_flight=12, queue=4, rps=118.5, kv_cache=0.6
//
// and the JSON body the same keys:
//
//	{"utilization": 0.73, "in_flight": 12, "queue": 4, "rps": 118.5, "kv_cache": 0.6}
//
// utilization is a busy fraction (usually 0..1), in_flight and queue are counts of
// requests being served and waiting, rps is a rate per second, kv_cache a model
// server's KV-cache use (0..1). Every key is optional;
// unknown keys are ignored; negative or non-finite values make the report invalid
// (counted in [HealthStats.BadReports] and ignored). The latest report is
// [Backend.Load]; each is also recorded into the backend's load window
// ([Backend.LoadWindow]; scope [ScopeBackendLoad] of the pool's registry when it has
// one) as an observation whose Value is the utilization and whose latency is the
// check's, so that Snapshot.Value / Snapshot.Count is the mean utilization over a span.
// Any other source (a scraper of the backend's /metrics page, a sidecar) hands its
// reports to [Pool.ReportLoad], with the same effect.
//
// # Scoring
//
// [Scoring] picks as the Kubernetes Gateway API inference extension's endpoint picker
// and llm-d's scheduler do: it filters out saturated backends (a fresh load report
// with a queue above [ScoringConfig.SaturatedQueue] or KV-cache use above
// SaturatedKVCache; when all are saturated it keeps them all), scores the rest with
// weighted scorers — queue depth, KV-cache use, requests in flight, peak-EWMA
// latency, each normalised over the candidates, and prefix affinity — and picks the
// best, or by power of two choices among the top k. A report older than MaxReportAge
// counts as none, which scores the middle (0.5). [Scoring.SetWeights] changes the
// [Weights] at run time (one atomic pointer read per pick); [Scoring.SetScoreWeights]
// is the same for the scaling loop's score_weights action (register the Scoring with
// autoscale.WithScorer), so a Lua policy re-weighs the scorers from what it reads.
//
// Prefix affinity reads [Request.Prompt] (the proxy sets it with [WithPrompt];
// middleware/llm's PromptPrefix reads it from the LLM request body), hashes its
// leading blocks in a chain as vLLM's prefix cache does, and prefers the backend
// whose bounded set of recently served blocks holds the longest prefix of them,
// while that backend's load is within an absolute and a relative margin of the
// least loaded (SGLang's cache-aware router's rule); otherwise load decides. Over
// 1,000 backends that all report their load a pick costs about 24 µs of CPU here
// without a prompt and 33 µs with a 2 KB one, without allocating (it scores every
// candidate; [ScoringConfig.Sample] bounds that: about 3 µs for 64), against P2C's
// tens of nanoseconds: it is meant for model servers, whose requests take seconds
// (BenchmarkScoring; wall times on this shared machine were 1.5–3× the CPU times).
//
// # Bad input
//
//   - An empty pool, or one whose backends are all drained: Pick returns
//     [ErrNoBackend]; the proxy answers 503 with Retry-After.
//   - Every backend ejected or failing health checks: panic routing picks among all of
//     them (see [WithoutPanic] for [ErrNoBackend] instead). Passive ejection and
//     [Pool.Eject] never eject more than [Outlier.MaxEjectionPercent] (at least one).
//   - Duplicate ids, invalid URLs, weights out of range in [Pool.Update]: an error
//     wrapping [ErrInvalidEndpoint] listing every problem; the pool is unchanged.
//   - [Endpoint.Weight] 0 means weight 1; [Pool.SetWeight] with 0 drains; negative
//     weights are errors.
//
// # Example
//
//	pool, err := balancer.New(balancer.WithAlgorithm(&balancer.PeakEWMA{}))
//	if err != nil { ... }
//	err = pool.Update([]balancer.Endpoint{
//		{ID: "a", URL: "http://10.0.0.1:8080"},
//		{ID: "b", URL: "http://10.0.0.2:8080", Weight: 2, Labels: map[string]string{"zone": "b"}},
//	})
//	proxy, err := balancer.NewProxy(pool, balancer.WithKey(balancer.HeaderKey("X-Tenant")))
//	http.ListenAndServe(":8080", proxy)
//
// # Costs
//
// Measured with bench_test.go on the 2-core machine shared with other builds on which
// this was written, over 1,000 backends (medians of 6–10 runs; wall times varied by
// ±50% with the neighbours, so the benchmarks also report CPU time per op). Pick alone
// costs about 20–25 ns for round robin, smooth weighted and random, 30–65 ns for P2C,
// 50–100 ns for peak-EWMA (it decays two averages) and 40–90 ns for bounded-load
// hashing. Pick and Done together cost 75–90 ns of CPU for round robin and smooth
// weighted, which walk the backends in order, and 200–300 ns for random, P2C and
// peak-EWMA, whose random choices over 1,000 backends miss the cache on the backend,
// its window and its histogram page; 120–130 ns for hashing. Done's own work is an
// atomic add, the peak-EWMA update of a success (a compare-and-swap and an
// exponential, ~15–50 ns) and the window record ([metrics.Window.RecordAt], ~25–75 ns).
// Nothing allocates. From two goroutines the CPU per op stays within 1.2× of one
// goroutine's, except for peak-EWMA (~1.5×) and [Hash] (~2.3×: the pool-wide in-flight
// count that the bound needs is one shared cache line; see [LoadAware]).
//
// In the proxy the balancer adds about 1 µs of CPU per request to
// httputil.ReverseProxy's own 4–6 µs (BenchmarkProxyHandler, profiled); a whole
// loopback request (client, proxy, backend) costs 140–180 µs of CPU here, and
// internal/proxyload measured the proxy at 0.95–1.0 of a bare ReverseProxy's
// CPU-equivalent throughput (A/A control: 0.99–1.0).
package balancer
