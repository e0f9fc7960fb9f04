package redisshare

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/autoscalelua/autoscalelua/internal/redistest"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// BenchmarkPayload1000 is one replica's tick: summarizing and encoding 1,000 windows.
// bytes/payload is the payload's size.
func BenchmarkPayload1000(b *testing.B) {
	clk := metrics.NewManualClock(t0)
	p := publisherFor(thousand(b, clk, rand.New(rand.NewPCG(1, 1))))
	var n int
	b.ReportAllocs()
	for b.Loop() {
		n = len(p.Payload(clk.Now()))
	}
	b.ReportMetric(float64(n), "bytes/payload")
}

// BenchmarkMerge1000x3 is the leader's tick without the network: decoding and merging
// three replicas' payloads of 1,000 windows each into a view.
func BenchmarkMerge1000x3(b *testing.B) {
	var clk *metrics.ManualClock
	names := []string{"gw-0", "gw-1", "gw-2"}
	blobs := make([][]byte, 3)
	total := 0
	for i := range blobs {
		clk = metrics.NewManualClock(t0)
		blobs[i] = publisherFor(thousand(b, clk, rand.New(rand.NewPCG(uint64(i), 1)))).Payload(clk.Now())
		total += len(blobs[i])
	}
	errs := make([]error, 3)
	b.ReportAllocs()
	for b.Loop() {
		v := mergePayloads(clk.Now(), names, blobs, errs)
		if len(v.Sources()) != 3 {
			b.Fatal(v.Skipped)
		}
	}
	b.ReportMetric(float64(total), "bytes/tick")
}

// BenchmarkRedisTick1000x3 is a whole tick through a real redis-server: three replicas
// publish 1,000 windows each, and the leader fetches and merges them.
func BenchmarkRedisTick1000x3(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client()
	var clk *metrics.ManualClock
	var pubs []*Publisher
	for i := range 3 {
		clk = metrics.NewManualClock(t0) // each replica's minute ends at the same time
		pubs = append(pubs, publisher(b, c, thousand(b, clk, rand.New(rand.NewPCG(uint64(i), 1))), Config{Replica: fmt.Sprint("gw-", i)}))
	}
	m := merger(b, c, registry(b, clk), Config{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range pubs {
			if _, err := p.Publish(ctx, clk.Now()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := m.Fetch(ctx, clk.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
