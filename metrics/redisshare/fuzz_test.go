package redisshare

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// FuzzDecode feeds the payload decoder arbitrary bytes: it must return a payload or an
// error, never panic, and whatever it accepts must merge.
func FuzzDecode(f *testing.F) {
	clk := metrics.NewManualClock(t0)
	reg, _ := metrics.NewRegistry(metrics.WithClock(clk))
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		reg.Window(metrics.ScopeTenant, string(rune('a'+i%5))).RecordAt(clk.Now(), metrics.Observation{Latency: time.Duration(rnd.IntN(1e8))})
	}
	good := publisherFor(reg).Payload(clk.Now())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("ASWS\x01"))
	f.Add([]byte("ASWS\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v := mergePayloads(t0, []string{"r"}, [][]byte{b}, []error{nil})
		if len(v.Sources())+len(v.Skipped) != 1 {
			t.Fatalf("payload neither merged nor skipped")
		}
	})
}
