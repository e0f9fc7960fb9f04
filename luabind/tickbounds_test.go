package luabind_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

func tickInput() *autoscale.Input {
	return &autoscale.Input{Now: time.Unix(1000, 0), Targets: []autoscale.TargetState{{Name: "web", Replicas: 2}}}
}

func TestOnTickActionsAreCapped(t *testing.T) {
	const code = `
function on_tick(m, state)
  local out = {}
  for i = 1, config.n do out[i] = scale("web", 3) end
  return out
end`
	for _, tt := range []struct {
		n    int
		want int // actions returned; -1 for a failed tick
	}{{10, 10}, {100, 100}, {101, -1}, {5000, -1}} {
		rt := newRT(t, code, luabind.WithConfig(map[string]any{"n": tt.n}), luabind.WithLimits(luabind.Limits{MaxActions: 100, TickBudget: 5 * time.Second}),
			luabind.WithFailMode(luabind.HookTick, luabind.FailClosed))
		acts, err := rt.Decide(context.Background(), tickInput())
		if tt.want < 0 {
			if err == nil || acts != nil || !strings.Contains(err.Error(), "more than 100 (limit)") {
				t.Errorf("%d actions: %d returned, err %v; want a limit error", tt.n, len(acts), err)
			}
			if got := rt.Stats().Failures[luabind.FailureKey{Hook: luabind.HookTick, Reason: luabind.ReasonLimit}]; got != 1 {
				t.Errorf("%d actions: limit failures %d, want 1", tt.n, got)
			}
			continue
		}
		if err != nil || len(acts) != tt.want {
			t.Errorf("%d actions: %d returned, err %v", tt.n, len(acts), err)
		}
	}
}

// TestOnTickStateIsBounded: state that grows past MaxStateBytes, however it is
// reached (a string doubled each tick, a table, a closure's upvalue, a tick that
// timed out after filling it), is reset to an empty table at the end of that tick
// and counted; a cycle in state is measured once.
func TestOnTickStateIsBounded(t *testing.T) {
	const limit = 64 << 10
	tests := []struct {
		name, grow string
		ticks      int // the tick (1-based) whose end finds state past the limit
		timeout    bool
	}{
		{"string doubled each tick", `state.s = (state.s or "x") .. (state.s or "x")`, 16, false},
		{"table grown each tick", `state.t = state.t or {} for i = 1, 1000 do state.t[#state.t + 1] = i end`, 2, false},
		{"closure upvalue", `local big = string.rep("x", 100000) state.f = function() return big end`, 1, false},
		{"metatable", `setmetatable(state, {big = string.rep("x", 100000)})`, 1, false},
		{"filled then timed out", `state.big = string.rep("x", 100000) while true do end`, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := `
function on_tick(m, state)
  state.self = state -- a cycle
  state.ticks = (state.ticks or 0) + 1
  ` + tt.grow + `
  return scale("web", state.ticks)
end`
			rt := newRT(t, code, luabind.WithLimits(luabind.Limits{MaxStateBytes: limit, TickBudget: 20 * time.Millisecond}))
			for i := 1; i <= tt.ticks; i++ {
				acts, _ := rt.Decide(context.Background(), tickInput())
				st := rt.Stats()
				if i < tt.ticks {
					if st.StateResets != 0 || len(acts) != 1 {
						t.Fatalf("tick %d: %d resets, actions %v; want none yet", i, st.StateResets, acts)
					}
					continue
				}
				if st.StateResets != 1 || acts != nil {
					t.Fatalf("tick %d: %d resets, actions %v; want 1 reset and a failed tick", i, st.StateResets, acts)
				}
				reason := luabind.ReasonLimit
				if tt.timeout {
					reason = luabind.ReasonTimeout
				}
				if got := st.Failures[luabind.FailureKey{Hook: luabind.HookTick, Reason: reason}]; got != 1 {
					t.Errorf("failures %v, want 1 %s", st.Failures, reason)
				}
			}
			if tt.ticks == 1 {
				// Every tick grows it past the limit: every tick resets it.
				rt.Decide(context.Background(), tickInput())
				if got := rt.Stats().StateResets; got != 2 {
					t.Errorf("after a second tick: %d resets, want 2", got)
				}
				return
			}
			// The next tick starts from an empty state.
			acts, err := rt.Decide(context.Background(), tickInput())
			if err != nil || len(acts) != 1 || acts[0].(autoscale.Scale).Replicas != 1 {
				t.Errorf("after the reset: %v, %v; want scale to 1 (a fresh state)", acts, err)
			}
		})
	}
}

// TestObserveScopesAreCapped: observe with a new scope per request stops making
// scopes at MaxScriptScopes (counted as limit failures); known and declared scopes
// keep working.
func TestObserveScopesAreCapped(t *testing.T) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	reg.Window("host", "k") // a scope the host made
	rt := newRT(t, `function on_response(req, res) observe(req.route, "k", 1) end`,
		luabind.WithRegistry(reg), luabind.WithScopes("declared"), luabind.WithLimits(luabind.Limits{MaxScriptScopes: 8}))
	ctx := context.Background()
	refused := 0
	for i := range 1000 {
		err := rt.OnResponse(ctx, &luabind.Request{Route: fmt.Sprintf("lat:/p%d", i)}, &luabind.Response{})
		if err != nil {
			if !strings.Contains(err.Error(), "(limit)") {
				t.Fatalf("request %d: %v", i, err)
			}
			refused++
		}
	}
	if refused != 1000-8 {
		t.Errorf("%d observes refused, want %d", refused, 1000-8)
	}
	if got := len(reg.Scopes()); got != 1+8 {
		t.Errorf("registry holds %d scopes, want the host's and the script's 8", got)
	}
	if got := rt.Stats().Failures[luabind.FailureKey{Hook: luabind.HookResponse, Reason: luabind.ReasonLimit}]; got != 1000-8 {
		t.Errorf("limit failures %d, want %d", got, 1000-8)
	}
	for _, scope := range []string{"lat:/p0", "host", "declared"} {
		if err := rt.OnResponse(ctx, &luabind.Request{Route: scope}, &luabind.Response{}); err != nil {
			t.Errorf("observe into %s after the cap: %v", scope, err)
		}
	}
}
