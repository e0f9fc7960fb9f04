package otelmetrics_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/metrics/otelmetrics"
)

func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			g, ok := m.Data.(metricdata.Gauge[float64])
			if !ok {
				t.Fatalf("%s is %T, want a float64 gauge", m.Name, m.Data)
			}
			out[m.Name] = map[string]float64{}
			for _, dp := range g.DataPoints {
				scope, _ := dp.Attributes.Value(attribute.Key("scope"))
				key, _ := dp.Attributes.Value(attribute.Key("key"))
				out[m.Name][scope.AsString()+"/"+key.AsString()] = dp.Value
			}
		}
	}
	return out
}

func TestRegister(t *testing.T) {
	clk := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	// Five tenants with 1..5 requests a second for ten seconds, and one busy route.
	for s := range 10 {
		for i := 1; i <= 5; i++ {
			w := reg.Window(metrics.ScopeTenant, fmt.Sprintf("t%d", i))
			for range i {
				w.RecordAt(clk.Now(), metrics.Observation{Latency: 20 * time.Millisecond})
			}
		}
		r := reg.Window(metrics.ScopeRoute, "/api")
		for j := range 10 {
			o := metrics.Observation{Latency: 100 * time.Millisecond}
			if j == 0 {
				o.Outcome = metrics.OutcomeError
			}
			r.RecordAt(clk.Now(), o)
		}
		if s < 9 {
			clk.Advance(time.Second)
		}
	}
	reg.Window(metrics.ScopeRoute, "/api").StartAt(clk.Now())
	clk.Advance(time.Second)

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	registration, err := otelmetrics.Register(mp.Meter("test"), reg, otelmetrics.WithTopN(3))
	if err != nil {
		t.Fatal(err)
	}

	got := collect(t, reader)
	rates := got["autoscalelua.window.rate"]
	if len(rates) != 4 {
		t.Fatalf("rate series %v, want route/api and the top 3 tenants", rates)
	}
	for _, k := range []string{"tenant/t5", "tenant/t4", "tenant/t3", "route//api"} {
		if _, ok := rates[k]; !ok {
			t.Errorf("no rate for %s; have %v", k, rates)
		}
	}
	if r := rates["route//api"]; r != 10 {
		t.Errorf("route rate %v, want 10 (100 requests in 10 s)", r)
	}
	if e := got["autoscalelua.window.error_rate"]["route//api"]; e != 0.1 {
		t.Errorf("error rate %v, want 0.1", e)
	}
	if p := got["autoscalelua.window.latency.p99"]["route//api"]; p < 0.098 || p > 0.102 {
		t.Errorf("p99 %v s, want about 0.1", p)
	}
	if f := got["autoscalelua.window.in_flight"]["route//api"]; f != 1 {
		t.Errorf("in flight %v, want 1", f)
	}
	if c := got["autoscalelua.window.concurrency"]["route//api"]; c <= 0 {
		t.Errorf("concurrency %v, want > 0", c)
	}

	if err := registration.Unregister(); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, reader); len(got["autoscalelua.window.rate"]) != 0 {
		t.Errorf("series after unregister: %v", got["autoscalelua.window.rate"])
	}
}

func TestRegisterErrors(t *testing.T) {
	reg, _ := metrics.NewRegistry()
	mp := sdkmetric.NewMeterProvider()
	if _, err := otelmetrics.Register(nil, reg); err == nil {
		t.Error("nil meter accepted")
	}
	if _, err := otelmetrics.Register(mp.Meter("x"), reg, otelmetrics.WithTopN(0), otelmetrics.WithSpan(-1)); err == nil {
		t.Error("bad options accepted")
	}
}

func TestScopesOption(t *testing.T) {
	reg, _ := metrics.NewRegistry()
	reg.Window(metrics.ScopeRoute, "/a").Record(metrics.Observation{})
	reg.Window(metrics.ScopeTenant, "t").Record(metrics.Observation{})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	if _, err := otelmetrics.Register(mp.Meter("x"), reg, otelmetrics.WithScopes(metrics.ScopeTenant), otelmetrics.WithSpan(time.Second)); err != nil {
		t.Fatal(err)
	}
	rates := collect(t, reader)["autoscalelua.window.rate"]
	if _, ok := rates["tenant/t"]; !ok || len(rates) != 1 {
		t.Errorf("series %v, want only tenant/t", rates)
	}
}
