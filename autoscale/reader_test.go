package autoscale_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

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
