package luatest

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/google/go-cmp/cmp"
	lua "github.com/yuin/gopher-lua"
)

// TestReferenceHelpers checks that luabind/REFERENCE.md's table of test helpers names
// exactly the globals the harness installs, and that a test file sees each of them.
func TestReferenceHelpers(t *testing.T) {
	b, err := os.ReadFile("../REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	var doc []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			in = h == "Test helpers (luatest)"
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			doc = append(doc, m[1])
		}
	}
	code := slices.Clone(suiteHelpers[:])
	slices.Sort(code)
	slices.Sort(doc)
	if diff := cmp.Diff(code, doc); diff != "" {
		t.Errorf("REFERENCE.md's test helpers disagree with the code (-code +doc):\n%s", diff)
	}

	s, err := newSuite(luabind.FromString("p.lua", `function on_tick() return {} end`),
		luabind.FromString("p_test.lua", `function TestNothing() end`))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	vm, done, err := s.vms.NewVM()
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	g := handle(vm).Globals()
	for _, name := range suiteHelpers {
		if g.RawGetString(name) == lua.LNil {
			t.Errorf("a test file does not see the helper %s", name)
		}
	}
}
