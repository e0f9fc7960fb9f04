package balancer_test

import (
	"fmt"
	"testing"
)

// BenchmarkPickDoneScale is BenchmarkPickDone over pools of 10 to 100,000 backends:
// how a request's pick and completion grow with the pool. Round robin, P2C and
// peak-EWMA touch a constant number of backends per request, so their figure should
// stay flat but for cache misses as the backends outgrow the caches; the bounded-load
// hash searches its ring, O(log n).
//
//	go test -run '^$' -bench PickDoneScale ./balancer
func BenchmarkPickDoneScale(b *testing.B) {
	for _, a := range benchAlgorithms {
		switch a.name {
		case "RoundRobin", "P2C", "PeakEWMA", "Hash":
		default:
			continue
		}
		for _, n := range []int{10, 100, 1000, 10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/backends=%d", a.name, n), func(b *testing.B) {
				benchPickDone(b, benchPool(b, n, a.alg()), false)
			})
		}
	}
}
