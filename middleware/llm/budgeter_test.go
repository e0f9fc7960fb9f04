package llm

import (
	"context"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

var _ autoscale.Budgeter = (*Budgets)(nil)

// A Lua on_tick's budget action, applied by the loop with Budgets as its budgeter,
// changes what the gateway admits: the first tick gives acme a budget on "small" too
// small for its requests (429), the second lifts it (200).
func TestLuaBudgetActionFromTheLoop(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	budgets, _ := NewBudgets(BudgetsConfig{}, clk)
	budgets.Set("acme", "small", Budget{DailyTokens: 1_000_000})
	reg, _ := metrics.NewRegistry(metrics.WithClock(clk))
	rg := newRig(t, Config{}, WithBudgets(budgets), WithClock(clk), WithRegistry(reg))
	rt, err := luabind.New(luabind.FromString("budget.lua", `
-- Tick 1 holds acme to 60 tokens a minute on small; tick 2 lifts the rate limit.
function on_tick(m, state)
  state.n = (state.n or 0) + 1
  if state.n == 1 then return budget("acme", "small", 60) end
  return budget("acme", "small", 0)
end`))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	loop, err := autoscale.NewLoop(autoscale.WithPolicy(rt), autoscale.WithRegistry(reg), autoscale.WithClock(clk),
		autoscale.WithDefaultActuator(new(actuatortest.Recorder)), autoscale.WithTargets(autoscale.Target{Name: "m", Min: 1, Max: 3}),
		autoscale.WithBudgeter(budgets))
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()

	steps := []struct {
		tick   bool
		want   Budget
		status int
	}{
		{false, Budget{DailyTokens: 1_000_000}, 200},
		{true, Budget{TokensPerMinute: 60, DailyTokens: 1_000_000}, 429},
		{true, Budget{DailyTokens: 1_000_000}, 200},
	}
	for i, s := range steps {
		if s.tick {
			tk, err := loop.Step(context.Background(), clk.Advance(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if len(tk.Actions) != 1 || tk.Actions[0].Why != autoscale.WhyApplied {
				t.Fatalf("step %d: actions %+v", i, tk.Actions)
			}
		}
		if got, _ := budgets.Get("acme", "small"); got != s.want {
			t.Errorf("step %d: budget %+v, want %+v", i, got, s.want)
		}
		resp, b := rg.post(t, "/v1/chat/completions", chatBody)
		if resp.StatusCode != s.status {
			t.Errorf("step %d: status %d, want %d: %s", i, resp.StatusCode, s.status, b)
		}
		if s.status == 429 && resp.Header.Get("X-Ratelimit-Limit-Tokens") != "60" {
			t.Errorf("step %d: limit header %q, want 60", i, resp.Header.Get("X-Ratelimit-Limit-Tokens"))
		}
	}
}

func TestSetTokenRate(t *testing.T) {
	b, _ := NewBudgets(BudgetsConfig{}, metrics.NewManualClock(t0))
	if err := b.SetTokenRate("a", "", 600, 100); err != nil {
		t.Fatal(err)
	}
	if got, ok := b.Get("a", ""); !ok || got != (Budget{TokensPerMinute: 600, Burst: 100}) {
		t.Errorf("set: %+v %v", got, ok)
	}
	if err := b.SetTokenRate("a", "", 0, 0); err != nil {
		t.Fatal(err)
	}
	if got, ok := b.Get("a", ""); ok {
		t.Errorf("a budget with no limit stays: %+v", got)
	}
	if err := b.SetTokenRate("a", "", -1, 0); err == nil {
		t.Error("a negative rate is accepted")
	}
	if err := b.SetTokenRate("", "", 60, 0); err == nil {
		t.Error("an empty tenant is accepted")
	}
}
