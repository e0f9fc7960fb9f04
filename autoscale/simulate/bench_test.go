package simulate_test

import (
	"context"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// BenchmarkHourAt1000rps simulates one hour of 1,000 rps (3.6 million requests) under
// the adaptive Lua policy. The budget is 5 s per hour simulated.
func BenchmarkHourAt1000rps(b *testing.B) {
	sc := simulate.Scenario{Name: "hour", Duration: time.Hour, Traffic: simulate.Constant(1000),
		Service: simulate.Service{Replicas: 14, Min: 1, Max: 100}}
	p, err := simulate.Shipped("adaptive")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var reqs uint64
	for b.Loop() {
		res, err := simulate.Run(context.Background(), simulate.Config{Scenario: sc, Policy: p, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		reqs = res.Summary.Requests
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(reqs), "ns/request")
}
