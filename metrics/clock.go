package metrics

import (
	"sync/atomic"
	"time"
)

// A Clock tells the time to windows, moving averages and loops. Injecting one lets tests
// and the simulator run hours of traffic without sleeping. Implementations must be safe
// for concurrent use.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock. Its readings are anchored to the wall clock once, when
// the clock is made, and then advance with the monotonic clock, so a step of the wall
// clock never moves a window backwards. A reading costs one monotonic clock read (about
// half of [time.Now], which reads two clocks).
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

// ManualClock is a clock that moves only when told to. The zero value reads the Unix
// epoch. It is safe for concurrent use.
type ManualClock struct {
	ns atomic.Int64
}

// NewManualClock returns a manual clock reading t.
func NewManualClock(t time.Time) *ManualClock {
	c := new(ManualClock)
	c.Set(t)
	return c
}

// Now returns the clock's current reading.
func (c *ManualClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Set moves the clock to t, backwards too.
func (c *ManualClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Advance moves the clock forward by d and returns the new reading.
func (c *ManualClock) Advance(d time.Duration) time.Time {
	return time.Unix(0, c.ns.Add(int64(d)))
}

var (
	_ Clock = (*SystemClock)(nil)
	_ Clock = (*ManualClock)(nil)
)
