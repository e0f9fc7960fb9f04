package autoscale_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// keyedReader hides a reader's Scope method, and lists a key without a window.
type keyedReader struct{ r autoscale.Reader }

func (k keyedReader) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	return k.r.Snapshot(scope, key, span)
}

func (k keyedReader) Keys(scope metrics.Scope) []string {
	return append(k.r.Keys(scope), "gone")
}

// TestScopeSnapshots checks that a scope read in one pass, through a RegistryReader's
// Scope or key by key through any Reader, yields in key order what Snapshot returns for
// each key, stops when asked, and that the loop records such a pass as the policy's
// inputs.
func TestScopeSnapshots(t *testing.T) {
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"b", "c", "a"} {
		w := reg.Window(metrics.ScopeBackend, k)
		for j := range 10 * (i + 1) {
			w.RecordAt(t0.Add(time.Duration(j)*100*time.Millisecond), metrics.Observation{Latency: time.Duration(j+1) * time.Millisecond})
		}
	}
	now := t0.Add(5 * time.Second)
	rr := autoscale.NewRegistryReader(reg, now)
	for _, span := range []time.Duration{0, 2 * time.Second} {
		var want []autoscale.Read
		for _, k := range []string{"a", "b", "c"} {
			s, ok := rr.Snapshot(metrics.ScopeBackend, k, span)
			want = append(want, autoscale.Read{Scope: metrics.ScopeBackend, Key: k, Span: span, Found: ok, Snapshot: s})
		}
		for name, r := range map[string]autoscale.Reader{"registry": rr, "keyed": keyedReader{rr}} {
			var got []autoscale.Read
			for k, s := range autoscale.ScopeSnapshots(r, metrics.ScopeBackend, span) {
				got = append(got, autoscale.Read{Scope: metrics.ScopeBackend, Key: k, Span: span, Found: true, Snapshot: s})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s reader, span %v (-Snapshot +ScopeSnapshots):\n%s", name, span, diff)
			}
			n := 0
			for range autoscale.ScopeSnapshots(r, metrics.ScopeBackend, span) {
				n++
				break
			}
			if n != 1 {
				t.Errorf("%s reader yielded %d after a break", name, n)
			}
		}
	}
	for k := range autoscale.ScopeSnapshots(rr, metrics.ScopeModel, 0) {
		t.Errorf("a scope without windows yielded %q", k)
	}

	// The loop records every window a policy read in one pass.
	var keys []string
	policy := autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
		for k := range autoscale.ScopeSnapshots(in.Metrics, metrics.ScopeBackend, 0) {
			keys = append(keys, k)
		}
		return nil, nil
	})
	l := newLoop(t, autoscale.WithPolicy(policy), autoscale.WithRegistry(reg), autoscale.WithClock(clock),
		autoscale.WithTargets(autoscale.Target{Name: "web", Min: 1, Max: 5, Actuator: nopActuator{}}))
	d := step(t, l, now).Decisions[0]
	var recorded []string
	for _, in := range d.Inputs {
		recorded = append(recorded, in.Key)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(keys, want) || !slices.Equal(recorded, want) {
		t.Errorf("the policy read %v and the loop recorded %v, want %v", keys, recorded, want)
	}
}

// sourced is a reader merged from two named sources.
type sourced struct{}

func (sourced) Snapshot(metrics.Scope, string, time.Duration) (metrics.Snapshot, bool) {
	return metrics.Snapshot{}, false
}
func (sourced) Keys(metrics.Scope) []string { return nil }
func (sourced) Sources() []string           { return []string{"gw-1", "gw-2"} }

func TestSourcesRecorded(t *testing.T) {
	loop, err := autoscale.NewLoop(
		autoscale.WithPolicy(autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) { return nil, nil })),
		autoscale.WithReader(func(time.Time) autoscale.Reader { return sourced{} }),
		autoscale.WithTargets(autoscale.Target{Name: "a", Min: 1, Max: 2, Actuator: actuator.Func(func(context.Context, actuator.Request) error { return nil })}),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	tk, err := loop.Step(context.Background(), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gw-1", "gw-2"}
	if d := cmp.Diff(want, tk.Sources); d != "" {
		t.Errorf("tick sources (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, tk.Decisions[0].Sources); d != "" {
		t.Errorf("decision sources (-want +got):\n%s", d)
	}
}
