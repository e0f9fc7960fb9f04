package metrics

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// BenchmarkScopeReadScale reads the whole window of every key of a scope through
// Registry.Windows, as a loop's tick does (autoscale.RegistryReader.Scope), over 1,000
// to 100,000 keys that each took one more request since the last read (the recording
// is not timed), and sums the rates and takes the largest p99 as m.sum and m.max do.
// Each window holds a few seconds of traffic, as in luabind's BenchmarkOnTickScale,
// whose tick this is the metrics part of; ns/key is ns/op over the keys, cpu-ns/key
// the reading thread's CPU time (which a loaded machine inflates less).
//
//	go test -run '^$' -bench ScopeReadScale ./metrics
func BenchmarkScopeReadScale(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			clk := NewManualClock(t0)
			reg, err := NewRegistry(WithClock(clk), WithCapacity(2*n))
			if err != nil {
				b.Fatal(err)
			}
			// Keys arrive in no order, so a pass in key order visits the windows in
			// no order of their addresses.
			ws := make([]*Window, n)
			for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(n) {
				ws[i] = reg.Window(ScopeBackend, fmt.Sprintf("b%06d", i))
				for j := range 5 {
					ws[i].RecordAt(t0.Add(time.Duration(j)*time.Second), Observation{Latency: time.Duration(1+i%50) * time.Millisecond})
				}
			}
			now := t0.Add(5 * time.Second)
			var rate float64
			var worst time.Duration
			read := func() {
				rate, worst = 0, 0
				for w := range reg.Windows(ScopeBackend) {
					s := w.SnapshotAt(now, 0)
					rate += s.Rate
					worst = max(worst, s.P99)
				}
			}
			step := func(i int) {
				now = now.Add(time.Second)
				for j, w := range ws {
					w.RecordAt(now, Observation{Latency: time.Duration(1+(i+j)%50) * time.Millisecond})
				}
			}
			// Two reads first: a window makes its read cache on its first read.
			for i := range 2 {
				step(i)
				read()
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var cpu int64
			b.ResetTimer()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				step(i + 2)
				c0 := threadCPU()
				b.StartTimer()
				read()
				cpu += threadCPU() - c0
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
			if cpu >= 0 {
				b.ReportMetric(float64(cpu)/float64(b.N)/float64(n), "cpu-ns/key")
			}
			if worst < time.Millisecond || rate <= 0 {
				b.Fatalf("read rate %v, worst p99 %v", rate, worst)
			}
		})
	}
}
