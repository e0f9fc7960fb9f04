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
