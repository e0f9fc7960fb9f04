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
// a memory floor (see memoryFloor): the atomic operations a request makes, at the
// cache lines it touches, in memory as large as the pool's heap, visiting the backends
// in the algorithm's order (in turn for round robin, at random for the others).
// "floor-ns/op" is that figure and "x-floor" the ratio of the pick's figure to it: a
// flat x-floor says the growth is the machine's memory, not the algorithm.
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
				benchPickDoneFloor(b, n, a.name, a.alg())
			})
		}
	}
}

// benchPickDoneFloor runs benchPickDone over a pool of n backends serially and reports
// beside it the memory floor of the same number of requests, measured after it in the
// same run, and the pool's heap per backend. x-floor is the ratio of wall times and
// x-floor-cpu of CPU times (the process's): on a machine shared with other work the
// second is the steadier.
func benchPickDoneFloor(b *testing.B, n int, name string, alg balancer.Algorithm) {
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := benchPool(b, n, alg)
	warmWindows(p)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	perBackend := max(int(after.HeapAlloc-before.HeapAlloc)/n, 256)
	cpu := benchPickDone(b, p, false)
	b.StopTimer()
	elapsed := b.Elapsed()
	f := floorShape{
		random: name != "RoundRobin" && name != "SmoothWeighted",
		second: name == "P2C" || name == "PeakEWMA",
		total:  name == "Hash",
	}
	floor, floorCPU := memoryFloor(n, perBackend, f, b.N)
	b.ReportMetric(float64(floor)/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(elapsed)/float64(floor), "x-floor")
	if cpu > 0 && floorCPU > 0 {
		b.ReportMetric(float64(cpu)/float64(floorCPU), "x-floor-cpu")
	}
	b.ReportMetric(float64(perBackend), "heap-B/backend")
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

// floorShape says which of the floor's optional operations an algorithm's request
// makes.
type floorShape struct {
	random bool // backends visited at random, not in turn (which costs one shared add)
	second bool // a load of a second backend (power of two choices)
	total  bool // the pool's in-flight count up and down, on one shared line (Hash)
}

// memoryFloor returns the time ops requests' bare memory traffic takes, wall and CPU
// (0 when the platform does not say): per request,
// the atomic operations a Pick and Done make, at the lines they make them on. Six are
// every algorithm's: the in-flight count up and down and the peak-EWMA's update on the
// backend, and the window's head, the bucket's count and the histogram's counter. To
// them the floor adds the round-robin counter (one shared line) when the backends are
// taken in turn, a load of a second backend for the power-of-two pickers, and for the
// hash the pool's in-flight count up and down (one shared line, see LoadAware). As the
// pool's state is laid out, each of the four objects a request writes lives in an
// array of its own kind (Go allocates objects of one size from one span), here four
// arenas of n slots that share the pool's heap per backend; a request visits slot k of
// each, k taken in turn or at random. The floor's loads are independent of each other,
// where the pool's follow pointers (backend → window → ring → bucket → page), so the
// misses that overlap here cannot overlap there.
func memoryFloor(n, perBackend int, f floorShape, ops int) (wall, cpu time.Duration) {
	const line = 64
	slot := max(perBackend/4/line, 1) * line / 8 // uint64s per slot
	var arenas [4][]atomic.Uint64
	for j := range arenas {
		arenas[j] = make([]atomic.Uint64, n*slot)
	}
	var shared struct {
		rr    atomic.Uint64
		_     [56]byte
		total atomic.Int64
	}
	x := uint64(0x9e3779b97f4a7c15)
	next := func() int { // xorshift64*: as cheap as the pool's own random source
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		return int((x * 0x2545f4914f6cdd1d >> 32) * uint64(n) >> 32)
	}
	var sink uint64
	run := func(from, to int) {
		for i := from; i < to; i++ {
			k := i % n
			if f.random {
				k = next()
			} else {
				shared.rr.Add(1)
			}
			o := k * slot
			if f.second {
				sink += arenas[0][next()*slot].Load()
			}
			arenas[0][o].Add(1)
			if f.total {
				shared.total.Add(1)
			}
			arenas[0][o+1].Add(1)
			arenas[1][o].Add(1)
			arenas[2][o].Add(1)
			arenas[3][o].Add(1)
			arenas[0][o].Add(^uint64(0))
			if f.total {
				shared.total.Add(-1)
			}
		}
	}
	// Warm up as benchPickDone does (2n requests), so that the arenas' pages are
	// mapped and the lines of a small pool cached, as the pool's are.
	run(0, 2*n)
	cpu0, cpuOK := processCPU()
	start := time.Now()
	run(2*n, 2*n+ops)
	wall = max(time.Since(start), 1)
	if cpu1, ok := processCPU(); ok && cpuOK && cpu1 > cpu0 {
		cpu = cpu1 - cpu0
	}
	runtime.KeepAlive(sink)
	return wall, cpu
}
