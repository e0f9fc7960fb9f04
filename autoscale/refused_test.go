package autoscale_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
)

// TestRefusedActions checks that every action the loop refuses (a Scale action for an
// unknown target or an invalid one, an action without an applier, an invalid action)
// is counted in Stats, kept in Refusals, exported, and logged at most once per
// RefusalLogEvery per kind and reason with the number suppressed since.
func TestRefusedActions(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var logs lockedBuffer // the actuator's goroutine logs too
	policy := autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
		return []autoscale.Action{
			autoscale.Scale{Target: "no-such-target", Replicas: 3},
			autoscale.Scale{Target: "a", Replicas: -1},
			autoscale.Scale{Target: "a", Replicas: 1},
			autoscale.SetWeight{Pool: "nope", Backend: "b1", Weight: 5},
			autoscale.Shed{Route: "/pay", Fraction: 2},
		}, nil
	})
	l := newLoop(t, autoscale.WithPolicy(policy), autoscale.WithMeterProvider(mp),
		autoscale.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 2, Actuator: new(actuatortest.Recorder)}))
	for _, at := range []time.Duration{0, time.Second, autoscale.RefusalLogEvery} {
		step(t, l, t0.Add(at))
	}
	flush(t, l)

	st := l.Stats()
	want := autoscale.LoopStats{Ticks: 3, Refused: 12, RefusedBy: map[string]uint64{autoscale.WhyInvalid: 9, autoscale.WhyNoApplier: 3}}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	rs := l.Refusals()
	if len(rs) != 12 {
		t.Fatalf("%d refusals kept, want 12", len(rs))
	}
	if r := rs[0]; r.Action != (autoscale.Scale{Target: "no-such-target", Replicas: 3}) || r.Why != autoscale.WhyInvalid ||
		!strings.Contains(r.Err, `unknown target "no-such-target"`) || !r.Time.Equal(t0) {
		t.Errorf("first refusal %+v", r)
	}
	if r := rs[11]; r.Action.Kind() != "shed" || !r.Time.Equal(t0.Add(autoscale.RefusalLogEvery)) {
		t.Errorf("last refusal %+v", r)
	}

	// Logs: three kinds and reasons on the first tick (the second scale is
	// suppressed), none on the second, three again at RefusalLogEvery.
	type line struct {
		Msg, Kind, Why string
		Suppressed     int
	}
	var got []line
	for _, s := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var ln line
		if err := json.Unmarshal([]byte(s), &ln); err != nil {
			t.Fatal(err)
		}
		if ln.Msg == "autoscale: action refused" {
			ln.Msg = ""
			got = append(got, ln)
		}
	}
	wantLogs := []line{
		{Kind: "scale", Why: "invalid"}, {Kind: "set_weight", Why: "no-applier"}, {Kind: "shed", Why: "invalid"},
		{Kind: "scale", Why: "invalid", Suppressed: 3}, {Kind: "set_weight", Why: "no-applier", Suppressed: 1},
		{Kind: "shed", Why: "invalid", Suppressed: 1},
	}
	if diff := cmp.Diff(wantLogs, got); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "autoscale.actions.refused" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				kind, _ := p.Attributes.Value(attribute.Key("kind"))
				why, _ := p.Attributes.Value(attribute.Key("why"))
				counts[kind.AsString()+"/"+why.AsString()] += p.Value
			}
		}
	}
	if diff := cmp.Diff(map[string]int64{"scale/invalid": 6, "set_weight/no-applier": 3, "shed/invalid": 3}, counts); diff != "" {
		t.Errorf("autoscale.actions.refused (-want +got):\n%s", diff)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
