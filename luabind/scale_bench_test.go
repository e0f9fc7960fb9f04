package luabind_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// BenchmarkOnTickScale runs tickAggregate's on_tick (m.sum of the rate, m.max of the
// p99) over 1,000 to 100,000 backend windows that each took one more request since
// the last tick, as a loop's tick sees them (the recording is not timed). The cost
// should grow linearly with the keys; "ns/key" is ns/op over the keys. The windows
// hold a few seconds of traffic each, so that 100,000 fit in memory with the default
// window layout. There is no time budget: at 100,000 keys a tick outlasts the
// default 250 ms on a loaded machine.
//
//	go test -run '^$' -bench OnTickScale ./luabind
func BenchmarkOnTickScale(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			start := time.Unix(1_700_000_000, 0)
			clock := metrics.NewManualClock(start)
			reg, err := metrics.NewRegistry(metrics.WithClock(clock), metrics.WithCapacity(2*n))
			if err != nil {
				b.Fatal(err)
			}
			windows := make([]*metrics.Window, n)
			for i := range windows {
				windows[i] = reg.Window(metrics.ScopeBackend, fmt.Sprintf("b%06d", i))
				for j := range 5 {
					windows[i].RecordAt(start.Add(time.Duration(j)*time.Second), metrics.Observation{Latency: time.Duration(1+i%50) * time.Millisecond})
				}
			}
			now := start.Add(5 * time.Second)
			benchTick(b, clock, tickAggregate, func(i int) autoscale.Reader {
				b.StopTimer()
				defer b.StartTimer()
				now = now.Add(time.Second)
				for j, w := range windows {
					w.RecordAt(now, metrics.Observation{Latency: time.Duration(1+(i+j)%50) * time.Millisecond})
				}
				return autoscale.NewRegistryReader(reg, now)
			}, luabind.WithLimits(luabind.Limits{TickBudget: luabind.NoBudget}))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
		})
	}
}
