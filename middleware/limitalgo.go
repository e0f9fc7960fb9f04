package middleware

import (
	"cmp"
	"errors"
	"math"
	"time"
)

// A LimitAlgorithm turns what one sample window measured into the next concurrency
// limit. The [Admission]'s adaptive limiter ([AdaptiveConfig]) gathers the samples,
// applies the bounds and the no-growth-on-failure rule around the algorithm, and calls
// Update from one goroutine at a time for each limit, so an algorithm keeps its state
// in plain fields and need not be safe for concurrent use. Update runs off the
// request's fast path (once per sample window), never while a lock the request path
// waits on is held.
type LimitAlgorithm interface {
	// Update returns the next limit from the current one and the window's sample. The
	// result is bounded by the limiter afterwards; NaN or ±Inf keeps the old limit.
	Update(limit float64, s LimitSample) float64
}

// LimitSample is one sample window of an adaptive limit.
type LimitSample struct {
	// RTT is the mean latency of the window's successful requests; zero when none
	// succeeded (then Dropped is set).
	RTT time.Duration
	// MinRTT is the smallest latency among them.
	MinRTT time.Duration
	// NoLoadRTT is the limiter's estimate of the backend's latency without queueing:
	// the smallest sub-span mean over the last [AdaptiveConfig.NoLoadSpan] (see
	// [AdaptiveConfig] for how it is probed).
	NoLoadRTT time.Duration
	// MaxInFlight is the most requests in flight at once under this limit in the
	// window.
	MaxInFlight int
	// Count is the number of requests that ended in the window, Errors those among
	// them that failed; latencies of failures are not in RTT, so an instant error
	// cannot pass for a fast backend.
	Count, Errors int
	// Dropped reports an overload signal: the window's failure ratio reached
	// [AdaptiveConfig.ErrorThreshold]. The limiter never lets the limit grow in a
	// dropped window, whatever the algorithm returns.
	Dropped bool
}

// LimitAlgorithmFunc adapts a function to [LimitAlgorithm].
type LimitAlgorithmFunc func(limit float64, s LimitSample) float64

// Update calls f.
func (f LimitAlgorithmFunc) Update(limit float64, s LimitSample) float64 { return f(limit, s) }

var (
	_ LimitAlgorithm = (*Vegas)(nil)
	_ LimitAlgorithm = (*Gradient2)(nil)
	_ LimitAlgorithm = (*AIMD)(nil)
)

// log10Root is Netflix concurrency-limits' Log10RootFunction: log10 of the limit, at
// least 1, the step Vegas grows and shrinks by.
func log10Root(limit float64) float64 { return max(1, math.Log10(limit)) }

// Vegas is TCP Vegas's delay-based congestion avoidance applied to concurrency, after
// Netflix concurrency-limits' VegasLimit (com.netflix.concurrency.limits.limit
// .VegasLimit; Brakmo and Peterson, "TCP Vegas", IEEE JSAC 1995). It estimates the
// queue the limit builds as limit × (1 − NoLoadRTT/RTT) and keeps it between Alpha and
// Beta requests: below Threshold it grows by Beta, below Alpha by log10(limit), above
// Beta it shrinks by log10(limit); a dropped window shrinks it. It does not grow
// while under half the limit is in use (the application, not the backend, limits).
//
// Unlike Netflix's, it does not reset its no-load latency to the current one every
// few hundred samples (its probe); the limiter's rolling minimum does that job (see
// [AdaptiveConfig.NoLoadSpan]). The zero value uses Netflix's defaults. A Vegas holds
// no state; a value may be shared by several limits.
type Vegas struct {
	// Alpha and Beta bound the estimated queue, as multiples of log10(limit); zero
	// means 3 and 6.
	Alpha, Beta float64
}

// Update implements [LimitAlgorithm].
func (v *Vegas) Update(limit float64, s LimitSample) float64 {
	step := log10Root(limit)
	if s.Dropped || s.RTT <= 0 {
		return limit - step
	}
	if float64(s.MaxInFlight)*2 < limit {
		return limit
	}
	alpha, beta := cmp.Or(v.Alpha, 3)*step, cmp.Or(v.Beta, 6)*step
	noLoad := s.NoLoadRTT
	if noLoad <= 0 || noLoad > s.RTT {
		noLoad = s.RTT
	}
	queue := math.Ceil(limit * (1 - float64(noLoad)/float64(s.RTT)))
	switch {
	case queue <= step:
		return limit + beta
	case queue < alpha:
		return limit + step
	case queue > beta:
		return limit - step
	}
	return limit
}

