package balancer_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// benchPool returns a pool of n backends with the default random source (lock-free)
// and a system clock.
func benchPool(b *testing.B, n int, alg balancer.Algorithm, opts ...balancer.Option) *balancer.Pool {
	b.Helper()
	p, err := balancer.New(append([]balancer.Option{balancer.WithAlgorithm(alg)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Update(endpoints(n)); err != nil {
		b.Fatal(err)
	}
	return p
}

var benchAlgorithms = []struct {
	name string
	alg  func() balancer.Algorithm
}{
	{"RoundRobin", func() balancer.Algorithm { return balancer.RoundRobin{} }},
	{"SmoothWeighted", func() balancer.Algorithm { return &balancer.SmoothWeighted{} }},
	{"Random", func() balancer.Algorithm { return balancer.Random{} }},
	{"P2C", func() balancer.Algorithm { return &balancer.P2C{} }},
	{"PeakEWMA", func() balancer.Algorithm { return &balancer.PeakEWMA{} }},
	{"Hash", func() balancer.Algorithm { return &balancer.Hash{} }},
}

// BenchmarkPick measures Pick alone (with the in-flight count it takes) over 1,000
// backends. Each op ends the request too, but with the Done of a bare in-flight
// counter, so the figure is the picker's.
func BenchmarkPick(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("tenant-", i)
	}
	for _, a := range benchAlgorithms {
		b.Run(a.name, func(b *testing.B) {
			p := benchPool(b, 1000, a.alg())
			req := &balancer.Request{Now: time.Now()}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req.Key = keys[i&1023]
				i++
				r, err := p.Pick(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = r
			}
		})
	}
}

// BenchmarkPickDone measures Pick + Done over 1,000 backends, as the proxy calls them:
// the request's time is known (req.Now and Outcome.At advance by 1 µs per request, so
// the moving averages decay and the window moves on as in real traffic). Done updates
// the in-flight count, the peak-EWMA, the failure counters and the backend's window.
//
// Each also reports the memory floor of its requests (floor-ns/op and x-floor, as in
// BenchmarkPickDoneScale).
func BenchmarkPickDone(b *testing.B) {
	for _, a := range benchAlgorithms {
		b.Run(a.name, func(b *testing.B) {
			benchPickDoneFloor(b, 1000, a.name, a.alg())
		})
	}
	// The cost of WithWindowConcurrency: Window.StartAt and DoneAt for RecordAt.
	b.Run("RoundRobin+WindowConcurrency", func(b *testing.B) {
		benchPickDone(b, benchPool(b, 1000, balancer.RoundRobin{}, balancer.WithWindowConcurrency()), false)
	})
}

// BenchmarkPickDoneParallel is BenchmarkPickDone from GOMAXPROCS goroutines: the
// figure is wall time per op across them, to compare with the serial one.
func BenchmarkPickDoneParallel(b *testing.B) {
	for _, a := range benchAlgorithms {
		b.Run(a.name, func(b *testing.B) {
			benchPickDone(b, benchPool(b, 1000, a.alg()), true)
		})
	}
}

// benchPickDone returns the CPU time the timed requests took (0 when the platform does
// not say), which it also reports as cpu-ns/op.
func benchPickDone(b *testing.B, p *balancer.Pool, parallel bool) (cpu time.Duration) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("tenant-", i)
	}
	base := time.Now()
	// Each goroutine keeps its own time, 1 µs further on per request, so that the
	// benchmark adds no shared counter of its own.
	one := func(req *balancer.Request, i int) {
		req.Key = keys[i&1023]
		now := base.Add(time.Duration(i) * time.Microsecond)
		req.Now = now
		r, err := p.Pick(req)
		if err != nil {
			b.Fatal(err)
		}
		r.Done(balancer.Outcome{Latency: time.Duration(i&63) * time.Millisecond, Status: 200, At: now})
	}
	// Warm up: every backend's window takes its buckets on its first requests, which a
	// short run over a large pool would otherwise count as the steady state.
	warm, first := &balancer.Request{}, 2*len(p.Backends())
	for i := range first {
		one(warm, i)
	}
	b.ResetTimer()
	b.ReportAllocs()
	// CPU time per op, beside the wall time: on a machine shared with other work the
	// wall time of RunParallel says more about the neighbours than about contention,
	// while CPU time per op grows only with the work (and the cache-line transfers)
	// each op costs.
	cpu0, cpuOK := processCPU()
	defer func() {
		if cpu1, ok := processCPU(); ok && cpuOK && b.N > 0 {
			cpu = cpu1 - cpu0
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		}
	}()
	if !parallel {
		req := &balancer.Request{}
		i := first
		for b.Loop() {
			one(req, i)
			i++
		}
		return 0 // set by the deferred function
	}
	b.ResetTimer() // b.Loop does this itself; RunParallel does not
	var goroutines atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine writes its request's Key and Now on every op: padded, so
		// that two goroutines' requests, allocated one after the other, do not share a
		// cache line and the benchmark's own false sharing is not counted as the pool's.
		padded := new(struct {
			_   [64]byte
			req balancer.Request
			_   [64]byte
		})
		req := &padded.req
		// Each goroutine starts elsewhere in the keys (and in time), as different
		// clients would, rather than hashing the same key as the others at the same
		// moment.
		i := first + int(goroutines.Add(1))*7919
		for pb.Next() {
			one(req, i)
			i++
		}
	})
	return 0 // set by the deferred function
}

