// Package loadreport reads what backends say about their own load — a model server's
// Prometheus /metrics page, or any gauge — and hands it to the balancer and the
// scaling policy, off the request path.
//
// # Scraping /metrics
//
// A [Scraper] GETs each member of a [balancer.Pool] at its URL plus a path
// ([DefaultPath], "/metrics") on an interval ([DefaultInterval], 1 s), a few at once
// ([WithConcurrency]), each within a timeout ([WithTimeout]) and a bounded body
// ([WithMaxBody], 4 MiB after decompression). It parses the page with the Prometheus
// text parser (github.com/prometheus/common/expfmt), maps chosen metrics to a
// [balancer.LoadReport] with a [Mapping], and hands the report to
// [balancer.Pool.ReportLoad]: the report becomes [balancer.Backend.Load], stamped
// with the pool's clock, and its utilization is recorded into the backend's load
// window. The request path never waits for a scrape; a picker or a Lua pick reads
// the latest report with one atomic load. When the pool has a registry
// ([balancer.WithRegistry]) the load window is its scope "backend_load", which a Lua
// on_tick reads as m.scope("backend_load", id, span): value / count is the mean
// utilization of the reports in the span.
//
// A Mapping is a list of [Rule]s, each a metric name, label matchers (exact values,
// as model_name="llama"), how the matching series combine ([Sum] or [Max]) and the
// field it fills, optionally as a per-second rate of a counter. Presets:
//
//	VLLM():   vllm:num_requests_waiting → queue, vllm:num_requests_running → in_flight,
//	          vllm:kv_cache_usage_perc (or vllm:gpu_cache_usage_perc) → kv_cache,
//	          rate(vllm:request_success_total) → rps
//	SGLang(): sglang:num_queue_reqs → queue, sglang:num_running_reqs → in_flight,
//	          sglang:token_usage → kv_cache
//
// Unless a rule fills it, utilization is derived: the KV-cache use, raised to 1
// while requests wait (see [Mapping]).
//
// # Bad pages
//
// A page that times out, answers other than 2xx (a missing page is 404), is larger
// than the bound, does not parse, holds none of the mapped metrics, or holds a
// matched value that is NaN, infinite, negative or past its bound ([MaxKVCache] 1.5,
// [MaxUtilization] 100, [MaxCount] 1e9 for in-flight and queue, [MaxRPS] 1e9) is
// counted by reason ([Scraper.Stats]) and changes nothing: the backend keeps its last
// good report, which ages. A backend that reports saturation forever is recorded
// every time, like any other.
//
// # Staleness
//
// A report's age is now minus its At, which [balancer.Pool.ReportLoad] stamps when
// the report is read; [balancer.Backend.Load] is the only source of it. A report
// older than the scraper's maximum age ([WithMaxAge], three intervals by default:
// two scrapes missed) is stale: [Fresh] and [Scraper.Load] say so, and a picker
// should ignore it. A Lua pick sees the age as load_age (see luabind's
// REFERENCE.md), and luabind.WithLoadMaxAge hides reports past a limit.
//
// # Gauges
//
// A [Gauge] polls one number — from any func(ctx) (float64, error), or a member of
// a JSON document at a URL ([JSON], such as a GPU sidecar's
// {"gpu": {"utilization": 0.83}} at member "gpu.utilization") — on an interval into
// a window of a
// [metrics.Registry], which a Lua on_tick reads with m.scope(scope, key, span): each
// good reading is one observation whose value is the reading, so over a span,
// value / count is the mean reading and count 0 means no fresh reading (stale). See
// [Gauge].
//
// # Costs
//
// Parsing is the Prometheus text parser's, which reads byte by byte: the committed
// 10 KiB vLLM page (75 series) costs 0.3–0.35 ms of CPU and 2,645 allocations
// (86 KB) per parse (BenchmarkParse, on a shared 2-core machine), so 100 backends
// scraped each second take about 3% of a core. None of it is on the request path.
//
// # Example
//
//	s, err := loadreport.New(pool, loadreport.WithMapping(loadreport.VLLM()))
//	if err != nil { ... }
//	go s.Run(ctx)
package loadreport
