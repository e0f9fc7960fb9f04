package metrics

import (
	"context"
	"testing"
	"time"
)

func TestManualClockTimers(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := NewManualClock(t0)
	short, long := c.NewTimer(time.Second), c.NewTimer(time.Minute)
	stopped := c.NewTimer(2 * time.Second)
	if at, ok := c.NextTimer(); !ok || !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("NextTimer = %v, %v; want %v", at, ok, t0.Add(time.Second))
	}
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop of a pending timer must report true once")
	}
	fired := func(tm Timer) bool {
		select {
		case <-tm.C():
			return true
		default:
			return false
		}
	}
	c.Advance(999 * time.Millisecond)
	if fired(short) {
		t.Error("timer fired before its deadline")
	}
	c.Advance(time.Millisecond)
	if !fired(short) || fired(long) {
		t.Error("Advance to the first deadline must fire the first timer only")
	}
	if short.Stop() {
		t.Error("Stop of a fired timer reports true")
	}
	c.Set(t0.Add(time.Hour))
	if !fired(long) || fired(stopped) {
		t.Error("Set past the deadlines must fire the pending timer and not the stopped one")
	}
	if n := c.Timers(); n != 0 {
		t.Errorf("%d timers pending, want 0", n)
	}
	if now := c.NewTimer(0); !fired(now) {
		t.Error("a timer of zero must fire at once")
	}
}

func TestManualClockWaitTimers(t *testing.T) {
	c := NewManualClock(time.Unix(0, 0))
	done := make(chan Timer)
	go func() { done <- c.NewTimer(time.Second) }()
	if err := c.WaitTimers(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	tm := <-done
	c.Advance(time.Second)
	<-tm.C()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.WaitTimers(ctx, 1); err == nil {
		t.Error("WaitTimers on a canceled context with no timers returned nil")
	}
}

func TestSystemClockTimer(t *testing.T) {
	tm := NewSystemClock().NewTimer(time.Millisecond)
	<-tm.C() // a real timer fires; no sleep decides the outcome
	if tm.Stop() {
		t.Error("Stop of a fired timer reports true")
	}
}
