package simulate_test

import (
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luatest"
)

// TestAdaptiveLua runs autoscale/policies/adaptive_test.lua against adaptive.lua.
// (autoscale.PolicyNames does not list adaptive yet, so autoscale's own test of the
// shipped policies does not run it.)
func TestAdaptiveLua(t *testing.T) {
	luatest.Run(t, autoscale.Policies(), "policies/adaptive.lua", "policies/adaptive_test.lua",
		luabind.WithConfig(map[string]any{"target": "api", "target_value": 10, "cold_start": 10}),
		// Some tests tick hundreds of times: give them room under the race detector.
		luabind.WithLimits(luabind.Limits{LoadBudget: time.Minute, TickBudget: time.Minute}))
}
