package metrics

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestEWMA(t *testing.T) {
	e := NewEWMA(time.Second)
	if e.Value() != 0 {
		t.Fatal("empty EWMA is not 0")
	}
	e.Observe(t0, 100)
	if e.Value() != 100 {
		t.Fatalf("first sample: %v", e.Value())
	}
	// One time constant later, a sample of 0 moves the average by 1-1/e.
	e.Observe(t0.Add(time.Second), 0)
	if want := 100 / math.E; math.Abs(e.Value()-want) > 0.01 {
		t.Errorf("after one τ: %v, want %v", e.Value(), want)
	}
	// A sample at the same instant does not move it (weight 1 on the old value).
	v := e.Value()
	e.Observe(t0.Add(time.Second), 1000)
	if e.Value() != v {
		t.Errorf("same-instant sample moved the average: %v -> %v", v, e.Value())
	}
	var zero EWMA // τ = DefaultDecay
	zero.Observe(t0, 10)
	zero.Observe(t0.Add(DefaultDecay), 0)
	if want := 10 / math.E; math.Abs(zero.Value()-want) > 0.01 {
		t.Errorf("zero-value EWMA after one default τ: %v, want %v", zero.Value(), want)
	}
}

func TestPeakLatency(t *testing.T) {
	p := NewPeakLatency(time.Second)
	if p.ValueAt(t0) != 0 {
		t.Fatal("empty peak EWMA is not 0")
	}
	p.Observe(t0, 10*time.Millisecond)
	p.Observe(t0.Add(time.Millisecond), 100*time.Millisecond) // a peak replaces at once
	if got := p.ValueAt(t0.Add(time.Millisecond)); got != 100*time.Millisecond {
		t.Errorf("after a peak: %v, want 100ms", got)
	}
	// Idle for a time constant, it decays towards zero.
	if got, want := p.ValueAt(t0.Add(time.Second+time.Millisecond)), time.Duration(math.Round(float64(100*time.Millisecond)/math.E)); math.Abs(float64(got-want)) > float64(100*time.Microsecond) {
		t.Errorf("after idling one τ: %v, want %v", got, want)
	}
	// A lower sample decays towards it.
	p.Observe(t0.Add(time.Second+time.Millisecond), 10*time.Millisecond)
	want := 10*time.Millisecond + time.Duration(math.Round(float64(90*time.Millisecond)/math.E))
	if got := p.ValueAt(t0.Add(time.Second + time.Millisecond)); math.Abs(float64(got-want)) > float64(100*time.Microsecond) {
		t.Errorf("after a lower sample: %v, want %v", got, want)
	}
	// A reading from before the last sample does not decay.
	if got := p.ValueAt(t0); got != p.ValueAt(t0.Add(time.Second+time.Millisecond)) {
		t.Errorf("reading from the past decayed: %v", got)
	}
}

func TestEWMAConcurrent(t *testing.T) {
	var e EWMA
	var p PeakLatency
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				at := t0.Add(time.Duration(i) * time.Millisecond)
				e.Observe(at, 5)
				p.Observe(at, time.Duration(g+1)*time.Millisecond)
			}
		})
	}
	wg.Wait()
	if e.Value() != 5 {
		t.Errorf("EWMA of constant 5 is %v", e.Value())
	}
	if got := p.ValueAt(t0.Add(time.Second)); got <= 0 || got > 8*time.Millisecond {
		t.Errorf("peak EWMA %v out of (0, 8ms]", got)
	}
}

func TestClocks(t *testing.T) {
	m := NewManualClock(t0)
	if !m.Now().Equal(t0) {
		t.Errorf("manual clock reads %v", m.Now())
	}
	if got := m.Advance(time.Second); !got.Equal(t0.Add(time.Second)) || !m.Now().Equal(got) {
		t.Errorf("advance: %v", got)
	}
	var zero ManualClock
	if zero.Now().UnixNano() != 0 {
		t.Errorf("zero manual clock reads %v", zero.Now())
	}
	s := NewSystemClock()
	a := s.Now()
	b := s.Now()
	if b.Before(a) || time.Since(a) < 0 || time.Since(a) > time.Minute {
		t.Errorf("system clock readings %v, %v", a, b)
	}
	var nilClock *SystemClock
	if nilClock.Now().IsZero() {
		t.Error("nil system clock reads zero")
	}
}

func TestDecayWeightApproximation(t *testing.T) {
	tau := 10 * time.Second
	for _, d := range []uint32{1, 10, 100, 1000, 6000, 6250, 6300, 100000} { // units of 16 µs
		x := float64(d) * float64(stampUnit) / float64(tau)
		if got, want := decayWeight(1+d, 1, tau), math.Exp(-x); math.Abs(got-want) > 2e-7 {
			t.Errorf("gap %d units (x = %.5f): %v, want %v", d, x, got, want)
		}
	}
}
