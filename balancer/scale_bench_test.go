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
	cpu0, cpuOK := processCPU()
	f := floorShape{
		random: name != "RoundRobin" && name != "SmoothWeighted",
		second: name == "P2C" || name == "PeakEWMA",
		total:  name == "Hash",
	}
	floor := memoryFloor(n, perBackend, f, b.N)
	b.ReportMetric(float64(floor)/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(elapsed)/float64(floor), "x-floor")
	if cpu1, ok := processCPU(); ok && cpuOK && cpu > 0 && cpu1 > cpu0 {
		b.ReportMetric(float64(cpu)/float64(cpu1-cpu0), "x-floor-cpu")
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
	second bool // a load of a second backend's hot state (power of two choices)
	total  bool // the pool's in-flight count up and down, on one shared line (Hash)
}

// memoryFloor returns the time ops requests' bare memory traffic takes. A request's
// state is laid out as the pool lays it out: the backends' hot states (in flight, the
// failure counters, the peak-EWMA; package-internal type hot) packed at 64 bytes a
// backend, and the rest of each backend's heap, mostly its window, in three arenas
// that share what is left of the pool's heap per backend, for the three window
// objects a record writes (the window's head, the bucket's count, the histogram's
// counter). Per request the floor makes the atomic operations a Pick and Done make on
// those lines: in flight up and down and the peak-EWMA's update on the hot line, one
// add in each window arena, plus the round-robin counter (one shared line) when the
// backends are taken in turn, a load of a second hot line for the power-of-two
// pickers, and the pool's in-flight count up and down for the hash. Its loads are
// independent of each other, where the pool's follow pointers (hot state → window →
// ring → bucket → page), so the misses that overlap here cannot overlap there.
func memoryFloor(n, perBackend int, f floorShape, ops int) time.Duration {
	const line = 64
	hotArena := make([]atomic.Uint64, n*line/8)
	slot := max((perBackend-line)/3/line, 1) * line / 8 // uint64s per window slot
	var arenas [3][]atomic.Uint64
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
	start := time.Now()
	for i := range ops {
		k := i % n
		if f.random {
			k = next()
		} else {
			shared.rr.Add(1)
		}
		h, o := k*line/8, k*slot
		if f.second {
			sink += hotArena[next()*line/8].Load()
		}
		hotArena[h].Add(1)
		if f.total {
			shared.total.Add(1)
		}
		hotArena[h].Add(^uint64(0))
		hotArena[h+1].Add(1)
		arenas[0][o].Add(1)
		arenas[1][o].Add(1)
		arenas[2][o].Add(1)
		if f.total {
			shared.total.Add(-1)
		}
	}
	d := time.Since(start)
	runtime.KeepAlive(sink)
	return max(d, 1)
}
