// Package redisshare merges the metric windows of several gateway replicas through
// Redis, so that the leader's scaling loop decides on the traffic of the whole cluster,
// not on its own share of it.
//
// Every replica runs a [Publisher]: each tick it summarizes its registry's windows and
// writes the payload under its own key with a TTL. The leader's loop reads through a
// [Merger] (autoscale.WithReader(merger.Reader)): it fetches every live replica's
// payload and merges them into a [View], which reads exactly as a registry's windows do
// (it is an autoscale.ScopeReader, so the loop and Lua's m see no difference) and names
// the replicas it merged (autoscale.SourceReader: the loop records them in each
// decision).
//
// # What a payload holds
//
// Per scope, the TopN windows with the most requests (default 1,000) and the sum of the
// others under [OtherKey]; per window and per configured span ([Config.Spans], default
// the whole window): the counts (requests, errors, canceled, rejected), bytes, the sum
// of user values, requests in flight and their maximum, the time-weighted concurrency,
// and the latency histogram ([metrics.Histogram], about two bytes per non-empty
// sub-bucket). The body is deflated. A payload of 1,000 windows of a minute each is
// about 48 KiB (TestPayloadSize, BenchmarkPayload1000); the format is versioned
// ([FormatVersion]) and a payload of a newer version is skipped, not misread.
//
// # How the merge is exact
//
// Counts, bytes, values, in-flight requests and concurrency add up. The histograms add
// up bucket by bucket, so the merged quantiles are the ones a single window holding all
// the replicas' observations would report: within [metrics.HistogramRelativeError] of
// the exact quantiles of the raw observations (TestMergeExact checks both). Two figures
// are bounds, not exact: MaxInFlight is the sum of the replicas' maxima, and a key that
// is in one replica's top N but in another's remainder is split between the key and
// [OtherKey].
//
// # Failure
//
// A replica that stops publishing drops out once its payload's TTL passes (Redis
// expires the key by its own clock, so clocks skewed between replicas do not matter).
// A payload that cannot be merged (a newer format, a wrong type under the key, corrupt
// bytes) is listed in [View.Skipped] and logged once. When Redis cannot be read within
// the deadline, [Merger.Reader] returns the local registry's windows, with the source
// named "<replica> (local fallback)" in the decision record, and logs the change once.
package redisshare
