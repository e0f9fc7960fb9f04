package luabind_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// TestUnknownNamesRaise checks that a misspelt field of a view, an action or a
// snapshot, and an unknown scope, fail the hook with the name instead of reading nil or
// an empty scope; and that a declared scope, or one with windows, is accepted.
func TestUnknownNamesRaise(t *testing.T) {
	reg, err := metrics.NewRegistry(metrics.WithClock(metrics.NewManualClock(time.Unix(100, 0))))
	if err != nil {
		t.Fatal(err)
	}
	reg.Window("gpu", "a").Record(metrics.Observation{Value: 2})
	tests := []struct {
		name string
		body string // the body of on_tick(m, state)
		want string // a substring of the error; "" for none
		opts []luabind.Option
	}{
		{"snapshot field", `local x = m.route("/a").p99x`, `a snapshot has no field "p99x"`, nil},
		{"snapshot field known", `assert(m.route("/a").p99 == 0 and m.route("/a").ok == false)`, "", nil},
		{"action field", `local x = scale("web", 1).replica`, `a scale action has no field "replica" (fields: kind, target, replicas, reason, panic)`, nil},
		{"m field", `local x = m.targets`, "m has no field targets", nil},
		{"m.sum scope", `local x = m.sum("models", "rps")`, `m.sum: unknown scope "models"`, nil},
		{"m.max scope", `local x = m.max("routes", "p99")`, `m.max: unknown scope "routes"`, nil},
		{"m.keys scope", `local x = m.keys("backends")`, `m.keys: unknown scope "backends"`, nil},
		{"m.scope scope", `local x = m.scope("tenants", "a")`, `m.scope: unknown scope "tenants"`, nil},
		{"library scope empty", `assert(m.sum("model", "rps") == 0 and #m.keys("tenant") == 0)`, "", nil},
		{"scope with windows", `assert(m.sum("gpu", "value") == 2 and m.scope("gpu", "a").ok)`, "", nil},
		{"declared scope", `assert(m.sum("queue", "value") == 0)`, "", []luabind.Option{luabind.WithScopes("queue")}},
		{"undeclared scope", `assert(m.sum("queue", "value") == 0)`, `unknown scope "queue"`, []luabind.Option{luabind.WithScopes("other")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]luabind.Option{luabind.WithFailMode(luabind.HookTick, luabind.FailClosed)}, tc.opts...)
			rt := newRT(t, "function on_tick(m, state)\n"+tc.body+"\nend", opts...)
			in := &autoscale.Input{Now: time.Unix(100, 0), Metrics: autoscale.NewSnapshot(time.Unix(100, 0), autoscale.NewRegistryReader(reg, time.Unix(100, 0)))}
			_, err := rt.Decide(context.Background(), in)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Decide: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Decide: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestUnknownRequestFieldsRaise checks the views of the per-request hooks: req, res and
// a backend view.
func TestUnknownRequestFieldsRaise(t *testing.T) {
	ctx := context.Background()
	rt := newRT(t, `
function on_request(req)
  if req.path == "/tokens" then assert(req.tokens == nil) return end
  local x = req.tennant
end
function on_response(req, res) local x = res.latnecy end
function pick(req, backends) local x = backends[1].inflight end`)
	if _, err := rt.OnRequest(ctx, &luabind.Request{Path: "/tokens"}); err != nil {
		t.Errorf("req.tokens, nil when the host gives none, raised: %v", err)
	}
	if _, err := rt.OnRequest(ctx, &luabind.Request{}); err == nil || !strings.Contains(err.Error(), "req has no field tennant") {
		t.Errorf("on_request: %v", err)
	}
	if err := rt.OnResponse(ctx, &luabind.Request{}, &luabind.Response{}); err == nil || !strings.Contains(err.Error(), "res has no field latnecy") {
		t.Errorf("on_response: %v", err)
	}
	if _, err := rt.Pick(ctx, &luabind.Request{}, []luabind.BackendView{{ID: "a", Healthy: true}}); err == nil || !strings.Contains(err.Error(), "a backend view has no field inflight") {
		t.Errorf("pick: %v", err)
	}
}

// TestMistakeReachesTheLoop checks that a script's mistake under fail-open reaches the
// loop: the tick records it and the loop's stats count it, while the target holds (the
// Fallback does not count a skip); the same mistake under fail-closed counts toward
// the Fallback.
func TestMistakeReachesTheLoop(t *testing.T) {
	for _, mode := range []luabind.FailMode{luabind.FailOpen, luabind.FailClosed} {
		rt := newRT(t, `function on_tick(m, state) return scale("web", m.route("/a").p99x) end`,
			luabind.WithFailMode(luabind.HookTick, mode))
		loop, err := autoscale.NewLoop(autoscale.WithPolicy(rt), autoscale.WithTargets(autoscale.Target{
			Name: "web", Min: 1, Max: 10, Actuator: nopActuator{},
			Safety: autoscale.Safety{Fallback: &autoscale.Fallback{FailureThreshold: 1, Replicas: 7}},
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer loop.Close()
		tk, err := loop.Step(context.Background(), time.Unix(100, 0))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(tk.PolicyErr, `a snapshot has no field "p99x"`) {
			t.Errorf("mode %d: tick's policy error %q", mode, tk.PolicyErr)
		}
		if st := loop.Stats(); st.PolicyErrors != 1 || !strings.Contains(st.LastPolicyErr, "p99x") {
			t.Errorf("mode %d: stats %+v", mode, st)
		}
		want := -1 // hold: the count is unknown, nothing is asked
		if mode == luabind.FailClosed {
			want = 7
		}
		if d := tk.Decisions[0]; d.Desired != want {
			t.Errorf("mode %d: desired %d, want %d (%s)", mode, d.Desired, want, d.Why)
		}
	}
}

type nopActuator struct{}

func (nopActuator) Scale(context.Context, actuator.Request) error { return nil }
