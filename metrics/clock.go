package metrics

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A Clock tells the time to windows, moving averages and loops, and makes the timers
// they wait on. Injecting one lets tests and the simulator run hours of traffic without
// sleeping. Implementations must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that sends the clock's time on its channel once d has
	// passed on this clock; at once when d <= 0.
	NewTimer(d time.Duration) Timer
}

// A Timer is a single-shot timer made by a [Clock]. It is safe for concurrent use.
type Timer interface {
	// C returns the channel the time is sent on, once, when the timer fires. It has a
	// buffer of one, so a timer fires whether or not anybody receives.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether it stopped it: false when
	// the timer had already fired or been stopped.
	Stop() bool
}

// SystemClock is the real clock. Its readings are anchored to the wall clock once, when
// the clock is made, and then advance with the monotonic clock, so a step of the wall
// clock never moves a window backwards. A reading costs one monotonic clock read (about
// half of [time.Now], which reads two clocks; BenchmarkClockReads).
type SystemClock struct {
	base time.Time
}

// NewSystemClock returns a real clock anchored at the current time.
func NewSystemClock() *SystemClock {
	return &SystemClock{base: time.Now()}
}

// Now returns the current time.
func (c *SystemClock) Now() time.Time {
	if c == nil || c.base.IsZero() {
		return time.Now()
	}
	return c.base.Add(time.Since(c.base))
}

// NewTimer returns a [time.Timer] as a [Timer].
func (c *SystemClock) NewTimer(d time.Duration) Timer {
	return systemTimer{time.NewTimer(d)}
}

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }
func (t systemTimer) Stop() bool          { return t.t.Stop() }

// ManualClock is a clock that moves only when told to. Its timers fire when [ManualClock.Advance]
// or [ManualClock.Set] moves it to or past their deadlines. The zero value reads the
// Unix epoch. It is safe for concurrent use.
type ManualClock struct {
	ns atomic.Int64

	mu      sync.Mutex
	timers  []*manualTimer // pending, in no order
	changed chan struct{}  // closed and replaced when timers changes
}

// NewManualClock returns a manual clock reading t.
func NewManualClock(t time.Time) *ManualClock {
	c := new(ManualClock)
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's current reading.
func (c *ManualClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Set moves the clock to t, backwards too, and fires the timers due by t.
func (c *ManualClock) Set(t time.Time) {
	c.ns.Store(t.UnixNano())
	c.fire()
}

// Advance moves the clock forward by d, fires the timers due by the new reading and
// returns it.
func (c *ManualClock) Advance(d time.Duration) time.Time {
	now := time.Unix(0, c.ns.Add(int64(d)))
	c.fire()
	return now
}

// NewTimer returns a timer that fires when the clock reaches its current reading plus
// d.
func (c *ManualClock) NewTimer(d time.Duration) Timer {
	t := &manualTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	t.at = c.ns.Load() + int64(d)
	c.timers = append(c.timers, t)
	c.notifyLocked()
	c.mu.Unlock()
	c.fire()
	return t
}

// NextTimer returns the deadline of the earliest timer waiting to fire, and whether
// there is one.
func (c *ManualClock) NextTimer() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	at := c.timers[0].at
	for _, t := range c.timers[1:] {
		at = min(at, t.at)
	}
	return time.Unix(0, at), true
}

// Timers returns how many timers are waiting to fire.
func (c *ManualClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitTimers waits until at least n timers are waiting to fire, or ctx ends: a test
// calls it before [ManualClock.Advance] to know that the goroutine it started has armed
// its timer.
func (c *ManualClock) WaitTimers(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if len(c.timers) >= n {
			c.mu.Unlock()
			return nil
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *ManualClock) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// fire sends the time on every timer due by the clock's reading and forgets them.
func (c *ManualClock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.ns.Load()
	n := len(c.timers)
	c.timers = slices.DeleteFunc(c.timers, func(t *manualTimer) bool {
		if t.at > now {
			return false
		}
		t.ch <- time.Unix(0, now) // never blocks: each timer fires once into a buffer of one
		return true
	})
	if len(c.timers) != n {
		c.notifyLocked()
	}
}

type manualTimer struct {
	c  *ManualClock
	at int64 // UnixNano deadline; guarded by c.mu
	ch chan time.Time
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

func (t *manualTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	c.notifyLocked()
	return true
}

var (
	_ Clock = (*SystemClock)(nil)
	_ Clock = (*ManualClock)(nil)
)
