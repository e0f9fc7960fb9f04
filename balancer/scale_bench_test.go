package balancer_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// BenchmarkPickDoneScale is BenchmarkPickDone over pools of 10 to 100,000 backends:
// how a request's pick and completion grow with the pool. Round robin, P2C and
// peak-EWMA touch a constant number of backends per request, and the bounded-load
// hash searches its ring, O(log n); what grows beyond that is cache and TLB misses
// once the backends' state outgrows the caches.
//
// To tell the two apart, each run also measures, for the same number of operations,
// a memory floor: the atomic adds a request makes (see memoryFloor) at the cache
// lines it touches, in an arena as large as the pool's heap, one region per backend,
// visiting the regions in the algorithm's order (in turn for round robin, at random
// for the others). "floor-ns/op" is that figure and "x-floor" the ratio of the
// pick's figure to it: a flat x-floor says the growth is the machine's memory, not
// the algorithm.
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
				var before runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				p := benchPool(b, n, a.alg())
				warmWindows(p)
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				perBackend := max(int(after.HeapAlloc-before.HeapAlloc)/n, 256)
				benchPickDone(b, p, false)
				b.StopTimer()
				elapsed := b.Elapsed()
				floor := memoryFloor(n, perBackend, a.name != "RoundRobin", a.name == "P2C" || a.name == "PeakEWMA", b.N)
				b.ReportMetric(float64(floor)/float64(b.N), "floor-ns/op")
				b.ReportMetric(float64(elapsed)/float64(floor), "x-floor")
				b.ReportMetric(float64(perBackend), "heap-B/backend")
			})
		}
	}
}

// warmWindows records into every backend's window a latency in each octave the
// benchmark's requests take (0 to 63 ms), so that the timed requests find the
// histogram pages of the current bucket made, as in a pool that has been serving.
func warmWindows(p *balancer.Pool) {
	now := time.Now()
	for _, bk := range p.Backends() {
		for ms := range 64 {
			bk.Window().RecordAt(now, metrics.Observation{Latency: time.Duration(ms) * time.Millisecond})
		}
	}
}

// memoryFloor returns the time ops requests' bare memory traffic takes: per request,
// the six atomic adds a round-robin Pick and Done make (the in-flight count up and
// down and the peak-EWMA's update on the backend, the window's head, the bucket's
// count, the histogram's counter; the round-robin counter is one shared line), plus,
// for the power-of-two pickers, a load from a second backend. As the pool's state is
// laid out, each of the four objects a request writes lives in an array of its own
// kind (Go allocates objects of one size from one span), here four arenas of n slots
// that share the pool's heap per backend; a request visits slot k of each, k taken in
// turn or at random.
func memoryFloor(n, perBackend int, random, second bool, ops int) time.Duration {
	const line = 64
	slot := max(perBackend/4/line, 1) * line / 8 // uint64s per slot
	var arenas [4][]atomic.Uint64
	for j := range arenas {
		arenas[j] = make([]atomic.Uint64, n*slot)
	}
	var rr atomic.Uint64
	x := uint64(0x9e3779b97f4a7c15)
	next := func() int { // xorshift64*: as cheap as the pool's own random source
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		return int((x * 0x2545f4914f6cdd1d >> 32) * uint64(n) >> 32)
	}
	var sink uint64
	start := time.Now()
	for i := range ops {
		k := i % n
		if random {
			k = next()
		} else {
			rr.Add(1)
		}
		o := k * slot
		if second {
			sink += arenas[0][next()*slot].Load()
		}
		arenas[0][o].Add(1)
		arenas[0][o+1].Add(1)
		arenas[1][o].Add(1)
		arenas[2][o].Add(1)
		arenas[3][o].Add(1)
		arenas[0][o].Add(^uint64(0))
	}
	d := time.Since(start)
	runtime.KeepAlive(sink)
	return max(d, 1)
}
