// Package metrics records request observations into sliding time windows and reads them
// back as immutable snapshots: counts, rates, error rates, latency quantiles, bytes, a
// user value (tokens, cost), in-flight requests and time-weighted concurrency.
//
// The pieces:
//
//   - [Window]: a ring of fixed-width buckets (1 s × 60 by default). Recording is
//     lock-free and allocation-free; reading returns a [Snapshot] over any span up to the
//     window's length.
//   - [Histogram]: the mergeable log-linear latency histogram behind the quantiles, with a
//     relative error of at most 1.6% ([HistogramRelativeError]).
//   - [EWMA] and [PeakLatency]: lock-free, time-decayed moving averages, the latter as
//     Finagle's and Linkerd's balancers use.
//   - [Registry]: windows by (scope, key) — route, tenant, backend, model, target or any
//     scope of the caller's — each scope bounded by an LRU.
//   - [Clock], [SystemClock], [ManualClock]: injected time, so tests and the simulator
//     never sleep.
//
// OpenTelemetry export lives in the sub-package otelmetrics, so this package depends on
// nothing but golang-lru.
//
// # Costs
//
// On the machines this project is built on an uncontended atomic add costs about 10 ns
// and a monotonic clock read about 50 ns, so the record path is counted in atomics: two
// per observation ([Window.RecordAt]), one more each for non-zero bytes and user value,
// and two more for in-flight accounting ([Window.StartAt], [Window.DoneAt]). The mean
// latency is read from the histogram rather than kept as a sum, to save an atomic per
// request. The benchmarks in this package measure each path.
//
// # Memory
//
// A bucket of a default window allocates one 128-byte page of histogram counters for
// each power of two of latency it sees (a service whose requests take 1–500 ms uses
// about ten), plus about 400 bytes of counters. A busy window of 60 buckets therefore
// holds some 115 KB; an idle or rarely used one a few KB.
//
// A compact window ([WindowConfig.Compact]) keeps every counter of every bucket in 64
// bytes and its latencies in five coarse histograms of 40 bytes per octave, each shared
// by a quarter of the window's buckets: a busy window of the default shape holds about
// 7.3 KB in a registry, so 100,000 busy tenants take about 700 MiB (TestCompactMemory
// measures both). What it gives up is in its latency statistics only: quantiles and
// the mean are within [CompactRelativeError] (4.4%) instead of [HistogramRelativeError]
// (1.6%), and they and the maximum cover every whole histogram the span overlaps, so
// a latency leaves them up to [WindowConfig.HistogramBuckets] − 1 buckets (14 s by
// default) after it left the counts. Its whole-window reads walk the buckets rather
// than keep running totals: about 2.5 µs for the default shape
// (BenchmarkSnapshotCompact), against 3–5 µs for a default window that moved a bucket.
//
// Use the default layout for the few keys whose latency drives decisions to the
// second: routes, backends, targets. Use the compact one for scopes with many keys
// (tenants, models, API keys), where memory grows with the keys and a p99 within 5%,
// a quarter of the window late, is enough to throttle or bill on. Bound such a scope
// with [WithScopeCapacity] as well, and set its shape with [WithScopeWindow]:
//
//	metrics.WithScopeWindow(metrics.ScopeTenant, metrics.WindowConfig{Compact: true})
package metrics
