package autoscale_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/luabind"
)

// A Lua policy re-weighs a scoring pool's scorers through the loop: its score_weights
// action reaches the balancer.Scoring registered with WithScorer, and the picks after
// it use the new weights. A bad one is refused in Lua, where the script sees why.
func TestLuaScoreWeightsReachTheScoring(t *testing.T) {
	scoring, err := balancer.NewScoring(balancer.ScoringConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := luabind.New(luabind.FromString("weigh.lua", `
function on_tick(m, state)
  local ok, err = pcall(score_weights, "models", { queue = -1 })
  assert(not ok and string.find(err, "negative"), err)
  ok, err = pcall(score_weights, "models", { qeue = 1 })
  assert(not ok and string.find(err, "unknown weight"), err)
  return { score_weights("models", { queue = 4, kv_cache = 1, prefix = 0.5 }) }
end`))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	l := newLoop(t, autoscale.WithPolicy(rt), autoscale.WithScorer("models", scoring),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 1, Actuator: new(actuatortest.Recorder)}))
	tk := step(t, l, t0)
	if len(tk.Actions) != 1 || tk.Actions[0].Why != autoscale.WhyApplied {
		t.Fatalf("actions %+v", tk.Actions)
	}
	if diff := cmp.Diff(balancer.Weights{Queue: 4, KVCache: 1, Prefix: 0.5}, scoring.Weights()); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
}
