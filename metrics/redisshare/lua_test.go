package redisshare

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/internal/redistest"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// TestLuaReadsMergedAsLocal: a Lua on_tick reading windows one by one and through the
// aggregates decides the same, to the digit, on the merged view of three replicas as on
// one registry that saw all their requests.
func TestLuaReadsMergedAsLocal(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	clk := metrics.NewManualClock(t0)
	union := registry(t, clk)
	reps := []*metrics.Registry{registry(t, clk), registry(t, clk), registry(t, clk)}
	rnd := rand.New(rand.NewPCG(8, 9))
	for range 10 {
		for i := range 20 {
			spread(rnd, clk, union, reps, metrics.ScopeTenant, fmt.Sprint("t", i), 10+rnd.IntN(50))
		}
		clk.Advance(time.Second)
	}
	for i, r := range reps {
		if _, err := publisher(t, c, r, Config{Replica: fmt.Sprint("gw-", i)}).Publish(ctx, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	view, err := merger(t, c, reps[0], Config{}).Fetch(ctx, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	rt, err := luabind.New(luabind.FromString("merged.lua", `
local as = require("autoscale")
function on_tick(m, state)
  local total = m.sum("tenant", "count")
  local a, b = m.max("tenant", "p99")
  local t3 = m.tenant("t3")
  local n = 0
  for _, k in ipairs(m.keys("tenant")) do
    n = n + m.tenant(k).errors
  end
  local why = string.format("total %d worst %s %s t3 rps %.6f p50 %.6f errors %d", total, tostring(a), tostring(b), t3.rps, t3.p50, n)
  return { as.scale("api", math.max(1, math.floor(total / 100)), why) }
end`))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	decide := func(r autoscale.Reader) []autoscale.Action {
		acts, err := rt.Decide(ctx, &autoscale.Input{Now: clk.Now(), Tick: time.Second, Metrics: autoscale.NewSnapshot(clk.Now(), r),
			Targets: []autoscale.TargetState{{Name: "api", Replicas: 1, Desired: 1, Min: 1, Max: 100}}})
		if err != nil {
			t.Fatal(err)
		}
		return acts
	}
	want, got := decide(autoscale.NewRegistryReader(union, clk.Now())), decide(view)
	t.Logf("one gateway: %+v", want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Lua on the merged view (-one gateway +merged):\n%s", d)
	}
}
