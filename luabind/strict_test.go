package luabind_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
			in := &autoscale.Input{Now: time.Unix(100, 0), Metrics: autoscale.NewRegistryReader(reg, time.Unix(100, 0))}
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
