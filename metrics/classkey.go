package metrics

import "strconv"

// Scopes the middleware's admission records into, keyed by [ClassKey].
const (
	// ScopeLimit holds one window per adaptive concurrency limit (route, priority
	// class and, when limits are per tenant, tenant). Each update of the limit records
	// one observation whose Value is the class's limit and whose Latency is the
	// window's mean RTT; each request the limit turns away records a rejected one.
	// So over a span, Rejected counts the limit's rejections and
	// Value / (Count − Rejected) is its mean limit. Lua reads both through
	// m.limit(route, class).
	ScopeLimit Scope = "limit"
	// ScopeQueue holds one window per (route, priority) of the admission queue: a
	// request is in flight in it while it waits, and its wait ends as an observation
	// (Latency the wait; rejected when it timed out or was pushed out). So InFlight is
	// the queue's depth now, Concurrency its mean depth, P99 the wait's 99th
	// percentile.
	ScopeQueue Scope = "queue"
	// ScopeDeferred holds one window per route of a deferrer (middleware.Deferrer):
	// a request is in flight in it from its 202 until its replay's result is stored,
	// which ends it as an observation (Latency the whole delay, an error when the
	// result is a 5xx); a request the store had no room for records a rejected one.
	// So InFlight is the backlog of deferred work, Rejected the requests turned away
	// because the store was full.
	ScopeDeferred Scope = "deferred"
)

// ClassKey is the key of a (route, priority class) window in [ScopeLimit] and
// [ScopeQueue]: "route|class", or "route|class|tenant" when tenant is not empty.
func ClassKey(route string, class int, tenant string) string {
	k := route + "|" + strconv.Itoa(class)
	if tenant != "" {
		k += "|" + tenant
	}
	return k
}
