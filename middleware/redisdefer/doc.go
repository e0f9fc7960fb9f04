// Package redisdefer is a [middleware.DeferStore] on Redis: the deferred requests of
// a gateway, and their results, kept where every replica and the next process see
// them. Give it to the deferrer with middleware.WithDeferStore:
//
//	store, err := redisdefer.New(client, redisdefer.Config{MaxRequests: 50_000, RunTimeout: 5 * time.Minute})
//	d, err := middleware.NewDeferrer(cfg, middleware.WithDeferStore(store))
//
// # What it keeps, and where
//
// Each request is a hash under Prefix+":e:"+id: its state, tenant, size, the request
// (JSON, format version 1) while pending, and the result once done. Pending ids wait
// in a list (Prefix+":pending", first in, first out); running ids in a sorted set by
// the time they were claimed (Prefix+":running"); answered ids in a sorted set by
// expiry (Prefix+":expiry"); the count and bytes held in a hash (Prefix+":meta"),
// bounded by MaxRequests and MaxBytes as [middleware.MemoryStore] bounds its own: a
// request counts from Put until its result is swept, its body only until it is
// claimed. Every operation is one Lua script (EVALSHA, loaded again after a SCRIPT
// FLUSH), so concurrent gateways never claim one request twice nor lose a count.
//
// # Delivery guarantees
//
// Pending requests survive the gateway: a restarted process, or another replica,
// claims them. A request that was running when its gateway died is the choice of
// RunTimeout. Zero (the default) leaves it running until an operator removes it: at
// most once, as the memory store. Above zero, Sweep offers it again once it has run
// that long without a result: at least once — a replay that was merely slow runs
// twice, so make deferred requests idempotent (an idempotency key the backend checks)
// before turning it on. Redis's own durability (AOF, replicas) bounds what a Redis
// failure loses. A store whose Redis is down returns errors: the deferrer then answers
// as the admission would have, and polls fail with 503 (see middleware.Deferrer).
//
// Several gateways may share a store: any of them replays a pending request and
// answers its polls. Each deferrer's Pending and Running counts are then its own
// (accepted here, less claimed here), and [Store.Len] counts the whole store. In a
// Redis Cluster, give a Prefix with a hash tag ("{defer}") so that the store's keys
// share a slot, as its scripts need.
//
// The clocks: expiry times are the deferrer's (given to Complete and Sweep); the
// running timeout uses Redis's TIME, so gateways with skewed clocks agree on it.
package redisdefer
