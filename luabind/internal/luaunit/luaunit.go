// Package luaunit converts between Go's time values and the numbers a Lua script sees:
// durations in seconds, instants in Unix seconds, latencies in milliseconds. Package
// luabind (the runtime) and package luatest (its test harness) share it, so that a
// fixture reads a number exactly as the runtime would show it.
package luaunit

import (
	"math"
	"time"
)

// UnixSeconds returns t in Unix seconds.
func UnixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Seconds converts Lua seconds to a duration, refusing what no duration can hold.
func Seconds(f float64) (time.Duration, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e9 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// Instant converts Lua Unix seconds to a time, refusing what is not a time between the
// years 1 and 5000.
func Instant(f float64) (time.Time, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 95e9 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))), true
}

// Millis converts Lua milliseconds (a latency) to a duration.
func Millis(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
