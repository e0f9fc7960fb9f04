package luatest_test

import (
	"os"
	"testing"

	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luatest"
)

func TestExamplePolicyLuaTests(t *testing.T) {
	luatest.Run(t, os.DirFS("../testdata"), "policy.lua", "policy_test.lua")
}

// Unix times, not only durations, go into the manual clock and fixtures.
func TestHarnessUnixTimes(t *testing.T) {
	luatest.RunSource(t, luabind.FromString("p.lua", `function on_tick(m, state) return {} end`),
		luabind.FromString("p_test.lua", `
function TestClockSetUnixTime()
  clock.set(1700000000.5)
  assert_eq(clock.now(), 1700000000.5)
  assert_eq(clock.advance(10), 1700000010.5)
end
function TestFixtureUnixNow()
  local m = fixture{now = 1764201600}
  assert_eq(m.now, 1764201600)
end`))
}
