package autoscale_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

var quiet = autoscale.WithLogger(slog.New(slog.DiscardHandler))

func okActuator() actuator.Actuator {
	return actuator.Func(func(context.Context, actuator.Request) error { return nil })
}

func stepNamed(d autoscale.Decision, name string) (autoscale.SafetyStep, bool) {
	for _, s := range d.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return autoscale.SafetyStep{}, false
}

// A wake steps a running loop at once: the manual clock never reaches the next tick.
func TestWakeStepsAtOnce(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	ticks := make(chan autoscale.Tick, 8)
	l := newLoop(t, quiet, autoscale.WithClock(clk), autoscale.WithTick(time.Hour),
		autoscale.WithPolicy(autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) { return nil, nil })),
		autoscale.WithDefaultActuator(okActuator()),
		autoscale.WithObserver(func(tk autoscale.Tick) { ticks <- tk }),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 10}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-ticks // the first tick, at start
	if err := l.Wake("a", 3); err != nil {
		t.Fatal(err)
	}
	select {
	case tk := <-ticks:
		d := tk.Decisions[0]
		if s, ok := stepNamed(d, autoscale.StepWake); !ok || d.Desired != 3 || !d.Applied || d.Held != 3 {
			t.Errorf("decision %+v (wake step %v %+v), want 3 applied", d, ok, s)
		}
		if !tk.Time.Equal(t0) {
			t.Errorf("woken tick at %v, want %v (no clock advance)", tk.Time, t0)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wake did not step the loop")
	}
}

func TestWakeAndReadyErrors(t *testing.T) {
	l := newLoop(t, quiet, autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithDefaultActuator(okActuator()),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 10}))
	for name, err := range map[string]error{
		"wake unknown":   l.Wake("b", 1),
		"wake negative":  l.Wake("a", -1),
		"ready unknown":  l.SetReady("b", 1),
		"ready negative": l.SetReady("a", -2),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, ok := l.ColdStart("a"); ok {
		t.Error("cold start known without config or observation")
	}
	_, err := autoscale.NewLoop(autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithDefaultActuator(okActuator()),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 10, ColdStart: -time.Second,
			Safety: autoscale.Safety{ScaleToZero: &autoscale.ScaleToZero{After: 0, Cooldown: -1}}}))
	for _, want := range []string{"cold start -1s", "scale to zero after 0s", "scale to zero cooldown -1ns"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewLoop error %v, want it to name %q", err, want)
		}
	}
}

// Replicas asked for and not ready hold further scale-ups, and the decision shows them;
// the time to the first ready replica is the observed cold start.
func TestPendingAndColdStart(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	var ask atomic.Int64
	ask.Store(5)
	l := newLoop(t, quiet, autoscale.WithClock(clk),
		autoscale.WithPolicy(autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
			return []autoscale.Action{autoscale.Scale{Target: "a", Replicas: int(ask.Load())}}, nil
		})),
		autoscale.WithDefaultActuator(okActuator()),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 20, Safety: free, ColdStart: 7 * time.Second}))
	if cs, ok := l.ColdStart("a"); !ok || cs != 7*time.Second {
		t.Errorf("configured cold start %v %v", cs, ok)
	}
	if err := l.SetReady("a", 0); err != nil {
		t.Fatal(err)
	}
	d := step(t, l, t0).Decisions[0]
	if d.Desired != 5 || !d.Applied || d.Ready != 0 {
		t.Fatalf("first decision %+v", d)
	}
	flush(t, l)
	clk.Advance(3 * time.Second)
	if err := l.SetReady("a", 1); err != nil {
		t.Fatal(err)
	}
	if cs, ok := l.ColdStart("a"); !ok || cs != 3*time.Second {
		t.Errorf("observed cold start %v %v, want 3s", cs, ok)
	}
	ask.Store(9)
	d = step(t, l, clk.Now()).Decisions[0]
	s, ok := stepNamed(d, autoscale.StepPending)
	if !ok || d.Desired != 5 || d.Pending != 4 || d.Ready != 1 || s.Before != 9 {
		t.Errorf("decision with 4 pending: %+v", d)
	}
	if err := l.SetReady("a", 5); err != nil {
		t.Fatal(err)
	}
	d = step(t, l, clk.Advance(time.Second)).Decisions[0]
	if d.Desired != 9 || d.Pending != 0 {
		t.Errorf("decision with all ready: %+v", d)
	}
}

