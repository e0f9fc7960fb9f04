package metrics

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var t0 = time.Unix(1_700_000_000, 0)

func newTestWindow(t testing.TB, cfg WindowConfig) (*Window, *ManualClock) {
	t.Helper()
	clk := NewManualClock(t0)
	w, err := NewWindow(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	return w, clk
}

func TestWindowConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  WindowConfig
		errs int
	}{
		{WindowConfig{}, 0},
		{WindowConfig{Width: time.Millisecond, Buckets: 3600}, 0},
		{WindowConfig{Width: time.Microsecond}, 1},
		{WindowConfig{Width: MaxWidth, Buckets: 60}, 0},
		{WindowConfig{Width: MaxWidth + time.Second}, 1}, // a bucket's count could carry into its errors
		{WindowConfig{Buckets: -1}, 1},
		{WindowConfig{Width: -time.Second, Buckets: 4000}, 2},
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
	}
	if _, err := NewWindow(WindowConfig{Buckets: 5000}, nil); err == nil {
		t.Error("NewWindow accepted 5000 buckets")
	}
	if got := (WindowConfig{}).Length(); got != time.Minute {
		t.Errorf("default length %v", got)
	}
}

func TestWindowSnapshot(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{})
	clk.Advance(time.Minute) // the window is a minute old, so rates divide by whole spans
	w.created = t0.UnixNano()
	now := clk.Now()
	// 10 requests in each of the last 10 seconds: 1 error and 1 canceled per second.
	for s := range 10 {
		at := now.Add(-time.Duration(s) * time.Second)
		for i := range 10 {
			o := Observation{Latency: time.Duration(i+1) * time.Millisecond, Bytes: 100, Value: 2.5}
			switch i {
			case 0:
				o.Outcome = OutcomeError
			case 1:
				o.Outcome = OutcomeCanceled
			}
			w.RecordAt(at, o)
		}
	}
	now = now.Add(500 * time.Millisecond)

	got := w.SnapshotAt(now, 0)
	want := Snapshot{
		Span:      time.Minute + 500*time.Millisecond,
		Count:     100,
		Errors:    10,
		Canceled:  10,
		Bytes:     10000,
		Value:     250,
		ErrorRate: 0.1,
		Rate:      100 / 60.5,
		P50:       5 * time.Millisecond,
		P90:       9 * time.Millisecond,
		P99:       10 * time.Millisecond,
		Max:       10 * time.Millisecond,
		Mean:      5500 * time.Microsecond,
	}
	opt := cmpopts.EquateApprox(0, float64(HistogramRelativeError))
	durs := cmp.Comparer(func(a, b time.Duration) bool {
		return math.Abs(float64(a-b)) <= float64(b)*HistogramRelativeError
	})
	if diff := cmp.Diff(want, got, opt, durs); diff != "" {
		t.Errorf("whole window (-want +got):\n%s", diff)
	}

	// The last 3 seconds: the three completed buckets now-3s .. now-1s and the current
	// one, half covered.
	got = w.SnapshotAt(now, 3*time.Second)
	if got.Count != 40 || got.Errors != 4 || got.Span != 3500*time.Millisecond {
		t.Errorf("3s span: count %d errors %d span %v, want 40, 4, 3.5s", got.Count, got.Errors, got.Span)
	}
	if math.Abs(got.Rate-40/3.5) > 1e-9 {
		t.Errorf("3s rate %v, want %v", got.Rate, 40/3.5)
	}
	// On a bucket boundary a 1 s span is the last whole second.
	got = w.SnapshotAt(now.Add(500*time.Millisecond), time.Second)
	if got.Count != 10 || got.Span != time.Second || got.Rate != 10 {
		t.Errorf("1s span on a boundary: count %d span %v rate %v, want 10, 1s, 10", got.Count, got.Span, got.Rate)
	}

	// Over a minute later everything has left the window.
	got = w.SnapshotAt(now.Add(61*time.Second), 0)
	if got.Count != 0 || got.P99 != 0 || got.Rate != 0 || got.Max != 0 {
		t.Errorf("expired window: %+v", got)
	}
}

func TestWindowRejected(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{})
	w.RecordAt(clk.Now(), Observation{Latency: 50 * time.Millisecond})
	for range 3 {
		w.RecordAt(clk.Now(), Observation{Outcome: OutcomeRejected})
	}
	s := w.SnapshotAt(clk.Advance(time.Second), 0)
	if s.Count != 4 || s.Rejected != 3 || s.Errors != 0 || s.Rate != 4 {
		t.Errorf("count %d rejected %d errors %d rate %v, want 4, 3, 0, 4", s.Count, s.Rejected, s.Errors, s.Rate)
	}
	if s.P50 < 49*time.Millisecond || s.Max != 50*time.Millisecond {
		t.Errorf("p50 %v max %v: rejected requests must not count in latency", s.P50, s.Max)
	}
}

func TestWindowYoungRate(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{})
	for range 20 {
		w.RecordAt(clk.Now(), Observation{Latency: time.Millisecond})
	}
	s := w.SnapshotAt(clk.Advance(2*time.Second), 0)
	if s.Span != 2*time.Second || s.Rate != 10 {
		t.Errorf("a 2 s old window with 20 requests: span %v rate %v, want 2s and 10", s.Span, s.Rate)
	}
}