// BenchmarkDoneParts splits Done's cost: the peak-EWMA update and the window record
// dominate; the in-flight count and failure counters are a few atomics.
func BenchmarkDoneParts(b *testing.B) {
	base := time.Now()
	b.Run("PeakLatency.Observe", func(b *testing.B) {
		e := metrics.NewPeakLatency(0)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e.Observe(base.Add(time.Duration(i)*time.Microsecond), time.Duration(i&63)*time.Millisecond)
			i++
		}
	})
	// One uncontended atomic add, on one line. Pick + Done with round robin makes six
	// (the round-robin counter, in-flight up and down, the peak-EWMA's compare-and-swap,
	// the window's count and histogram); BenchmarkPickDone's floor-ns/op makes them at
	// the lines the pool's state occupies (see memoryFloor).
	b.Run("AtomicAdd", func(b *testing.B) {
		var n atomic.Int64
		b.ReportAllocs()
		for b.Loop() {
			n.Add(1)
		}
	})
	b.Run("Window.RecordAt", func(b *testing.B) {
		w, _ := metrics.NewWindow(metrics.WindowConfig{}, nil)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			w.RecordAt(base.Add(time.Duration(i)*time.Microsecond), metrics.Observation{Latency: time.Duration(i&63) * time.Millisecond})
			i++
		}
	})
}

// BenchmarkSnapshotRebuild measures a SetWeight, which rebuilds the snapshot and the
// algorithm's state, over 1,000 backends: the control-plane cost.
func BenchmarkSnapshotRebuild(b *testing.B) {
	for _, a := range benchAlgorithms {
		b.Run(a.name, func(b *testing.B) {
			p := benchPool(b, 1000, a.alg())
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := p.SetWeight("b00", 1+i%3); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkPickFunc measures Pick through a custom pick function (a Go stand-in for
// a Lua pick), with its panic guard.
func BenchmarkPickFunc(b *testing.B) {
	p := benchPool(b, 1000, &balancer.P2C{})
	n := 0
	p.SetPickFunc(func(_ *balancer.Request, bs []*balancer.Backend) (int, error) {
		n++
		return n % len(bs), nil
	})
	req := &balancer.Request{}
	base := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req.Now = base.Add(time.Duration(i) * time.Microsecond)
		i++
		r, err := p.Pick(req)
		if err != nil {
			b.Fatal(err)
		}
		r.Done(balancer.Outcome{Status: 200, Latency: time.Millisecond, At: req.Now})
	}
}