// Gradient2 is Netflix concurrency-limits' Gradient2Limit
// (com.netflix.concurrency.limits.limit.Gradient2Limit): it compares the short-term
// RTT (this window's) with a long-term exponential average and scales the limit by
// the gradient tolerance × long/short, clamped to [0.5, 1], plus a queue allowance:
// limit × gradient + Queue. When the long average exceeds twice the short one (load
// fell after a long overload) the long average decays by 5% per window, so the limit
// recovers without waiting out the average. It does not grow while under half the
// limit is in use. It ignores the no-load estimate, so it follows a backend that
// becomes slower for good; the price is that a slow drift in latency is absorbed.
//
// A Gradient2 keeps state (the long average): each limit needs its own, which
// [AdaptiveConfig.Algorithm]'s constructor provides. The zero value uses Netflix's
// defaults.
type Gradient2 struct {
	// Tolerance is how much the short RTT may exceed the long one before the limit
	// shrinks; zero means 1.5.
	Tolerance float64
	// LongWindow is the long average's length in sample windows; zero means 600.
	LongWindow int
	// Queue is the headroom added to each new limit; zero means 4.
	Queue float64

	long  float64 // the long-term RTT average, nanoseconds
	count int     // samples averaged, for the warm-up
}

// Update implements [LimitAlgorithm].
func (g *Gradient2) Update(limit float64, s LimitSample) float64 {
	if s.RTT <= 0 {
		return limit - log10Root(limit)
	}
	short := float64(s.RTT)
	// The long average warms up as a plain mean over its first ten samples, as
	// Netflix's ExpAvgMeasurement does, so the first RTT does not weigh 1/600.
	n := float64(cmp.Or(g.LongWindow, 600))
	g.count++
	if g.count <= 10 {
		g.long += (short - g.long) / float64(g.count)
	} else {
		g.long += (short - g.long) * 2 / (n + 1)
	}
	if g.long/short > 2 {
		g.long *= 0.95
	}
	if float64(s.MaxInFlight) < limit/2 {
		return limit
	}
	gradient := max(0.5, min(1, cmp.Or(g.Tolerance, 1.5)*g.long/short))
	return limit*gradient + cmp.Or(g.Queue, 4)
}

// AIMD is additive increase, multiplicative decrease, after Netflix concurrency-limits'
// AIMDLimit (and TCP Reno's congestion window, Jacobson 1988): the limit grows by one
// per window while at least half of it is in use, and is multiplied by Backoff when
// a window is dropped or its RTT passes Timeout. It needs no latency model, so it
// suits a backend whose latency says little about its load. An AIMD holds no state.
type AIMD struct {
	// Backoff multiplies the limit on a drop, in (0, 1); zero means 0.9.
	Backoff float64
	// Timeout is the RTT over which a window counts as dropped; zero means 5 s.
	Timeout time.Duration
}

// Update implements [LimitAlgorithm].
func (a *AIMD) Update(limit float64, s LimitSample) float64 {
	if s.Dropped || s.RTT <= 0 || s.RTT > cmp.Or(a.Timeout, 5*time.Second) {
		return limit * cmp.Or(a.Backoff, 0.9)
	}
	if float64(s.MaxInFlight)*2 >= limit {
		return limit + 1
	}
	return limit
}

// validateAlgorithms checks the settings of the shipped algorithms.
func validateAlgorithm(a LimitAlgorithm) error {
	switch a := a.(type) {
	case *Vegas:
		if a.Alpha < 0 || a.Beta < 0 || a.Beta != 0 && cmp.Or(a.Alpha, 3) >= a.Beta {
			return errors.New("vegas: alpha and beta must be >= 0 with alpha < beta")
		}
	case *Gradient2:
		if a.Tolerance < 0 || math.IsNaN(a.Tolerance) || a.LongWindow < 0 || a.Queue < 0 {
			return errors.New("gradient2: negative tolerance, long window or queue")
		}
	case *AIMD:
		if a.Backoff < 0 || a.Backoff >= 1 || a.Timeout < 0 {
			return errors.New("aimd: backoff out of [0, 1) or negative timeout")
		}
	}
	return nil
}
