package luatest_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luatest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunDir(t *testing.T) {
	luatest.RunDir(t, os.DirFS("../testdata"), ".")
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.TB.Cleanup(f) }
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}
func (r *recorder) Fatalf(format string, a ...any) { r.Errorf(format, a...) }
func (r *recorder) Fatal(a ...any)                 { r.errs = append(r.errs, fmt.Sprint(a...)) }

func TestFailingLuaTestFails(t *testing.T) {
	script := luabind.FromString("p.lua", `function on_tick(m, state) return scale("web", m.target("web").replicas + 1) end`)
	tests := luabind.FromString("p_test.lua", `
function TestPasses()
  assert_action(decide(fixture{ targets = { web = { replicas = 2 } } }), "scale", { replicas = 3 })
end
function TestFails()
  assert_action(decide(fixture{ targets = { web = { replicas = 2 } } }), "scale", { replicas = 9 })
end
function TestWrongEq()
  assert_eq({ a = 1 }, { a = 2 }, "tables")
end`)
	r := &recorder{TB: t}
	luatest.RunSource(r, script, tests)
	if len(r.errs) != 2 {
		t.Fatalf("recorded %d failures, want 2: %q", len(r.errs), r.errs)
	}
	if !strings.Contains(r.errs[0], "TestFails p_test.lua:6: assert_action") {
		t.Errorf("failure does not name the test and line: %s", r.errs[0])
	}
	if !strings.Contains(r.errs[1], "got {a=1}, want {a=2}: tables") {
		t.Errorf("assert_eq message: %s", r.errs[1])
	}
}

// TestRefusedActionsFail checks that an action the loop would refuse (a Scale action
// for a target the fixture lacks, a misspelt snapshot field or scope) fails decide and
// the assertions with the reason, and that decide_refused lets a test expect it.
func TestRefusedActionsFail(t *testing.T) {
	script := luabind.FromString("p.lua", `
function on_tick(m, state)
  if state.field then return scale("web", m.route("/a").p99x) end
  if state.scope then return scale("web", m.sum("models", "rps")) end
  return { scale("web", 2), scale("no-such-target", 3) }
end`)
	tests := luabind.FromString("p_test.lua", `
local function m() return fixture{ targets = { web = {} } } end
function TestDecide() decide(m()) end
function TestField() decide(m(), { field = true }) end
function TestScope() decide(m(), { scope = true }) end
function TestAssertOnTick()
  local fx = m()
  assert_action(on_tick(fx, {}), "scale", { target = "web" })
end
function TestAssertNoAction()
  local fx = m()
  assert_no_action(on_tick(fx, {}), "eject")
end
function TestAssertEq()
  local fx = m()
  assert_eq(#on_tick(fx, {}), 2)
  assert_eq(on_tick(fx, {})[2], scale("no-such-target", 3))
end
function TestExpected()
  local acts, refused = decide_refused(m())
  assert_eq(#acts, 1)
  assert_action(acts, "scale", { target = "web", replicas = 2 })
  assert_eq(#refused, 1)
  assert_eq(refused[1].action.target, "no-such-target")
  assert(string.find(refused[1].reason, 'unknown target "no%-such%-target"'), refused[1].reason)
end
function TestNoFixture()
  assert_eq(scale("anything", 1).target, "anything")
end`)
	r := &recorder{TB: t}
	luatest.RunSource(r, script, tests)
	want := []string{
		`TestAssertEq p_test.lua:17: assert_eq: the loop would refuse scale{Target:no-such-target Replicas:3 Reason: Panic:false}: unknown target "no-such-target" (the fixtures' targets: web)`,
		`TestAssertNoAction p_test.lua:12: assert_no_action: the loop would refuse scale`,
		`TestAssertOnTick p_test.lua:8: assert_action: the loop would refuse scale`,
		`TestDecide p_test.lua:3: decide: the loop would refuse scale{Target:no-such-target Replicas:3 Reason: Panic:false}: unknown target "no-such-target" (the fixture's targets: web) (a test that expects it calls decide_refused)`,
		`TestField p_test.lua:4: decide: luabind: on_tick p.lua:3: a snapshot has no field "p99x"`,
		`TestScope p_test.lua:5: decide: luabind: on_tick p.lua:4: bad argument #1 to sum (m.sum: unknown scope "models"`,
	}
	if len(r.errs) != len(want) {
		t.Fatalf("recorded %d failures, want %d: %q", len(r.errs), len(want), r.errs)
	}
	for i, w := range want {
		if !strings.Contains(r.errs[i], w) {
			t.Errorf("failure %d:\n got %s\nwant %s", i, r.errs[i], w)
		}
	}
}

// TestBudgetAction: a policy's budget actions are asserted on by their fields and by
// value, and a wrong field fails.
func TestBudgetAction(t *testing.T) {
	script := luabind.FromString("p.lua", `
-- At its max, web's batch tenant gets a tight token budget on llama; below, a loose one.
function on_tick(m, state)
  if m.target("web").replicas >= 4 then return budget("batch", "llama", 6000, 500) end
  return budget("batch", nil, 600000)
end`)
	tests := luabind.FromString("p_test.lua", `
function TestTight()
  local acts = decide(fixture{ targets = { web = { replicas = 4, max = 4 } } })
  local b = assert_action(acts, "budget", { tenant = "batch", model = "llama", tokens_per_minute = 6000, burst = 500 })
  assert_eq(b, budget("batch", "llama", 6000, 500))
end
function TestLoose()
  assert_action(decide(fixture{ targets = { web = { replicas = 1 } } }), "budget", { model = "", tokens_per_minute = 600000, burst = 0 })
end
function TestWrong()
  assert_action(decide(fixture{ targets = { web = { replicas = 1 } } }), "budget", { tokens_per_minute = 6000 })
end`)
	r := &recorder{TB: t}
	luatest.RunSource(r, script, tests)
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], "TestWrong p_test.lua:11: assert_action: no budget action matching {tokens_per_minute=6000}") {
		t.Errorf("failures %q, want TestWrong's alone", r.errs)
	}
}

// TestBackendsLoadFields checks the backends helper's load-report fields: given, they
// read back; absent, the backend has no report and all three read nil.
func TestBackendsLoadFields(t *testing.T) {
	script := luabind.FromString("p.lua", `
function pick(req, backends)
  local best, bestq = nil, nil
  for _, b in ipairs(backends) do
    if b.queue and (not b.load_age or b.load_age < 3) and (bestq == nil or b.queue < bestq) then best, bestq = b.id, b.queue end
  end
  return best
end`)
	tests := luabind.FromString("p_test.lua", `
function TestLoadFields()
  local bs = backends{{id = "a", queue = 3, kv_cache = 0.5, load_age = 1.5}, {id = "b"}, {id = "c", queue = 1, load_age = 9}}
  assert_eq(bs[1].queue, 3)
  assert_eq(bs[1].kv_cache, 0.5)
  assert_eq(bs[1].load_age, 1.5)
  assert_eq(bs[2].queue, nil)
  assert_eq(bs[2].load_age, nil)
  assert_eq(bs[3].kv_cache, 0)
  assert_eq(pick(request{}, bs), "a")
end
function TestFailsOnWrongAge()
  assert_eq(backends{{id = "a", load_age = 2}}[1].load_age, 3)
end`)
	r := &recorder{TB: t}
	luatest.RunSource(r, script, tests)
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], "TestFailsOnWrongAge") {
		t.Fatalf("failures %q, want exactly TestFailsOnWrongAge's", r.errs)
	}
}
