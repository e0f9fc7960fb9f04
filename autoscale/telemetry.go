package autoscale

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

const instrumentationName = "github.com/autoscalelua/autoscalelua/autoscale"

var stepNames = []string{
	StepFallback, StepHold, StepMin, StepMax, StepTolerance, StepStabilizeUp,
	StepStabilizeDown, StepPanic, StepRateUp, StepRateDown, StepCooldown,
}

// telemetry holds the loop's OpenTelemetry instruments.
type telemetry struct {
	desired, current metric.Int64Gauge
	decisions        metric.Int64Counter
	clamps           metric.Int64Counter
	policy           metric.Float64Histogram
	actErrors        metric.Int64Counter
	refused          metric.Int64Counter
}

func newTelemetry(mp metric.MeterProvider, targets []*target) (*telemetry, error) {
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m := mp.Meter(instrumentationName)
	var tel telemetry
	var err error
	wrap := func(e error) error { return fmt.Errorf("autoscale: telemetry: %w", e) }
	if tel.desired, err = m.Int64Gauge("autoscale.replicas.desired",
		metric.WithDescription("Replica count the loop decided on, by target."), metric.WithUnit("{replica}")); err != nil {
		return nil, wrap(err)
	}
	if tel.current, err = m.Int64Gauge("autoscale.replicas.current",
		metric.WithDescription("Replica count the loop knew at its last tick, by target."), metric.WithUnit("{replica}")); err != nil {
		return nil, wrap(err)
	}
	if tel.decisions, err = m.Int64Counter("autoscale.decisions",
		metric.WithDescription("Decisions, by target and direction."), metric.WithUnit("{decision}")); err != nil {
		return nil, wrap(err)
	}
	if tel.clamps, err = m.Int64Counter("autoscale.clamps",
		metric.WithDescription("Safety steps that changed a decision, by target and reason."), metric.WithUnit("{clamp}")); err != nil {
		return nil, wrap(err)
	}
	if tel.policy, err = m.Float64Histogram("autoscale.policy.duration",
		metric.WithDescription("Time the live policy took to decide."), metric.WithUnit("s")); err != nil {
		return nil, wrap(err)
	}
	if tel.actErrors, err = m.Int64Counter("autoscale.actuator.errors",
		metric.WithDescription("Actuator calls that failed after their retries, by target."), metric.WithUnit("{error}")); err != nil {
		return nil, wrap(err)
	}
	if tel.refused, err = m.Int64Counter("autoscale.actions.refused",
		metric.WithDescription("Actions the loop refused (invalid, unknown target, no applier, applier error), by kind and why."), metric.WithUnit("{action}")); err != nil {
		return nil, wrap(err)
	}
	for _, t := range targets {
		name := attribute.String("target", t.cfg.Name)
		t.attrs = metric.WithAttributeSet(attribute.NewSet(name))
		t.dirAttrs = make(map[Direction]metric.MeasurementOption, 3)
		for _, d := range []Direction{Up, Down, None} {
			t.dirAttrs[d] = metric.WithAttributeSet(attribute.NewSet(name, attribute.String("direction", string(d))))
		}
		t.clampAtt = make(map[string]metric.MeasurementOption, len(stepNames))
		for _, s := range stepNames {
			t.clampAtt[s] = metric.WithAttributeSet(attribute.NewSet(name, attribute.String("reason", s)))
		}
	}
	return &tel, nil
}

func (tel *telemetry) policyDuration(ctx context.Context, d time.Duration) {
	tel.policy.Record(ctx, d.Seconds())
}

func (tel *telemetry) decision(ctx context.Context, t *target, d *Decision) {
	if d.Desired >= 0 {
		tel.desired.Record(ctx, int64(d.Desired), t.attrs)
	}
	if d.Current >= 0 {
		tel.current.Record(ctx, int64(d.Current), t.attrs)
	}
	tel.decisions.Add(ctx, 1, t.dirAttrs[d.Direction])
	for _, s := range d.Steps {
		if s.Clamped() {
			tel.clamps.Add(ctx, 1, t.clampAtt[s.Name])
		}
	}
}

func (tel *telemetry) actuatorError(ctx context.Context, t *target) {
	tel.actErrors.Add(ctx, 1, t.attrs)
}

func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	return tp.Tracer(instrumentationName)
}

// endSpan describes a tick on its span.
func endSpan(span trace.Span, tk *Tick) {
	if !span.IsRecording() {
		return
	}
	changed := 0
	for i := range tk.Decisions {
		d := &tk.Decisions[i]
		if d.Direction == None {
			continue
		}
		changed++
		span.AddEvent("decision", trace.WithAttributes(
			attribute.String("target", d.Target),
			attribute.String("id", d.ID),
			attribute.Int("current", d.Current),
			attribute.Int("desired", d.Desired),
			attribute.String("direction", string(d.Direction)),
			attribute.Bool("applied", d.Applied),
			attribute.String("why", d.Why),
		))
	}
	span.SetAttributes(
		attribute.Int("autoscale.targets", len(tk.Decisions)),
		attribute.Int("autoscale.changes", changed),
		attribute.Int("autoscale.actions", len(tk.Actions)),
		attribute.Bool("autoscale.leader", tk.Leader),
		attribute.Bool("autoscale.dry_run", tk.DryRun),
		attribute.Float64("autoscale.policy.duration_s", tk.PolicyDuration.Seconds()),
	)
	if tk.PolicyErr != "" {
		span.SetStatus(codes.Error, "policy failed")
		span.AddEvent("policy error", trace.WithAttributes(attribute.String("error", tk.PolicyErr)))
	}
}
