package metrics

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestCompactBuckets checks the compact sub-buckets: contiguous runs of the full ones,
// each reporting the midpoint of one of its own, within CompactRelativeError of every
// value it holds, and the bound reached.
func TestCompactBuckets(t *testing.T) {
	for s := 1; s < subCount; s++ {
		if d := compactOf[s] - compactOf[s-1]; d > 1 {
			t.Fatalf("compact sub-buckets skip at %d", s)
		}
	}
	for k, r := range compactRep {
		if int(compactOf[r]) != k {
			t.Fatalf("compact sub-bucket %d reports full sub-bucket %d, outside it", k, r)
		}
	}
	var worst float64
	check := func(v int64) {
		t.Helper()
		p, s := bucketOf(v)
		got := bucketMid(p, int(compactRep[compactOf[s]]))
		if v < subCount {
			if d := math.Abs(float64(got - v)); d > 3 {
				t.Fatalf("value %d reported as %d", v, got)
			}
			return
		}
		if v >= 1<<43 {
			return
		}
		rel := math.Abs(float64(got-v)) / float64(v)
		worst = max(worst, rel)
		if rel > CompactRelativeError {
			t.Fatalf("value %d reported as %d: relative error %.5f > %.5f", v, got, rel, CompactRelativeError)
		}
	}
	for v := int64(0); v < 1<<16; v++ {
		check(v)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		check(r.Int64N(1 << 43))
	}
	if worst < CompactRelativeError*0.99 {
		t.Errorf("worst relative error %.5f, the documented bound %.5f is loose", worst, CompactRelativeError)
	}
}

func TestCompactConfig(t *testing.T) {
	tests := []struct {
		cfg   WindowConfig
		errs  int
		group int
	}{
		{WindowConfig{Compact: true}, 0, 15},
		{WindowConfig{Compact: true, Buckets: 3}, 0, 1},
		{WindowConfig{Compact: true, Buckets: 3600}, 0, 60}, // MaxWidth / 1 s
		{WindowConfig{Compact: true, Width: MaxWidth, Buckets: 60}, 0, 1},
		{WindowConfig{Compact: true, HistogramBuckets: 6}, 0, 6},
		{WindowConfig{Compact: true, HistogramBuckets: 61}, 1, 0},
		{WindowConfig{Compact: true, Width: 2 * time.Second, HistogramBuckets: 31}, 1, 0},
		{WindowConfig{HistogramBuckets: 4}, 1, 0},
		{WindowConfig{Compact: true, HistogramBuckets: -1}, 1, 0},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		n := 0
		if err != nil {
			n = len(err.(interface{ Unwrap() []error }).Unwrap())
		}
		if n != tt.errs {
			t.Errorf("%+v: %d errors (%v), want %d", tt.cfg, n, err, tt.errs)
		}
		if err != nil {
			continue
		}
		w, _ := newTestWindow(t, tt.cfg)
		if got := w.Config(); !got.Compact || got.HistogramBuckets != tt.group {
			t.Errorf("%+v: window config %+v, want compact with %d buckets a histogram", tt.cfg, got, tt.group)
		}
		if need := (w.n+w.c.g-1)/w.c.g + 1; w.c.h != need {
			t.Errorf("%+v: %d histogram slots, want %d", tt.cfg, w.c.h, need)
		}
	}
	if w, _ := newTestWindow(t, WindowConfig{}); w.Config() != (WindowConfig{Width: time.Second, Buckets: 60}) {
		t.Errorf("default window config %+v", w.Config())
	}
}

// exactQuantile is the nearest-rank q-quantile of sorted values.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[max(int(math.Ceil(q*float64(len(sorted))))-1, 0)]
}

// busyLatency is a latency of a busy key: log-normal around 20 ms, over about ten
// octaves (0.5 ms to 1 s).
func busyLatency(r *rand.Rand) time.Duration {
	return time.Duration(math.Exp(r.NormFloat64()*1.2) * float64(20*time.Millisecond))
}

