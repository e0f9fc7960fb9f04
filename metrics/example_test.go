package metrics_test

import (
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

func ExampleWindow() {
	clk := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	w, err := metrics.NewWindow(metrics.WindowConfig{Width: time.Second, Buckets: 10}, clk)
	if err != nil {
		panic(err)
	}
	for i := range 100 {
		w.StartAt(clk.Now())
		o := metrics.Observation{Latency: time.Duration(i+1) * time.Millisecond}
		if i%10 == 0 {
			o.Outcome = metrics.OutcomeError
		}
		w.DoneAt(clk.Now().Add(o.Latency), o)
	}
	clk.Advance(5 * time.Second)

	s := w.Snapshot(0)
	fmt.Printf("%d requests in %v: %.0f/s, %.0f%% errors, p50 %v, p99 %v\n",
		s.Count, s.Span, s.Rate, 100*s.ErrorRate, s.P50.Round(time.Millisecond), s.P99.Round(time.Millisecond))
	// Output: 100 requests in 5s: 20/s, 10% errors, p50 50ms, p99 100ms
}

func ExampleRegistry() {
	clk := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	reg, err := metrics.NewRegistry(metrics.WithClock(clk), metrics.WithScopeCapacity(metrics.ScopeTenant, 10_000))
	if err != nil {
		panic(err)
	}
	for _, tenant := range []string{"acme", "acme", "globex"} {
		reg.Window(metrics.ScopeTenant, tenant).Record(metrics.Observation{Latency: 20 * time.Millisecond})
	}
	clk.Advance(time.Second)
	for _, key := range reg.Keys(metrics.ScopeTenant) {
		w, _ := reg.Lookup(metrics.ScopeTenant, key)
		fmt.Printf("%s: %.0f/s\n", key, w.Snapshot(0).Rate)
	}
	// Output:
	// acme: 2/s
	// globex: 1/s
}
