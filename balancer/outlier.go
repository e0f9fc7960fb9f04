package balancer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// Outlier configures passive outlier detection, modelled on Envoy's
// (envoy.config.cluster.v3.OutlierDetection, "Outlier detection" in Envoy's
// architecture overview). Four detectors:
//
//   - consecutive 5xx: a backend that fails Consecutive5xx requests in a row (status
//     500 or more, or a transport error) is ejected at once, from [Result.Done];
//   - consecutive gateway failures: the same for 502, 503, 504 and transport errors;
//   - success rate: every Interval, among backends with at least RequestVolume
//     requests in the last Interval, if there are at least MinimumHosts of them, a
//     backend whose success rate is below mean − SuccessRateStdevFactor × stdev is
//     ejected (Envoy's success_rate_stdev_factor, given here as a float: 1.9);
//   - latency: every Interval, among the same backends, one whose mean latency is
//     above LatencyFactor × the median of their mean latencies is ejected. Envoy has no
//     latency detector; this one applies the same volume and host minimums, with a
//     median so that one outlier cannot hide itself by raising the mean.
//
// An ejection lasts BaseEjectionTime × 2^k, at most MaxEjectionTime, where k counts the
// backend's earlier passive ejections and drops by one every Interval the backend is
// not ejected (Envoy multiplies by k instead; we back off exponentially). At most
// MaxEjectionPercent of the pool is ejected at once, but always at least one backend;
// beyond that ejections are refused and counted ([Stats.EjectionsSkipped]), as Envoy
// does, so a pool-wide outage does not eject the whole pool. The interval detectors run
// in [Pool.Run] or [Pool.Sweep]; the consecutive ones need neither.
//
// In the integer settings zero means the default and a negative value turns the
// detector off. The zero value is Envoy's defaults with the latency detector off.
type Outlier struct {
	// Consecutive5xx is the threshold of consecutive failures. Default 5.
	Consecutive5xx int
	// ConsecutiveGatewayFailure is the threshold of consecutive gateway failures.
	// Default 5.
	ConsecutiveGatewayFailure int
	// Interval is the period of the success-rate and latency detectors and of the
	// forgiveness of the back-off multiplier. Zero means 10 s.
	Interval time.Duration
	// BaseEjectionTime is the first ejection's length. Zero means 30 s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps an ejection's length. Zero means 300 s; at least
	// BaseEjectionTime.
	MaxEjectionTime time.Duration
	// MaxEjectionPercent caps the share of the pool ejected at once, 1..100. Zero
	// means 10.
	MaxEjectionPercent int
	// MinimumHosts is how many backends with enough volume the interval detectors
	// need. Default 5.
	MinimumHosts int
	// RequestVolume is the least number of requests in the last Interval for a
	// backend to count in the interval detectors. Default 100.
	RequestVolume int
	// SuccessRateStdevFactor sets the success-rate threshold; zero means 1.9, negative
	// turns the detector off.
	SuccessRateStdevFactor float64
	// LatencyFactor sets the latency threshold as a multiple of the median; zero or
	// negative turns the latency detector off (its default). When set, above 1.
	LatencyFactor float64
}

// Validate reports every setting out of range.
func (o Outlier) Validate() error {
	var errs []error
	if o.Interval < 0 || o.BaseEjectionTime < 0 || o.MaxEjectionTime < 0 {
		errs = append(errs, fmt.Errorf("%w: outlier durations must not be negative", ErrInvalidConfig))
	}
	d := o.withDefaults()
	if d.MaxEjectionTime < d.BaseEjectionTime {
		errs = append(errs, fmt.Errorf("%w: max ejection time %v below base ejection time %v", ErrInvalidConfig, d.MaxEjectionTime, d.BaseEjectionTime))
	}
	if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		errs = append(errs, fmt.Errorf("%w: max ejection percent %d out of [1, 100]", ErrInvalidConfig, o.MaxEjectionPercent))
	}
	if math.IsNaN(o.SuccessRateStdevFactor) || math.IsInf(o.SuccessRateStdevFactor, 0) {
		errs = append(errs, fmt.Errorf("%w: success rate stdev factor %v", ErrInvalidConfig, o.SuccessRateStdevFactor))
	}
	if math.IsNaN(o.LatencyFactor) || math.IsInf(o.LatencyFactor, 0) || (o.LatencyFactor > 0 && o.LatencyFactor <= 1) {
		errs = append(errs, fmt.Errorf("%w: latency factor %v must be above 1", ErrInvalidConfig, o.LatencyFactor))
	}
	return errors.Join(errs...)
}