// TestCompactQuantilesExact compares a compact window's quantiles, mean and maximum
// with the exact figures of the raw observations.
func TestCompactQuantilesExact(t *testing.T) {
	for _, perBucket := range []int{3, 50, 400} {
		t.Run(fmt.Sprintf("per bucket %d", perBucket), func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, uint64(perBucket)))
			w, clk := newTestWindow(t, WindowConfig{Compact: true})
			var vals []time.Duration
			for s := range 60 {
				if s > 0 {
					clk.Advance(time.Second)
				}
				for range perBucket {
					v := busyLatency(r)
					vals = append(vals, v)
					w.Record(Observation{Latency: v})
				}
			}
			slices.Sort(vals)
			got := w.Snapshot(0)
			if got.Count != uint64(len(vals)) {
				t.Fatalf("count %d, want %d", got.Count, len(vals))
			}
			var worst float64
			for _, q := range []struct {
				q   float64
				got time.Duration
			}{{0.5, got.P50}, {0.9, got.P90}, {0.99, got.P99}} {
				want := exactQuantile(vals, q.q)
				rel := math.Abs(float64(q.got-want)) / float64(want)
				worst = max(worst, rel)
				if rel > CompactRelativeError {
					t.Errorf("q%v = %v, exact %v: relative error %.4f > %.4f", q.q, q.got, want, rel, CompactRelativeError)
				}
			}
			var sum float64
			for _, v := range vals {
				sum += float64(v)
			}
			if rel := math.Abs(float64(got.Mean)-sum/float64(len(vals))) / (sum / float64(len(vals))); rel > CompactRelativeError {
				t.Errorf("mean %v, exact %v", got.Mean, time.Duration(sum/float64(len(vals))))
			}
			if got.Max != vals[len(vals)-1] {
				t.Errorf("max %v, want %v", got.Max, vals[len(vals)-1])
			}
			t.Logf("%d observations: p99 %v, exact %v; worst quantile error %.2f%%", len(vals), got.P99, exactQuantile(vals, 0.99), 100*worst)
		})
	}
}

// TestCompactGroupExpiry shows the error in time: a slow request counts in the
// latency statistics until its whole group has left the span, up to
// HistogramBuckets-1 buckets after it left the counts.
func TestCompactGroupExpiry(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{Compact: true, Buckets: 20, HistogramBuckets: 5})
	n := w.epochOf(clk.Now().UnixNano())
	clk.Advance(time.Duration(5-n%5) * time.Second) // the first bucket of a group
	slow := clk.Now()
	w.Record(Observation{Latency: time.Second})
	for s := 1; s < 40; s++ {
		at := slow.Add(time.Duration(s) * time.Second)
		w.RecordAt(at, Observation{Latency: time.Millisecond})
		got := w.SnapshotAt(at, 0)
		// The whole window covers the 20 buckets before at's and at's: the slow
		// request's bucket up to s = 20, its group (buckets 0 to 4) up to s = 24.
		wantCount, wantMax := uint64(min(s, 20)+1), time.Millisecond
		if s <= 24 {
			wantMax = time.Second
		}
		if got.Count != wantCount || got.Max != wantMax {
			t.Errorf("%d s after: count %d max %v, want %d and %v", s, got.Count, got.Max, wantCount, wantMax)
		}
	}
}

