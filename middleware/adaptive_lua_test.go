package middleware_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// A Lua policy reads the adaptive limit's window and, seeing it reached, narrows its
// bounds and sheds the lowest priority class through the loop's shed action.
func TestAdaptiveFromLua(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, middleware.AdaptiveConfig{InitialLimit: 10, MaxLimit: 10,
		Classes: []middleware.Class{{Priority: 0, Ceiling: 0.5}, {Priority: 10, Ceiling: 1}}},
		middleware.WithAdmissionRegistry(reg), middleware.WithAdmissionClock(clk))
	rt, err := luabind.New(luabind.FromString("limits.lua", `
-- When the low class's limit turns requests away, cap the limit and shed that class.
function on_tick(m, state)
  local low = m.limit("/r", 0)
  if low.ok and low.rejected > 0 and low.limit == 5 then
    return { limit_bounds("/r", 2, 6), shed("*", 1, 3, 0) }
  end
end`))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	loop, err := autoscale.NewLoop(autoscale.WithPolicy(rt), autoscale.WithRegistry(reg), autoscale.WithClock(clk),
		autoscale.WithDefaultActuator(new(actuatortest.Recorder)), autoscale.WithTargets(autoscale.Target{Name: "web", Min: 1, Max: 3}),
		autoscale.WithShedder(d.a), autoscale.WithLimitBounder(d.a))
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()

	d.now = clk.Now()
	for range 3 {
		d.window(20, 0, 10*time.Millisecond, metrics.OutcomeOK)
	}
	clk.Set(d.now)
	tk, err := loop.Step(context.Background(), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(tk.Actions) != 2 || tk.Actions[0].Why != autoscale.WhyApplied || tk.Actions[1].Why != autoscale.WhyApplied {
		t.Fatalf("actions %+v", tk.Actions)
	}
	if st := d.a.Limits(); st[1].Max != 6 || st[1].GroupLimit != 6 {
		t.Errorf("after limit_bounds: %+v", st)
	}
	if _, err := d.a.Admit(context.Background(), middleware.Info{Route: "/r", Priority: 0, Now: d.now}); !errors.Is(err, middleware.ErrShed) {
		t.Errorf("low class after shed: %v, want ErrShed", err)
	}
	if _, err := d.a.Admit(context.Background(), middleware.Info{Route: "/r", Priority: 10, Now: d.now}); err != nil {
		t.Errorf("high class after shed: %v", err)
	}
}
