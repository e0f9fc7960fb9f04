// Package otelmetrics exports the windows of a [metrics.Registry] as OpenTelemetry
// observable gauges, with the number of series bounded.
//
// Each collection snapshots the registry's windows and reports, per scope, the N busiest
// windows (by requests in the span; default 100), each with the attributes "scope" and
// "key":
//
//	autoscalelua.window.rate           requests per second
//	autoscalelua.window.error_rate     errors / requests
//	autoscalelua.window.concurrency    time-weighted average of requests in flight
//	autoscalelua.window.in_flight      requests in flight now
//	autoscalelua.window.latency.p50    seconds
//	autoscalelua.window.latency.p99    seconds
//
// Usage:
//
//	reg, _ := metrics.NewRegistry()
//	meter := otel.GetMeterProvider().Meter("my-gateway")
//	registration, err := otelmetrics.Register(meter, reg)
//	...
//	defer registration.Unregister()
package otelmetrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// DefaultTopN is how many windows per scope are exported when no option says otherwise.
const DefaultTopN = 100

type config struct {
	topN   int
	span   time.Duration
	scopes []metrics.Scope
}

// Option configures [Register].
type Option func(*config) error

// WithTopN sets how many windows per scope are exported: the n with the most requests in
// the span. n must be at least 1.
func WithTopN(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("otelmetrics: top N %d is below 1", n)
		}
		c.topN = n
		return nil
	}
}

// WithSpan sets the span the gauges summarize; zero (the default) means each window's
// whole length.
func WithSpan(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("otelmetrics: negative span %v", d)
		}
		c.span = d
		return nil
	}
}

// WithScopes limits the export to the given scopes; by default every scope is exported.
func WithScopes(s ...metrics.Scope) Option {
	return func(c *config) error {
		c.scopes = slices.Clone(s)
		return nil
	}
}

type gauges struct {
	rate, errorRate, concurrency, inFlight, p50, p99 metric.Float64ObservableGauge
}

// Register creates the gauges on meter and registers a callback that reports reg's
// windows at each collection. Unregister the returned registration to stop.
func Register(meter metric.Meter, reg *metrics.Registry, opts ...Option) (metric.Registration, error) {
	if meter == nil || reg == nil {
		return nil, errors.New("otelmetrics: nil meter or registry")
	}
	cfg := config{topN: DefaultTopN}
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("otelmetrics: nil option"))
			continue
		}
		if err := o(&cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var g gauges
	for _, d := range []struct {
		dst        *metric.Float64ObservableGauge
		name, unit string
		desc       string
	}{
		{&g.rate, "autoscalelua.window.rate", "{request}/s", "Requests per second over the window."},
		{&g.errorRate, "autoscalelua.window.error_rate", "1", "Failed requests over all requests in the window."},
		{&g.concurrency, "autoscalelua.window.concurrency", "{request}", "Time-weighted average of requests in flight over the window."},
		{&g.inFlight, "autoscalelua.window.in_flight", "{request}", "Requests in flight now."},
		{&g.p50, "autoscalelua.window.latency.p50", "s", "Median latency over the window."},
		{&g.p99, "autoscalelua.window.latency.p99", "s", "99th percentile latency over the window."},
	} {
		inst, err := meter.Float64ObservableGauge(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.desc))
		if err != nil {
			return nil, fmt.Errorf("otelmetrics: %s: %w", d.name, err)
		}
		*d.dst = inst
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		observe(o, reg, cfg, g)
		return nil
	}, g.rate, g.errorRate, g.concurrency, g.inFlight, g.p50, g.p99)
}

type entry struct {
	key  string
	snap metrics.Snapshot
}

func observe(o metric.Observer, reg *metrics.Registry, cfg config, g gauges) {
	scopes := cfg.scopes
	if scopes == nil {
		scopes = reg.Scopes()
	}
	now := reg.Clock().Now()
	var entries []entry
	for _, scope := range scopes {
		entries = entries[:0]
		reg.Range(scope, func(w *metrics.Window) bool {
			entries = append(entries, entry{w.Key(), w.SnapshotAt(now, cfg.span)})
			return true
		})
		// The busiest first; ties by key, so the export is stable.
		slices.SortFunc(entries, func(a, b entry) int {
			return cmp.Or(cmp.Compare(b.snap.Count, a.snap.Count), cmp.Compare(a.key, b.key))
		})
		for _, e := range entries[:min(len(entries), cfg.topN)] {
			attrs := metric.WithAttributes(attribute.String("scope", string(scope)), attribute.String("key", e.key))
			o.ObserveFloat64(g.rate, e.snap.Rate, attrs)
			o.ObserveFloat64(g.errorRate, e.snap.ErrorRate, attrs)
			o.ObserveFloat64(g.concurrency, e.snap.Concurrency, attrs)
			o.ObserveFloat64(g.inFlight, float64(e.snap.InFlight), attrs)
			o.ObserveFloat64(g.p50, e.snap.P50.Seconds(), attrs)
			o.ObserveFloat64(g.p99, e.snap.P99.Seconds(), attrs)
		}
	}
}
