package luatest_test

import (
	"fmt"
	"testing"

	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luatest"
)

// printer is the testing.TB this example runs the Lua tests under, printing each
// failure. In a Go test it is the test's *testing.T, and each Lua test is a subtest.
type printer struct {
	testing.TB // only the methods below are called
}

func (printer) Helper()                           {}
func (printer) Cleanup(func())                    {}
func (printer) Errorf(format string, args ...any) { fmt.Printf("FAIL "+format+"\n", args...) }
func (printer) Fatal(args ...any)                 { fmt.Println(append([]any{"FAIL"}, args...)...) }
func (printer) Fatalf(format string, args ...any) { fmt.Printf("FAIL "+format+"\n", args...) }

// A policy and its Lua tests: each Test* function builds the metrics a tick would see
// with fixture, runs on_tick through decide and asserts on the actions. The policy
// misspells its target when it scales down; the loop would refuse that action, and
// the test of the scale-down fails with the reason. In a Go test the whole suite is
// one line: luatest.RunSource(t, policy, tests).
func ExampleRunSource() {
	policy := luabind.FromString("latency.lua", `
-- latency: one more replica while the route's p99 is over the SLO, one fewer while it
-- is under half of it.
local slo_ms = 200

function on_tick(m, state)
  local t, r = m.target("web"), m.route("/checkout")
  if not (t and r.ok) then return {} end
  if r.p99 > slo_ms then return scale("web", t.replicas + 1, "p99 over the SLO") end
  if r.p99 < slo_ms / 2 and t.replicas > t.min then return scale("wbe", t.replicas - 1, "p99 low") end
  return {}
end`)
	tests := luabind.FromString("latency_test.lua", `
local function at(p99, replicas)
  return fixture{ targets = { web = { replicas = replicas, min = 1 } },
                  routes = { ["/checkout"] = { rps = 100, p99 = p99 } } }
end

function TestSlowScalesUp()
  assert_action(decide(at(350, 3)), "scale", { target = "web", replicas = 4 })
end

function TestWithinTheSLOHolds()
  assert_eq(decide(at(150, 3)), {})
end

function TestFastScalesDown()
  assert_action(decide(at(40, 3)), "scale", { target = "web", replicas = 2 })
end`)
	luatest.RunSource(printer{}, policy, tests)
	// Output:
	// FAIL TestFastScalesDown: luabind: TestFastScalesDown latency_test.lua:16: decide: the loop would refuse scale{Target:wbe Replicas:2 Reason:p99 low Panic:false}: unknown target "wbe" (the fixture's targets: web) (a test that expects it calls decide_refused)
}