// activity is a Reader whose route window "a" shows traffic while busy is set.
type activity struct{ busy *atomic.Bool }

func (r activity) Snapshot(scope metrics.Scope, key string, _ time.Duration) (metrics.Snapshot, bool) {
	if scope != metrics.ScopeRoute || key != "a" {
		return metrics.Snapshot{}, false
	}
	if r.busy.Load() {
		return metrics.Snapshot{Count: 3}, true
	}
	return metrics.Snapshot{}, true
}
func (activity) Keys(metrics.Scope) []string { return []string{"a"} }

// Any policy's target scales to zero after the idle period, not within the cooldown of
// a wake, and wakes past the rate limits.
func TestScaleToZero(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	var busy atomic.Bool
	busy.Store(true)
	up := &autoscale.Rules{Policies: []autoscale.RatePolicy{{Kind: autoscale.Pods, Value: 1, Period: 30 * time.Minute}}}
	l := newLoop(t, quiet, autoscale.WithClock(clk), autoscale.WithPolicy(scaleTo("a", 2)),
		autoscale.WithDefaultActuator(okActuator()),
		autoscale.WithReader(func(time.Time) autoscale.Reader { return activity{&busy} }),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 10, Safety: autoscale.Safety{
			ScaleUp: up, ScaleDown: &autoscale.Rules{},
			ScaleToZero: &autoscale.ScaleToZero{After: 10 * time.Second, Cooldown: 30 * time.Second},
		}}))
	at := func(sec int) autoscale.Decision {
		t.Helper()
		clk.Set(t0.Add(time.Duration(sec) * time.Second))
		d := step(t, l, clk.Now()).Decisions[0]
		flush(t, l)
		return d
	}
	if d := at(0); d.Desired != 2 {
		t.Fatalf("busy: %+v", d)
	}
	busy.Store(false)
	if d := at(5); d.Desired != 2 {
		t.Fatalf("idle 5s: %+v", d)
	}
	d := at(11)
	if _, ok := stepNamed(d, autoscale.StepIdle); !ok || d.Desired != 0 {
		t.Fatalf("idle 11s: %+v, want 0 by %s", d, autoscale.StepIdle)
	}
	// The rate limit (1 pod per 30 minutes) does not stop a wake from raising the
	// count to what held requests need.
	clk.Set(t0.Add(12 * time.Second))
	if err := l.Wake("a", 4); err != nil {
		t.Fatal(err)
	}
	d = at(12)
	if _, ok := stepNamed(d, autoscale.StepWake); !ok || d.Desired != 4 {
		t.Fatalf("woken: %+v, want 4 by %s", d, autoscale.StepWake)
	}
	if err := l.Wake("a", 0); err != nil {
		t.Fatal(err)
	}
	if d := at(25); d.Desired == 0 {
		t.Fatalf("idle 13s within the 30s cooldown of the wake: %+v", d)
	}
	d = at(43)
	if _, ok := stepNamed(d, autoscale.StepIdle); !ok || d.Desired != 0 {
		t.Fatalf("idle 31s past the cooldown: %+v", d)
	}
}

// The held demand is a floor of every decision until a later Wake lowers it: a policy
// that asks for zero while the woken replicas are still starting (they report no
// traffic) keeps them; once the held requests are gone (Wake 0) it goes through.
func TestWakeIsAFloor(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	l := newLoop(t, quiet, autoscale.WithClock(clk), autoscale.WithPolicy(scaleTo("a", 0)),
		autoscale.WithDefaultActuator(okActuator()),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 10, Safety: free}))
	if err := l.Wake("a", 3); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		clk.Advance(time.Second)
		d := step(t, l, clk.Now()).Decisions[0]
		if _, ok := stepNamed(d, autoscale.StepWake); i > 0 && !ok || d.Desired != 3 {
			t.Fatalf("tick %d: decision %+v, want the wake step to hold 3", i, d)

		}
	}
	if err := l.Wake("a", 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if d := step(t, l, clk.Now()).Decisions[0]; d.Desired != 0 {
		t.Errorf("after the held requests left: desired %d, want the policy's 0", d.Desired)
	}
}