func TestWindowConcurrency(t *testing.T) {
	tests := []struct {
		name string
		// run drives the window from t0 to t0+10s in 100 ms steps.
		run  func(w *Window, at time.Time, step int)
		want float64 // time-weighted concurrency over the last 10 s
		max  int64
	}{
		{"two for the whole span", func(w *Window, at time.Time, step int) {
			if step == 0 {
				w.StartAt(at)
				w.StartAt(at)
			}
		}, 2, 2},
		{"one for half the span", func(w *Window, at time.Time, step int) {
			switch step {
			case 25:
				w.StartAt(at)
			case 75:
				w.DoneAt(at, Observation{Latency: 5 * time.Second})
			}
		}, 0.5, 1},
		{"a 300 ms request every second", func(w *Window, at time.Time, step int) {
			switch step % 10 {
			case 2:
				w.StartAt(at)
			case 5:
				w.DoneAt(at, Observation{Latency: 300 * time.Millisecond})
			}
		}, 0.3, 1},
		{"started before the window, still running", func(w *Window, at time.Time, step int) {}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := newTestWindow(t, WindowConfig{Buckets: 10})
			w.created = t0.Add(-time.Hour).UnixNano()
			if tt.name == "started before the window, still running" {
				w.StartAt(t0.Add(-30 * time.Second))
			}
			at := t0
			for step := range 100 {
				tt.run(w, at, step)
				at = at.Add(100 * time.Millisecond)
			}
			s := w.SnapshotAt(at, 10*time.Second)
			if math.Abs(s.Concurrency-tt.want) > 0.01 {
				t.Errorf("concurrency %v, want %v", s.Concurrency, tt.want)
			}
			if s.MaxInFlight != tt.max {
				t.Errorf("max in flight %d, want %d", s.MaxInFlight, tt.max)
			}
		})
	}
}

func TestWindowPartialBucketConcurrency(t *testing.T) {
	w, _ := newTestWindow(t, WindowConfig{})
	w.created = t0.Add(-time.Hour).UnixNano()
	// One request from 0.2 s into a bucket, read at 0.6 s over 6 s (six whole buckets
	// and the current one): in flight 0.4 s of 6.6 s.
	w.StartAt(t0.Add(200 * time.Millisecond))
	s := w.SnapshotAt(t0.Add(600*time.Millisecond), 6*time.Second)
	if want := 0.4 / 6.6; math.Abs(s.Concurrency-want) > 1e-9 {
		t.Errorf("concurrency %v, want %v", s.Concurrency, want)
	}
	if s.InFlight != 1 || w.InFlight() != 1 {
		t.Errorf("in flight %d", s.InFlight)
	}
}

func TestWindowLate(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{Buckets: 10})
	w.RecordAt(clk.Now(), Observation{})
	w.RecordAt(clk.Now().Add(time.Duration(w.ringLen)*time.Second), Observation{}) // same ring slot, later epoch
	w.RecordAt(clk.Now(), Observation{})                                           // now older than the ring
	if w.Late() != 1 {
		t.Errorf("late %d, want 1", w.Late())
	}
}

// TestWindowHistogramCache drives a window through random traffic and random reads,
// including skipped buckets, and checks that whole-window quantiles read through the
// running histogram equal those merged from the ring.
func TestWindowHistogramCache(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	w, _ := newTestWindow(t, WindowConfig{Buckets: 20, Width: 100 * time.Millisecond})
	now := t0
	for step := range 3000 {
		now = now.Add(time.Duration(r.IntN(150)) * time.Millisecond)
		for range r.IntN(20) {
			w.RecordAt(now, Observation{Latency: time.Duration(r.ExpFloat64() * float64(30*time.Millisecond))})
		}
		if r.IntN(3) != 0 {
			continue
		}
		got := w.SnapshotAt(now, 0)
		n := w.epochOf(now.UnixNano())
		var h Histogram
		for m := n - w.n; m <= n; m++ {
			addBucket(&h, w.bucketFor(m))
		}
		h.max = int64(got.Max)
		if got.Count != h.Count() {
			t.Fatalf("step %d: count %d, ring holds %d", step, got.Count, h.Count())
		}
		if want := h.Quantile(0.99); got.P99 != want {
			t.Fatalf("step %d: p99 %v through the cache, %v from the ring", step, got.P99, want)
		}
		if want := h.Quantile(0.5); got.P50 != want {
			t.Fatalf("step %d: p50 %v through the cache, %v from the ring", step, got.P50, want)
		}
	}
}

func TestWindowConcurrentRecord(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{Width: time.Millisecond, Buckets: 1000})
	const goroutines, per = 8, 5000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				// Move through buckets as we go, so claims race with records.
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
		}
	})
	wg.Wait()
	reads.Wait()
	s := w.SnapshotAt(clk.Now().Add(999*time.Millisecond), 0)
	if s.Count != goroutines*per || s.Bytes != goroutines*per {
		t.Errorf("count %d bytes %d, want %d", s.Count, s.Bytes, goroutines*per)
	}
	if s.InFlight != 0 {
		t.Errorf("in flight %d after all done", s.InFlight)
	}
	if s.Max != goroutines*time.Millisecond {
		t.Errorf("max %v", s.Max)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{OutcomeOK: "ok", OutcomeError: "error", OutcomeCanceled: "canceled", OutcomeRejected: "rejected", 9: "Outcome(9)"} {
		if o.String() != want {
			t.Errorf("%d: %q", o, o.String())
		}
	}
}

// addBucket adds b's latency histogram to h and returns how many observations it
// added: the naive merge the tests and BenchmarkSnapshotNaive compare with.
func addBucket(h *Histogram, b *bucket) uint64 {
	if b == nil {
		return 0
	}
	var total uint64
	for u := b.used.Load(); u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		pg := b.pages[p].Load()
		var hp *[subCount]uint64
		for s := range pg {
			if c := uint64(pg[s].Load()); c != 0 {
				if hp == nil {
					hp = h.page(p)
				}
				hp[s] += c
				total += c
			}
		}
	}
	h.count += total
	return total
}
