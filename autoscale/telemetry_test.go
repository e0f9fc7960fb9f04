package autoscale_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
)

func TestTelemetry(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	rec := new(actuatortest.Recorder)
	rec.SetReplicas(actuator.Target{Name: "a"}, 2)
	rec.SetErr(actuator.Permanent(errors.New("quota exceeded")))
	l := newLoop(t, autoscale.WithPolicy(scaleTo("a", 40)), autoscale.WithDefaultActuator(rec),
		autoscale.WithMeterProvider(mp), autoscale.WithTracerProvider(tp),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 10})) // HPA defaults: 2 → 6
	tk := step(t, l, t0)
	flush(t, l)
	if d := tk.Decisions[0]; d.Desired != 6 {
		t.Fatalf("desired = %d, want 6 (max 10, then max(4 pods, 100%%) from 2)", d.Desired)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range data.DataPoints {
					got[m.Name] = p.Value
				}
			case metricdata.Sum[int64]:
				for _, p := range data.DataPoints {
					key := m.Name
					if v, ok := p.Attributes.Value(attribute.Key("reason")); ok {
						key += "/" + v.AsString()
					}
					if v, ok := p.Attributes.Value(attribute.Key("direction")); ok {
						key += "/" + v.AsString()
					}
					got[key] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range data.DataPoints {
					got[m.Name] += int64(p.Count)
				}
			}
		}
	}
	want := map[string]int64{
		"autoscale.replicas.desired": 6,
		"autoscale.replicas.current": 2,
		"autoscale.decisions/up":     1,
		"autoscale.clamps/max":       1,
		"autoscale.clamps/rate-up":   1,
		"autoscale.policy.duration":  1,
		"autoscale.actuator.errors":  1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}

	ended := spans.Ended()
	if len(ended) != 1 || ended[0].Name() != "autoscale.tick" {
		t.Fatalf("spans = %v, want one autoscale.tick", ended)
	}
	if ev := ended[0].Events(); len(ev) != 1 || ev[0].Name != "decision" {
		t.Fatalf("span events = %+v, want one decision", ev)
	}
}
