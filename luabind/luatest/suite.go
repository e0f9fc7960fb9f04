package luatest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/internal/seam"
	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
)

// StartUnix is the time, in Unix seconds, the manual clock of a script's tests reads
// when each test starts: 2023-11-14T22:13:20Z.
const StartUnix = 1_700_000_000

// vmHandle is what luabind lets the harness do with one of a suite's VMs (luabind's
// side of internal/seam implements it).
type vmHandle interface {
	State() *lua.LState
	Globals() *lua.LTable
	Protect(*lua.LTable) *lua.LTable
	RunTest(name string) error
	HasTick() bool
	Tick(in *autoscale.Input, state *lua.LTable) ([]autoscale.Action, error)
	TickView(in *autoscale.Input, declared []metrics.Scope) *lua.LTable
	RequestView(*luabind.Request) *lua.LTable
	BackendsView([]luabind.BackendView) *lua.LTable
	ResponseView(*luabind.Response) *lua.LTable
	Action(autoscale.Action) *lua.LUserData
	ActionsOf(lua.LValue) ([]autoscale.Action, error)
	ActionField(a autoscale.Action, name string) (lua.LValue, error)
	SnapshotFields() []seam.SnapshotField
	BackendFields() []string
}

func handle(vm any) vmHandle {
	h, ok := vm.(vmHandle)
	if !ok {
		panic(fmt.Sprintf("luatest: luabind's VM handle %T lacks a method of luatest's vmHandle", vm))
	}
	return h
}

// suite is the tests of a script: the global functions whose names start with "Test"
// in a test file loaded after the script, each run in a fresh VM with the test helpers
// as globals.
type suite struct {
	rt    *luabind.Runtime
	clock *metrics.ManualClock
	name  string
	vms   seam.Suite
	tests []string
}

// newSuite loads script (running its self_test()), then the test file, and lists the
// tests. The options are those of [luabind.New]; the clock is always the suite's
// manual clock.
func newSuite(script, tests luabind.Source, opts ...luabind.Option) (*suite, error) {
	clock := metrics.NewManualClock(time.Unix(StartUnix, 0))
	rt, err := luabind.New(script, append(slices.Clip(opts), luabind.WithClock(clock))...)
	if err != nil {
		return nil, err
	}
	s := &suite{rt: rt, clock: clock, name: tests.Name}
	s.vms, err = seam.Open(rt, tests.Name, tests.Code, func(vm any) { s.install(handle(vm)) })
	if err != nil {
		rt.Close()
		return nil, err
	}
	vm, done, err := s.vms.NewVM()
	if err != nil {
		rt.Close()
		return nil, err
	}
	defer done()
	handle(vm).Globals().ForEach(func(k, val lua.LValue) {
		if name, ok := k.(lua.LString); ok && strings.HasPrefix(string(name), "Test") {
			if _, ok := val.(*lua.LFunction); ok {
				s.tests = append(s.tests, string(name))
			}
		}
	})
	slices.Sort(s.tests)
	return s, nil
}

// run runs one test in a fresh VM with the clock reset to [StartUnix]. It returns the
// test's failure (a [*luabind.ScriptError] whose Line is the failing line of the test
// file) or nil.
func (s *suite) run(name string) error {
	if !slices.Contains(s.tests, name) {
		return fmt.Errorf("luatest: no test %q", name)
	}
	s.clock.Set(time.Unix(StartUnix, 0))
	vm, done, err := s.vms.NewVM()
	if err != nil {
		return err
	}
	defer done()
	return handle(vm).RunTest(name)
}

func (s *suite) close() error { return s.rt.Close() }
