package llm

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// The scaling loop sets a tenant's token budget through its throttle action.
func TestTokenThrottlerFromTheLoop(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	budgets, _ := NewBudgets(BudgetsConfig{}, clk)
	budgets.Set("acme", "", Budget{TokensPerMinute: 1000, DailyTokens: 50000})
	var next []autoscale.Action
	policy := autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) { return next, nil })
	reg, _ := metrics.NewRegistry(metrics.WithClock(clk))
	loop, err := autoscale.NewLoop(autoscale.WithPolicy(policy), autoscale.WithRegistry(reg), autoscale.WithClock(clk),
		autoscale.WithDefaultActuator(new(actuatortest.Recorder)), autoscale.WithTargets(autoscale.Target{Name: "m", Min: 1, Max: 3}),
		autoscale.WithThrottler(TokenThrottler{Budgets: budgets}))
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	steps := []struct {
		action autoscale.Throttle
		want   Budget
		ok     bool
	}{
		{autoscale.Throttle{Tenant: "acme", RPS: 10, Burst: 300}, Budget{TokensPerMinute: 600, Burst: 300, DailyTokens: 50000}, true},
		{autoscale.Throttle{Tenant: "acme", RPS: math.Inf(1)}, Budget{DailyTokens: 50000}, true},
		{autoscale.Throttle{Tenant: "new", RPS: 0, Burst: 1}, Budget{TokensPerMinute: 1, Burst: 1}, true},
	}
	for i, s := range steps {
		next = []autoscale.Action{s.action}
		if _, err := loop.Step(context.Background(), clk.Advance(time.Second)); err != nil {
			t.Fatal(err)
		}
		got, ok := budgets.Get(s.action.Tenant, "")
		if ok != s.ok || got != s.want {
			t.Errorf("step %d: budget %+v %v, want %+v", i, got, ok, s.want)
		}
	}
	if _, err := budgets.Reserve("new", "m", 2, clk.Now()); err == nil {
		t.Error("a tenant throttled to 0 was admitted")
	}
}

var _ autoscale.Throttler = TokenThrottler{}
