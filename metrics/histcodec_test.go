package metrics

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistogramBinaryRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 1000} {
		var h Histogram
		for range n {
			h.Record(time.Duration(rnd.ExpFloat64() * float64(20*time.Millisecond)))
		}
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var g Histogram
		if err := g.UnmarshalBinary(b); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if g.Count() != h.Count() || g.Max() != h.Max() || g.Quantile(0.99) != h.Quantile(0.99) || g.Mean() != h.Mean() {
			t.Errorf("n=%d: decoded count %d max %v p99 %v mean %v; want %d %v %v %v",
				n, g.Count(), g.Max(), g.Quantile(0.99), g.Mean(), h.Count(), h.Max(), h.Quantile(0.99), h.Mean())
		}
		// MergeBinary adds, and returns what follows.
		rest, err := g.MergeBinary(append(b, 7))
		if err != nil || len(rest) != 1 || g.Count() != 2*h.Count() {
			t.Errorf("n=%d: MergeBinary: rest %v, err %v, count %d", n, rest, err, g.Count())
		}
	}
}

func TestHistogramBinaryBad(t *testing.T) {
	var h Histogram
	h.Record(time.Millisecond)
	good, _ := h.MarshalBinary()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"newer":     {histFormat + 1, 0, 0},
		"truncated": good[:len(good)-1],
		"index":     {histFormat, 0, 1, 0xff, 0xff, 0x03, 1},
		"zero":      {histFormat, 0, 1, 1, 0},
	} {
		var g Histogram
		g.Record(time.Second)
		if err := g.UnmarshalBinary(b); !errors.Is(err, ErrHistogramFormat) || g.Count() != 0 {
			t.Errorf("%s: err %v, count %d; want ErrHistogramFormat and an empty histogram", name, err, g.Count())
		}
	}
}

func TestWindowHistogramAt(t *testing.T) {
	clk := NewManualClock(time.Unix(100, 0))
	w, err := NewWindow(WindowConfig{Width: time.Second, Buckets: 10}, clk)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		w.RecordAt(clk.Now(), Observation{Latency: time.Duration(i+1) * time.Millisecond})
		if i%20 == 19 {
			clk.Advance(time.Second)
		}
	}
	check := func(when string) {
		t.Helper()
		for _, span := range []time.Duration{0, 3 * time.Second} {
			var h Histogram
			w.HistogramAt(clk.Now(), span, &h)
			s := w.snapshot(clk.Now(), span, false) // walking the ring, not the cache
			if h.Count() != s.Count-s.Rejected || h.Max() != s.Max || h.Quantile(0.99) != s.P99 || h.Quantile(0.5) != s.P50 {
				t.Errorf("%s, span %v: histogram count %d max %v p50 %v p99 %v; snapshot %d %v %v %v",
					when, span, h.Count(), h.Max(), h.Quantile(0.5), h.Quantile(0.99), s.Count-s.Rejected, s.Max, s.P50, s.P99)
			}
		}
	}
	check("filled")
	// The window moves on: the cached whole-window histogram follows it.
	for i := range 15 {
		clk.Advance(time.Second)
		w.RecordAt(clk.Now(), Observation{Latency: time.Duration(300-i) * time.Millisecond})
		w.RecordAt(clk.Now(), Observation{Outcome: OutcomeRejected})
		check(fmt.Sprintf("moved %d s", i+1))
	}
}
