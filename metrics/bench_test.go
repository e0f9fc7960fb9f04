package metrics

import (
	"testing"
	"time"
)

// The record paths. Each observation costs two atomic adds; see the package doc.

func BenchmarkRecordAt(b *testing.B) {
	w, clk := newTestWindow(b, WindowConfig{})
	now := clk.Now()
	o := Observation{Latency: 12 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		w.RecordAt(now, o)
	}
}

func BenchmarkRecordAtAllFields(b *testing.B) {
	w, clk := newTestWindow(b, WindowConfig{})
	now := clk.Now()
	o := Observation{Latency: 12 * time.Millisecond, Bytes: 512, Value: 42}
	b.ReportAllocs()
	for b.Loop() {
		w.RecordAt(now, o)
	}
}

// BenchmarkClockReads is the floor under BenchmarkRecordWithClock: two readings of the
// system clock and nothing else.
func BenchmarkClockReads(b *testing.B) {
	clk := NewSystemClock()
	var d time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := clk.Now()
		d += clk.Now().Sub(start)
	}
	_ = d
}

// BenchmarkRecordWithClock is a whole timed request: read the clock, read it again at
// the end, record.
func BenchmarkRecordWithClock(b *testing.B) {
	w, err := NewWindow(WindowConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	clk := w.Clock()
	b.ReportAllocs()
	for b.Loop() {
		start := clk.Now()
		end := clk.Now()
		w.RecordAt(end, Observation{Latency: end.Sub(start)})
	}
}

func BenchmarkStartDone(b *testing.B) {
	w, clk := newTestWindow(b, WindowConfig{})
	now := clk.Now()
	o := Observation{Latency: 12 * time.Millisecond, Bytes: 512}
	b.ReportAllocs()
	for b.Loop() {
		w.StartAt(now)
		w.DoneAt(now, o)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	w, err := NewWindow(WindowConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	now := w.Clock().Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		o := Observation{Latency: 12 * time.Millisecond}
		for pb.Next() {
			w.RecordAt(now, o)
		}
	})
}

// BenchmarkRecordParallelDisjoint is BenchmarkRecordParallel with a window per
// goroutine: no cache line is shared, so it is the most that striping a window's
// counters across goroutines could bring RecordParallel down to.
func BenchmarkRecordParallelDisjoint(b *testing.B) {
	clk := NewSystemClock()
	now := clk.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w, err := NewWindow(WindowConfig{}, clk)
		if err != nil {
			b.Error(err)
			return
		}
		o := Observation{Latency: 12 * time.Millisecond}
		for pb.Next() {
			w.RecordAt(now, o)
		}
	})
}

// fillWindow records 200 requests into each of the window's buckets, with latencies
// spread over two decades.
func fillWindow(b *testing.B) (*Window, time.Time) {
	w, clk := newTestWindow(b, WindowConfig{})
	at := clk.Now()
	for s := range 60 {
		for i := range 200 {
			w.RecordAt(at, Observation{Latency: time.Duration(1+i*i) * 50 * time.Microsecond})
		}
		if s < 59 {
			at = clk.Advance(time.Second)
		}
	}
	return w, at
}

// BenchmarkSnapshotWholeWindow reads a whole 60-bucket window once per bucket, as a loop
// ticking every second does: the running histogram moves forward by one bucket per read.
func BenchmarkSnapshotWholeWindow(b *testing.B) {
	w, at := fillWindow(b)
	w.SnapshotAt(at, 0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		at = at.Add(time.Second)
		for i := range 200 {
			w.RecordAt(at, Observation{Latency: time.Duration(1+i*i) * 50 * time.Microsecond})
		}
		b.StartTimer()
		w.SnapshotAt(at, 0)
	}
}

// BenchmarkSnapshotRepeated reads the same whole window again and again.
func BenchmarkSnapshotRepeated(b *testing.B) {
	w, at := fillWindow(b)
	b.ReportAllocs()
	for b.Loop() {
		w.SnapshotAt(at, 0)
	}
}

