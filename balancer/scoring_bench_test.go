package balancer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// BenchmarkScoring measures a Scoring pick (with the in-flight count the pool takes,
// and a bare Done) over 1,000 backends that all report their load: without a prompt,
// with a 2 KB prompt out of 8 system prompts (hashed into 32 blocks of 64 bytes and
// matched against every candidate), and with Sample bounding the candidates to 64.
func BenchmarkScoring(b *testing.B) {
	prompts := make([]string, 64)
	for i := range prompts {
		prompts[i] = strings.Repeat(fmt.Sprintf("system prompt %d: be brief. ", i%8), 80)[:1900] + fmt.Sprintf(" user question %d", i)
	}
	for _, tc := range []struct {
		name   string
		cfg    balancer.ScoringConfig
		prompt bool
	}{
		{"NoPrompt", balancer.ScoringConfig{}, false},
		{"Prompt", balancer.ScoringConfig{}, true},
		{"Prompt/TopK4", balancer.ScoringConfig{TopK: 4}, true},
		{"Prompt/Sample64", balancer.ScoringConfig{Sample: 64}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a, err := balancer.NewScoring(tc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			p := benchPool(b, 1000, a)
			for i, be := range p.Backends() {
				r := balancer.LoadReport{Queue: int64(i % 4), KVCache: float64(i%10) / 20, InFlight: int64(i % 7)}
				if err := p.ReportLoad(be.ID(), r, 0); err != nil {
					b.Fatal(err)
				}
			}
			base := time.Now()
			req := &balancer.Request{}
			for range 100 { // warm up: the kept scratch space and the prefix sets
				r, _ := p.Pick(&balancer.Request{Now: base, Prompt: prompts[0]})
				r.Done(balancer.Outcome{Status: 200, At: base})
			}
			b.ReportAllocs()
			cpu0, cpuOK := processCPU() // CPU time beside wall time, as in benchPickDone
			defer func() {
				if cpu1, ok := processCPU(); ok && cpuOK && b.N > 0 {
					b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
				}
			}()
			i := 0
			for b.Loop() {
				req.Now = base.Add(time.Duration(i) * time.Microsecond)
				if tc.prompt {
					req.Prompt = prompts[i&63]
				}
				i++
				r, err := p.Pick(req)
				if err != nil {
					b.Fatal(err)
				}
				r.Done(balancer.Outcome{Status: 200, Latency: time.Duration(i&15) * time.Millisecond, At: req.Now})
			}
		})
	}
}
