package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	// Every value maps to a bucket whose midpoint is within the documented error.
	check := func(v int64) {
		t.Helper()
		p, s := bucketOf(v)
		mid := bucketMid(p, s)
		if v < subCount {
			if mid != v {
				t.Fatalf("value %d: midpoint %d, want exact", v, mid)
			}
			return
		}
		if v >= 1<<43 {
			return
		}
		if rel := math.Abs(float64(mid-v)) / float64(v); rel > HistogramRelativeError {
			t.Fatalf("value %d: midpoint %d, relative error %.4f > %.4f", v, mid, rel, HistogramRelativeError)
		}
	}
	for v := int64(0); v < 1<<16; v++ {
		check(v)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		check(r.Int64N(1 << 43))
	}
	if p, s := bucketOf(math.MaxInt64); p != numPages-1 || s != subCount-1 {
		t.Fatalf("huge value in (%d, %d), want the last bucket", p, s)
	}
	if p, s := bucketOf(-5); p != 0 || s != 0 {
		t.Fatalf("negative value in (%d, %d), want bucket 0", p, s)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values func(r *rand.Rand) time.Duration
	}{
		{"uniform 1-100ms", func(r *rand.Rand) time.Duration {
			return time.Millisecond + time.Duration(r.Int64N(int64(99*time.Millisecond)))
		}},
		{"lognormal around 20ms", func(r *rand.Rand) time.Duration {
			return time.Duration(math.Exp(r.NormFloat64()*0.8) * float64(20*time.Millisecond))
		}},
		{"bimodal", func(r *rand.Rand) time.Duration {
			if r.IntN(10) == 0 {
				return 2 * time.Second
			}
			return 3 * time.Millisecond
		}},
		{"tiny", func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(40)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 9))
			var h Histogram
			vals := make([]time.Duration, 20000)
			var sum float64
			for i := range vals {
				vals[i] = tt.values(r)
				h.Record(vals[i])
				sum += float64(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				want := vals[max(int(math.Ceil(q*float64(len(vals))))-1, 0)]
				got := h.Quantile(q)
				if rel := math.Abs(float64(got-want)) / float64(max(want, 1)); rel > HistogramRelativeError && got != want {
					t.Errorf("q%.3f = %v, exact %v: relative error %.4f", q, got, want, rel)
				}
			}
			mean := sum / float64(len(vals))
			if diff := math.Abs(float64(h.Mean()) - mean); diff > 0.5 && diff/mean > HistogramRelativeError {
				t.Errorf("mean %v, exact %v", h.Mean(), time.Duration(mean))
			}
			if h.Max() != vals[len(vals)-1] {
				t.Errorf("max %v, want %v", h.Max(), vals[len(vals)-1])
			}
			if h.Count() != uint64(len(vals)) {
				t.Errorf("count %d", h.Count())
			}
		})
	}
}

func TestHistogramMergeAndReset(t *testing.T) {
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	for _, q := range []float64{0.1, 0.5, 0.99} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("merged q%v = %v, want %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() != all.Count() || a.Max() != all.Max() {
		t.Errorf("merged count/max %d/%v, want %d/%v", a.Count(), a.Max(), all.Count(), all.Max())
	}
	a.Reset()
	if a.Count() != 0 || a.Quantile(0.5) != 0 || a.Mean() != 0 || a.Max() != 0 {
		t.Errorf("reset histogram not empty")
	}
}

func TestHistogramQuantilesMany(t *testing.T) {
	var h Histogram
	for i := 1; i <= 100; i++ {
		h.Record(time.Duration(i))
	}
	qs := []float64{0.01, 0.5, 0.5, 1}
	out := make([]time.Duration, len(qs))
	h.Quantiles(qs, out)
	want := []time.Duration{1, 50, 50, 100}
	if !slices.Equal(out, want) {
		t.Fatalf("quantiles %v, want %v", out, want)
	}
}