// TestCompactMatchesDefault drives a default and a compact window with the same
// writes, late ones included, and checks that they count alike, and that a compact
// window's quantiles equal those of the histogram it hands out (the one replicas merge).
func TestCompactMatchesDefault(t *testing.T) {
	const buckets = 12
	r := rand.New(rand.NewPCG(11, 12))
	cfg := WindowConfig{Buckets: buckets, Width: 100 * time.Millisecond}
	def, _ := newTestWindow(t, cfg)
	cfg.Compact, cfg.HistogramBuckets = true, 4
	cw, _ := newTestWindow(t, cfg)
	now := t0
	inFlight := 0
	ignoreLatency := cmpopts.IgnoreFields(Snapshot{}, "Mean", "P50", "P90", "P99", "Max")
	for step := range 4000 {
		if r.IntN(50) == 0 {
			now = now.Add(time.Duration(buckets+8) * 100 * time.Millisecond)
		} else {
			now = now.Add(time.Duration(r.IntN(120)) * time.Millisecond)
		}
		for range r.IntN(6) {
			at := now
			if r.IntN(8) == 0 { // late, by up to the window's length
				at = now.Add(-time.Duration(r.IntN(buckets*100)) * time.Millisecond)
			}
			o := Observation{
				Latency: busyLatency(r),
				Outcome: Outcome(r.IntN(4)),
				Bytes:   int64(r.IntN(3) * 100),
				Value:   float64(r.IntN(3)),
			}
			for _, w := range []*Window{def, cw} {
				switch d := step % 3; {
				case d == 0:
					w.StartAt(at)
				case d == 1 && inFlight > 0:
					w.DoneAt(at, o)
				default:
					w.RecordAt(at, o)
				}
			}
			switch d := step % 3; {
			case d == 0:
				inFlight++
			case d == 1 && inFlight > 0:
				inFlight--
			}
		}
		for _, span := range []time.Duration{0, 300 * time.Millisecond} {
			want, got := def.SnapshotAt(now, span), cw.SnapshotAt(now, span)
			if diff := cmp.Diff(want, got, ignoreLatency); diff != "" {
				t.Fatalf("step %d span %v: default (-) vs compact (+):\n%s", step, span, diff)
			}
			var h Histogram
			cw.HistogramAt(now, span, &h)
			var q [3]time.Duration
			h.Quantiles([]float64{0.5, 0.9, 0.99}, q[:])
			if q != [3]time.Duration{got.P50, got.P90, got.P99} || h.Max() != got.Max || h.Mean() != got.Mean {
				t.Fatalf("step %d span %v: histogram p50/p90/p99 %v max %v mean %v; snapshot %v %v %v, %v, %v",
					step, span, q, h.Max(), h.Mean(), got.P50, got.P90, got.P99, got.Max, got.Mean)
			}
			if got.Max < want.Max { // the compact groups cover the span and more
				t.Fatalf("step %d span %v: compact max %v below the default's %v", step, span, got.Max, want.Max)
			}
		}
	}
	if def.Late() != cw.Late() {
		t.Errorf("late: default %d, compact %d", def.Late(), cw.Late())
	}
}

// TestCompactConcurrent records from many goroutines while a reader reads; the race
// detector checks the compact write and read paths.
func TestCompactConcurrent(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{Compact: true, Width: time.Millisecond, Buckets: 1000, HistogramBuckets: 50})
	const goroutines, per = 8, 5000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				at := clk.Now().Add(time.Duration(i%500) * time.Millisecond)
				w.StartAt(at)
				w.DoneAt(at, Observation{Latency: time.Duration(g+1) * time.Millisecond, Bytes: 1})
			}
		})
	}
	var reads sync.WaitGroup
	reads.Go(func() {
		for range 200 {
			w.SnapshotAt(clk.Now().Add(500*time.Millisecond), 0)
			var h Histogram
			w.HistogramAt(clk.Now().Add(500*time.Millisecond), 0, &h)
		}
	})
	wg.Wait()
	reads.Wait()
	s := w.SnapshotAt(clk.Now().Add(999*time.Millisecond), 0)
	if s.Count != goroutines*per || s.Bytes != goroutines*per || s.InFlight != 0 {
		t.Errorf("count %d bytes %d in flight %d, want %d, %d, 0", s.Count, s.Bytes, s.InFlight, goroutines*per, goroutines*per)
	}
	if s.Max != goroutines*time.Millisecond {
		t.Errorf("max %v", s.Max)
	}
}

func TestRegistryCompactScope(t *testing.T) {
	r, clk := newTestRegistry(t, WithScopeWindow(ScopeTenant, WindowConfig{Compact: true}))
	r.Window(ScopeTenant, "a").Record(Observation{Latency: time.Millisecond})
	r.Window(ScopeRoute, "/").Record(Observation{Latency: time.Millisecond})
	if !r.Window(ScopeTenant, "a").Config().Compact || r.Window(ScopeRoute, "/").Config().Compact {
		t.Fatal("only the tenant scope's windows should be compact")
	}
	for w := range r.Windows(ScopeTenant) {
		// A quantile is never above the maximum, which is exact.
		if s := w.SnapshotAt(clk.Now(), 0); s.Count != 1 || s.P99 != time.Millisecond {
			t.Errorf("tenant %q: count %d p99 %v", w.Key(), s.Count, s.P99)
		}
	}
	if _, err := NewRegistry(WithScopeWindow(ScopeTenant, WindowConfig{HistogramBuckets: 3})); err == nil {
		t.Error("a histogram group without a compact window was accepted")
	}
}
