package luatest

import (
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/autoscalelua/autoscalelua/luabind"
)

// Run loads script and its test file from fsys and runs every Test* function of the
// test file as a subtest of t. Options are those of [luabind.New]; the clock is always
// the suite's manual clock. A script or test file that does not load fails t.
func Run(t testing.TB, fsys fs.FS, script, tests string, opts ...luabind.Option) {
	t.Helper()
	src, err := luabind.FromFS(fsys, script)
	if err != nil {
		t.Fatal(err)
	}
	tsrc, err := luabind.FromFS(fsys, tests)
	if err != nil {
		t.Fatal(err)
	}
	RunSource(t, src, tsrc, opts...)
}

// RunSource is [Run] with the sources already read.
func RunSource(t testing.TB, script, tests luabind.Source, opts ...luabind.Option) {
	t.Helper()
	s, err := newSuite(script, tests, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	names := s.tests
	if len(names) == 0 {
		t.Fatalf("luatest: %s has no Test* functions", tests.Name)
	}
	tt, ok := t.(*testing.T)
	for _, name := range names {
		if !ok {
			if err := s.run(name); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		tt.Run(name, func(t *testing.T) {
			if err := s.run(name); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// RunDir runs, for every file dir/X_test.lua in fsys, the tests of X_test.lua against
// dir/X.lua, each file pair as a subtest named X. It fails t if dir holds no test
// files.
func RunDir(t *testing.T, fsys fs.FS, dir string, opts ...luabind.Option) {
	t.Helper()
	matches, err := fs.Glob(fsys, path.Join(dir, "*_test.lua"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) == 0 {
		t.Fatalf("luatest: no *_test.lua files in %s", dir)
	}
	for _, m := range matches {
		script := strings.TrimSuffix(m, "_test.lua") + ".lua"
		t.Run(path.Base(strings.TrimSuffix(script, ".lua")), func(t *testing.T) {
			Run(t, fsys, script, m, opts...)
		})
	}
}