func orDefault(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (o Outlier) withDefaults() Outlier {
	o.Consecutive5xx = orDefault(o.Consecutive5xx, 5)
	o.ConsecutiveGatewayFailure = orDefault(o.ConsecutiveGatewayFailure, 5)
	o.MinimumHosts = orDefault(o.MinimumHosts, 5)
	o.RequestVolume = orDefault(o.RequestVolume, 100)
	if o.MaxEjectionPercent == 0 {
		o.MaxEjectionPercent = 10
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.BaseEjectionTime == 0 {
		o.BaseEjectionTime = 30 * time.Second
	}
	if o.MaxEjectionTime == 0 {
		o.MaxEjectionTime = max(300*time.Second, o.BaseEjectionTime)
	}
	if o.SuccessRateStdevFactor == 0 {
		o.SuccessRateStdevFactor = 1.9
	}
	return o
}

// Run runs the interval detectors every [Outlier.Interval] on the pool's clock until
// ctx is done, and returns ctx's error. It is optional: without it only the
// consecutive-failure detectors eject. Run it at most once per pool.
func (p *Pool) Run(ctx context.Context) error {
	return metrics.Every(ctx, p.clock, p.outlier.Interval, func() { p.Sweep(p.clock.Now()) })
}

// Sweep runs the interval detectors once at now, over the last [Outlier.Interval] of
// each backend's window, ejects the outliers it finds and forgives one step of
// back-off to each backend not ejected. It returns the ids ejected. [Pool.Run] calls
// it; tests call it with a manual clock.
func (p *Pool) Sweep(now time.Time) []string {
	// Read the windows without the pool's lock, which Done may need.
	p.mu.Lock()
	members := slices.Clone(p.order)
	p.mu.Unlock()
	ns := now.UnixNano()
	o := &p.outlier
	type stat struct {
		b        *Backend
		success  float64
		meanLat  float64
		eligible bool
	}
	var stats []stat
	forgive := ns-p.lastSweep.Swap(ns) >= int64(o.Interval)/2
	for _, b := range members {
		ejected := b.ejectedUntil.Load() > ns
		if forgive && !ejected && b.ejections.Load() > 0 {
			b.ejections.Add(-1)
		}
		if ejected || b.Weight() == 0 {
			continue
		}
		snap := b.window.SnapshotAt(now, o.Interval)
		n := snap.Count - snap.Canceled
		if o.RequestVolume > 0 && n < uint64(o.RequestVolume) {
			continue
		}
		if n == 0 {
			continue
		}
		stats = append(stats, stat{b: b, success: 1 - float64(snap.Errors)/float64(n), meanLat: float64(snap.Mean)})
	}
	var out []string
	if len(stats) < max(o.MinimumHosts, 1) {
		return nil
	}
	if o.SuccessRateStdevFactor > 0 {
		var sum, sq float64
		for _, s := range stats {
			sum += s.success
		}
		mean := sum / float64(len(stats))
		for _, s := range stats {
			sq += (s.success - mean) * (s.success - mean)
		}
		stdev := math.Sqrt(sq / float64(len(stats)))
		threshold := mean - o.SuccessRateStdevFactor*stdev
		for i := range stats {
			if stats[i].success < threshold {
				stats[i].eligible = true
			}
		}
	}
	if o.LatencyFactor > 1 {
		lats := make([]float64, len(stats))
		for i, s := range stats {
			lats[i] = s.meanLat
		}
		slices.Sort(lats)
		median := lats[len(lats)/2]
		if len(lats)%2 == 0 {
			median = (lats[len(lats)/2-1] + lats[len(lats)/2]) / 2
		}
		for i := range stats {
			if median > 0 && stats[i].meanLat > o.LatencyFactor*median {
				stats[i].eligible = true
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range stats {
		if s.eligible && !s.b.removed.Load() && s.b.ejectedUntil.Load() <= ns {
			p.passiveEjectLocked(s.b, ns)
			if s.b.ejectedUntil.Load() > ns {
				out = append(out, s.b.id)
			}
		}
	}
	return out
}
