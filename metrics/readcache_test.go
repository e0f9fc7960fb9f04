package metrics

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// sameAsRing fails unless a whole-window read through the running totals equals a walk
// of the ring at the same time; the user values' sums, added in different orders, may
// differ by rounding.
func sameAsRing(t *testing.T, w *Window, now time.Time, step int) {
	t.Helper()
	got := w.SnapshotAt(now, 0)
	want := w.snapshot(now, 0, false)
	if d := math.Abs(got.Value - want.Value); d > 1e-9*max(1, math.Abs(want.Value)) {
		t.Fatalf("step %d: value %v through the running totals, %v walking the ring", step, got.Value, want.Value)
	}
	got.Value, want.Value = 0, 0
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("step %d: through the running totals (+) vs the ring (-):\n%s", step, diff)
	}
}

// TestReadCacheValues checks the running sum of user values where a plain running sum
// fails: a value large enough to swallow the small ones added after it (taken back, it
// must not take them along), and values that are not finite, which must leave the
// window with their bucket.
func TestReadCacheValues(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{Buckets: 5})
	values := []float64{1e17, 1, 1, 1, 1, 1, 1, math.NaN(), 1, 1, 1, 1, 1, 1, math.Inf(-1), 1, 1, 1, 1, 1, 1, 2}
	for s, v := range values {
		if s > 0 {
			clk.Advance(time.Second)
		}
		w.Record(Observation{Value: v})
		var want float64 // a whole-window read covers this second and the 5 before
		for _, c := range values[max(0, s-5) : s+1] {
			want += c
		}
		got := w.Snapshot(0).Value
		if got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
			t.Errorf("second %d: value %v, want %v", s, got, want)
		}
	}
}

// TestReadCacheMatchesRing drives a window with every kind of write, including writes
// into buckets the reader has already summed and reads that skip or revisit buckets,
// and checks every whole-window read against a walk of the ring.
func TestReadCacheMatchesRing(t *testing.T) {
	for _, buckets := range []int{3, 4, 20} {
		t.Run(fmt.Sprintf("buckets=%d", buckets), func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(buckets)))
			w, _ := newTestWindow(t, WindowConfig{Buckets: buckets, Width: 100 * time.Millisecond})
			now := t0
			inFlight := 0
			for step := range 5000 {
				switch d := r.IntN(100); {
				case d < 3: // a pause longer than the ring
					now = now.Add(time.Duration(buckets+5) * 100 * time.Millisecond)
				case d < 5: // a read in the past
					sameAsRing(t, w, now.Add(-time.Duration(r.IntN(300))*time.Millisecond), step)
				default:
					now = now.Add(time.Duration(r.IntN(120)) * time.Millisecond)
				}
				for range r.IntN(6) {
					at := now
					if r.IntN(8) == 0 { // late: up to a ring back
						at = now.Add(-time.Duration(r.IntN((buckets+4)*100)) * time.Millisecond)
					}
					o := Observation{
						Latency: time.Duration(r.ExpFloat64() * float64(30*time.Millisecond)),
						Outcome: Outcome(r.IntN(4)),
						Bytes:   int64(r.IntN(3) * 100),
					}
					if r.IntN(4) == 0 {
						o.Value = r.Float64()*1000 - 500
					}
					switch {
					case r.IntN(3) == 0:
						w.StartAt(at)
						inFlight++
					case inFlight > 0 && r.IntN(2) == 0:
						w.DoneAt(at, o)
						inFlight--
					default:
						w.RecordAt(at, o)
					}
				}
				if r.IntN(2) == 0 {
					sameAsRing(t, w, now, step)
				}
			}
		})
	}
}

// TestReadCacheConcurrentWriters reads while writers record, some of them late, and
// checks that once they stop the totals equal the ring.
func TestReadCacheConcurrentWriters(t *testing.T) {
	w, clk := newTestWindow(t, WindowConfig{Buckets: 10, Width: time.Millisecond})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				at := clk.Now()
				if g == 0 {
					at = at.Add(-time.Duration(r.IntN(12)) * time.Millisecond)
				}
				w.RecordAt(at, Observation{Latency: time.Duration(r.IntN(1000)) * time.Microsecond, Bytes: 1})
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 2000 || w.lateWrites.Load() < 100; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d reads only %d writes were late", i, w.lateWrites.Load())
		}
		if i%10 == 0 {
			clk.Advance(time.Millisecond)
		}
		w.Snapshot(0)
	}
	close(stop)
	wg.Wait()
	sameAsRing(t, w, clk.Now(), 0)
}

// TestSlotRecSize keeps a slotRec two cache lines, as its doc says (its ring-long slice
// is then line-aligned, being a power of two of 128 bytes).
func TestSlotRecSize(t *testing.T) {
	if s := unsafe.Sizeof(slotRec{}); s != 128 {
		t.Errorf("slotRec is %d bytes, want 128", s)
	}
	if o := unsafe.Offsetof(slotRec{}.ent); o+8 > 64 {
		t.Errorf("slotRec's first entry ends at byte %d, past the first line", o+8)
	}
}
