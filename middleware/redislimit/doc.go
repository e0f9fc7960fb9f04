// Package redislimit holds tenant limits cluster-wide: several gateway replicas share
// one token bucket per tenant kept in Redis, so a tenant limited to 300 requests per
// second gets 300 across the cluster, not 300 per replica. A [Limiter] is a
// [middleware.TenantLimiter]: give it to the admission with
// middleware.WithTenantLimiter. The same type holds token budgets (an LLM tenant's
// tokens per second): call [Limiter.AllowN] with the request's estimated tokens.
//
// # The request path never waits on Redis
//
// A request consults only a local allowance: one atomic decrement of the tenant's
// leased tokens (BenchmarkAllow). A background refresher ([Limiter.Run]) tops the
// allowances up from Redis every Refresh (default 100 ms), and at once when a
// tenant's allowance runs out (at most four times per Refresh). Each refresh is one
// pipeline: a heartbeat in a sorted set of live replicas, then, for every tenant whose
// allowance is below what it needs, one call of a Lua token-bucket script (EVALSHA,
// loaded once with SCRIPT LOAD and loaded again after a SCRIPT FLUSH) that refills the
// tenant's bucket by Redis's own clock (TIME, so clocks skewed between replicas do not
// matter) and grants up to the batch asked for.
//
// # Batching and the overshoot bound
//
// A replica asks for twice the tokens its tenant used over the last refresh, less what
// it still holds, and at most MaxBatch (default: Rate × Refresh, the whole limit's
// share of one refresh, at least 1), or the largest single ask it denied since the last
// refresh when that is more (a token budget's request may need more at once; never more
// than Burst, so an ask above Burst is never allowed, as with a local token bucket).
// Tokens leave the Redis bucket when granted, so while Redis answers, the tokens
// granted cluster-wide over any interval T are at most Burst + Rate×T, and the units
// admitted at most
//
//	Burst + Rate×T + N×B
//
// for N replicas, B the largest batch (MaxBatch, or the largest ask): the allowances
// they held at the start of the interval come on top (TestClusterLimit checks it).
// The price is that tokens a replica holds while its share of the traffic falls are
// not available to the others: at most MaxBatch per replica and tenant.
//
// # What the limit does not promise
//
// The cluster-wide total holds; how it divides among replicas does not follow each
// replica's share of the traffic. While a tenant asks for more than its limit, the
// bucket's tokens go to whichever replica's refresh reaches Redis first, so a replica
// that sees 80% of a tenant's requests may admit fewer of them than one that sees 15%
// (one run admitted 134, 252 and 195 requests on replicas offered 80%, 15% and 5%).
// Every replica throttles its excess with the same 429, so a client sees one limit; a
// load balancer that spreads a tenant's requests evenly also spreads its admissions
// evenly.
//
// # When Redis is down or slow
//
// A refresh that fails, or does not answer within Deadline (default Refresh / 2; the
// call is abandoned, not waited for), puts the limiter in fallback: each tenant's
// allowance is then refilled locally at Rate / N up to Burst / N, where N is the number
// of live replicas the last heartbeat counted, or Config.Replicas when Redis never
// answered. The change of state is counted ([Stats.Fallbacks]) and logged once, at
// Warn; the return is logged at Info. In fallback every refresh probes Redis; the first
// that succeeds ends the fallback, so limits converge within one refresh of Redis
// returning. A tenant whose bucket key holds something else (a wrong type, a newer
// format) falls back alone, counted in [Stats.KeyErrors] and logged once per key.
package redislimit
