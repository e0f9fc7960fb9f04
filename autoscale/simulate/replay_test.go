package simulate_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// record runs a real loop with policy over a route window whose load changes every
// few seconds, recording each tick's input through an observer, and returns the ticks
// as the loop returned them and the recording after a JSON round trip.
func record(t *testing.T, policy autoscale.Policy) ([]autoscale.Tick, []*autoscale.Input) {
	t.Helper()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	w := reg.Window(metrics.ScopeRoute, "checkout")
	rec := new(actuatortest.Recorder)
	rec.SetReplicas(actuator.Target{Name: "checkout"}, 2)
	var kept []*autoscale.Input
	loop, err := autoscale.NewLoop(autoscale.WithPolicy(policy), autoscale.WithRegistry(reg), autoscale.WithClock(clock),
		autoscale.WithTargets(autoscale.Target{Name: "checkout", Min: 1, Max: 50, Actuator: rec}),
		autoscale.WithObserver(func(tk autoscale.Tick) { kept = append(kept, tk.Input) }))
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	var ticks []autoscale.Tick
	for s := range 30 {
		rps := []int{20, 120, 60, 10}[s/8]
		for i := range rps {
			w.RecordAt(clock.Now().Add(time.Duration(i)*time.Second/time.Duration(rps)), metrics.Observation{Latency: 20 * time.Millisecond})
		}
		clock.Advance(time.Second)
		tk, err := loop.Step(context.Background(), clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := loop.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		ticks = append(ticks, tk)
	}
	b, err := json.Marshal(kept)
	if err != nil {
		t.Fatal(err)
	}
	var back []*autoscale.Input
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return ticks, back
}

func tracking(t *testing.T, target float64) autoscale.Policy {
	t.Helper()
	p, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{
		Source: autoscale.Source{Signal: autoscale.SignalRate}, Span: 5 * time.Second, TargetValue: target,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReplay records a loop's ticks, replays them against the same policy (the
// decisions come out the same) and against a changed one (they follow the change).
func TestReplay(t *testing.T) {
	orig, rec := record(t, tracking(t, 10))
	if len(rec) != len(orig) {
		t.Fatalf("recorded %d ticks of %d", len(rec), len(orig))
	}
	same, err := simulate.Replay(context.Background(), simulate.ReplayConfig{Policy: tracking(t, 10), Ticks: rec})
	if err != nil {
		t.Fatal(err)
	}
	var changes int
	for i := range orig {
		o, r := orig[i].Decisions[0], same[i].Decisions[0]
		if o.Policy != r.Policy || o.Desired != r.Desired || o.Current != r.Current || !o.Time.Equal(r.Time) {
			t.Errorf("tick %d: recorded %+v -> %d, replayed %+v -> %d", i, o.Policy, o.Desired, r.Policy, r.Desired)
		}
		if r.Applied != o.Applied || r.Why != o.Why {
			t.Errorf("tick %d: recorded %v (%s), replayed %v (%s)", i, o.Applied, o.Why, r.Applied, r.Why)
		}
		if o.Desired != o.Current {
			changes++
		}
	}
	if changes < 2 {
		t.Fatalf("the recording scaled %d times; the test needs a moving load", changes)
	}

	halved, err := simulate.Replay(context.Background(), simulate.ReplayConfig{Policy: tracking(t, 20), Ticks: rec})
	if err != nil {
		t.Fatal(err)
	}
	var fewer int
	for i := range orig {
		o, r := orig[i].Decisions[0].Policy, halved[i].Decisions[0].Policy
		if !r.Present || r.Replicas > o.Replicas {
			t.Errorf("tick %d: twice the target asks %+v, the recording %+v", i, r, o)
		}
		if r.Replicas < o.Replicas {
			fewer++
		}
	}
	if fewer == 0 {
		t.Error("twice the target never asked for fewer replicas")
	}
}

// TestReplayUnrecordedWindow checks that a changed policy reading a window the
// recording did not read finds no window, and fails as without metrics.
func TestReplayUnrecordedWindow(t *testing.T) {
	_, rec := record(t, tracking(t, 10))
	other, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{
		Source: autoscale.Source{Key: "search", Signal: autoscale.SignalRate}, TargetValue: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := simulate.Replay(context.Background(), simulate.ReplayConfig{Policy: other, Ticks: rec[:3]})
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range ticks {
		if d := tk.Decisions[0]; !strings.Contains(d.Policy.Err, "missing metrics") || d.Desired != d.Current {
			t.Errorf("tick %d: %+v, want a hold for missing metrics", i, d)
		}
	}
}

func TestReplayConfig(t *testing.T) {
	_, rec := record(t, tracking(t, 10))
	for name, cfg := range map[string]simulate.ReplayConfig{
		"no policy":   {Ticks: rec},
		"no ticks":    {Policy: tracking(t, 10)},
		"nil tick":    {Policy: tracking(t, 10), Ticks: []*autoscale.Input{rec[0], nil}},
		"out of time": {Policy: tracking(t, 10), Ticks: []*autoscale.Input{rec[1], rec[0]}},
		"no targets":  {Policy: tracking(t, 10), Ticks: []*autoscale.Input{{Now: rec[0].Now}}},
	} {
		if _, err := simulate.Replay(context.Background(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := simulate.Replay(ctx, simulate.ReplayConfig{Policy: tracking(t, 10), Ticks: rec}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled replay: %v", err)
	}
}