// BenchmarkSnapshotNaive merges all 60 buckets on every read, the cost the running
// histogram avoids.
func BenchmarkSnapshotNaive(b *testing.B) {
	w, at := fillWindow(b)
	n := w.epochOf(at.UnixNano())
	var h Histogram
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		for m := n - 59; m <= n; m++ {
			addBucket(&h, w.bucketFor(m))
		}
		h.Quantile(0.99)
	}
}

// BenchmarkSnapshotPanicSpan reads the last 6 buckets, as Knative's panic window does.
func BenchmarkSnapshotPanicSpan(b *testing.B) {
	w, at := fillWindow(b)
	b.ReportAllocs()
	for b.Loop() {
		w.SnapshotAt(at, 6*time.Second)
	}
}

func BenchmarkPeakLatencyObserve(b *testing.B) {
	p := NewPeakLatency(0)
	at := t0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at = at.Add(time.Millisecond)
		p.Observe(at, time.Duration(i%100)*time.Millisecond)
	}
}

// BenchmarkSnapshot1000Windows reads the whole of 1,000 windows, as a loop ticking
// every second over 1,000 backends does: again within the same second (still), or one
// second later after each window took one more request (moving: each read adds the
// bucket that completed and gives back the one that left; the recording is not timed).
// Each window holds 60 seconds of one request a second, with a user value (tokens,
// say), as an AI gateway records. ns/window is ns/op over 1,000:
// what this package adds to an on_tick per window read.
func BenchmarkSnapshot1000Windows(b *testing.B) {
	clk := NewManualClock(t0)
	ws := make([]*Window, 1000)
	for i := range ws {
		w, err := NewWindow(WindowConfig{}, clk)
		if err != nil {
			b.Fatal(err)
		}
		for s := range 60 {
			w.RecordAt(t0.Add(time.Duration(s)*time.Second), Observation{Latency: time.Duration(1+i%50) * time.Millisecond, Value: 120})
		}
		ws[i] = w
	}
	now := t0.Add(60 * time.Second)
	readAll := func() {
		for _, w := range ws {
			w.SnapshotAt(now, 0)
		}
	}
	readAll()
	perWindow := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(ws)), "ns/window")
	}
	b.Run("still", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			readAll()
		}
		perWindow(b)
	})
	b.Run("moving", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			now = now.Add(time.Second)
			for j, w := range ws {
				w.RecordAt(now, Observation{Latency: time.Duration(1+(i+j)%50) * time.Millisecond, Value: 120})
			}
			b.StartTimer()
			readAll()
		}
		perWindow(b)
	})
}

// BenchmarkRecordAtCompact is BenchmarkRecordAt for a compact window.
func BenchmarkRecordAtCompact(b *testing.B) {
	w, clk := newTestWindow(b, WindowConfig{Compact: true})
	now := clk.Now()
	o := Observation{Latency: 12 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		w.RecordAt(now, o)
	}
}

// BenchmarkStartDoneCompact is BenchmarkStartDone for a compact window.
func BenchmarkStartDoneCompact(b *testing.B) {
	w, clk := newTestWindow(b, WindowConfig{Compact: true})
	now := clk.Now()
	o := Observation{Latency: 12 * time.Millisecond, Bytes: 512}
	b.ReportAllocs()
	for b.Loop() {
		w.StartAt(now)
		w.DoneAt(now, o)
	}
}

// BenchmarkSnapshotCompact reads a whole compact window, filled as fillWindow fills a
// default one, once per bucket as a loop ticking every second does: it walks the
// window's buckets and its five histograms.
func BenchmarkSnapshotCompact(b *testing.B) {
	w, clk := newTestWindow(b, WindowConfig{Compact: true})
	at := clk.Now()
	rec := func() {
		for i := range 200 {
			w.RecordAt(at, Observation{Latency: time.Duration(1+i*i) * 50 * time.Microsecond})
		}
	}
	for s := range 60 {
		rec()
		if s < 59 {
			at = clk.Advance(time.Second)
		}
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		at = at.Add(time.Second)
		rec()
		b.StartTimer()
		w.SnapshotAt(at, 0)
	}
}
