// Package balancertest provides test helpers for code that uses package balancer:
// real HTTP backends whose latency and status a test sets, pools on a manual clock
// with a seeded random source, and endpoint lists.
//
// A backend given a [metrics.ManualClock] advances it by its latency instead of
// sleeping, so that a test sending one request at a time sees exact latencies
// without depending on the machine's load:
//
//	clock := metrics.NewManualClock(time.Unix(0, 0))
//	a := balancertest.NewServer(t, "a", balancertest.WithClock(clock))
//	a.Set(20*time.Millisecond, http.StatusOK)
//	pool := balancertest.NewPool(t, []balancer.Endpoint{a.Endpoint()},
//		balancer.WithClock(clock), balancer.WithAlgorithm(&balancer.PeakEWMA{}))
package balancertest
