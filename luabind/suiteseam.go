package luabind

import (
	"errors"
	"fmt"
	"slices"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind/internal/seam"
	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
)

// This file is luabind's side of internal/seam, the door its test harness (package
// luatest) goes through: a test file's program and the handle of a VM that runs it. The
// harness itself (fixtures, assertions, running the tests) lives in luatest.

func init() { seam.Open = openSuite }

// suiteTests is a test file a suite's VMs load after the script, and the harness's
// function that installs its helpers in each VM before either runs.
type suiteTests struct {
	chunk
	install func(vm any)
}

// suite makes the VMs of a test file's runs; its program is the runtime's current one
// plus the test file.
type suite struct {
	rt   *Runtime
	prog *program
}

func openSuite(rtv any, name, code string, install func(vm any)) (seam.Suite, error) {
	rt, ok := rtv.(*Runtime)
	if !ok {
		return nil, fmt.Errorf("luabind: a suite needs a *luabind.Runtime, not a %T", rtv)
	}
	c, err := parseChunk(Source{Name: name, Code: code})
	if err != nil {
		return nil, err
	}
	base := rt.prog.Load()
	p := &program{name: base.name, proto: base.proto, has: base.has, gen: base.gen, tests: &suiteTests{c, install}}
	return &suite{rt: rt, prog: p}, nil
}

func (s *suite) NewVM() (any, func(), error) {
	v, err := s.rt.newVM(s.prog, s.rt.cfg.limits.budget(hLoad))
	if err != nil {
		return nil, nil, err
	}
	return suiteVM{v}, v.close, nil
}

// suiteVM is the handle of a suite's VM: what the harness's helpers may do with it.
// Its methods are those of luatest's vmHandle interface.
type suiteVM struct{ v *vm }

// State returns the VM's Lua state.
func (h suiteVM) State() *lua.LState { return h.v.L }

// Globals returns the VM's real globals (behind the environment scripts see).
func (h suiteVM) Globals() *lua.LTable { return h.v.data }

// Protect returns a read-only proxy of t.
func (h suiteVM) Protect(t *lua.LTable) *lua.LTable { return h.v.protect(t) }

// RunTest calls the global function name as a test, under the load budget. Its failure
// is a *ScriptError under the test's name, with the test file's line.
func (h suiteVM) RunTest(name string) error {
	v := h.v
	v.hook = hSelfTest
	v.L.Push(v.data.RawGetString(name))
	if err := v.pcall(0, 0, v.rt.cfg.limits.budget(hLoad)); err != nil {
		se := scriptError(HookSelfTest, v.prog.tests.name, err, sentinelOf(err, ErrScript))
		se.Hook = Hook(name)
		return se
	}
	return nil
}

// HasTick reports whether the script defines on_tick.
func (h suiteVM) HasTick() bool { return h.v.fns[hTick] != nil }

// Tick runs on_tick on in with state, without a time budget, as [Runtime.Decide] would
// convert and bound its return.
func (h suiteVM) Tick(in *autoscale.Input, state *lua.LTable) ([]autoscale.Action, error) {
	return h.v.tick(in, state, 0, h.v.rt.cfg.limits.MaxActions)
}

// TickView returns a new m over in that also knows the declared scopes.
func (h suiteVM) TickView(in *autoscale.Input, declared []metrics.Scope) *lua.LTable {
	tv := &tickView{scopes: declared}
	tv.init(h.v)
	tv.set(in)
	return tv.proxy
}

// RequestView returns a new req view of req.
func (h suiteVM) RequestView(req *Request) *lua.LTable {
	rv := &reqView{}
	rv.init(h.v)
	rv.set(h.v, req)
	return rv.proxy
}

// BackendsView returns a new list of backend views of bs.
func (h suiteVM) BackendsView(bs []BackendView) *lua.LTable {
	pv := &pickViews{}
	pv.init(h.v)
	return pv.set(h.v, bs)
}

// ResponseView returns a new res view of res.
func (h suiteVM) ResponseView(res *Response) *lua.LTable {
	rv := &resView{}
	rv.init(h.v)
	rv.set(h.v, res)
	return rv.proxy
}

// Action returns a as the userdata the action constructors return.
func (h suiteVM) Action(a autoscale.Action) *lua.LUserData { return h.v.actionUD(a) }

// ActionsOf reads a value as on_tick's return: nil, one action or a list of actions.
func (suiteVM) ActionsOf(val lua.LValue) ([]autoscale.Action, error) { return actionsOf(val) }

// ActionField returns one field of a as Lua reads it; an error names the fields a has.
func (suiteVM) ActionField(a autoscale.Action, name string) (lua.LValue, error) {
	if val, ok := actionFieldOf(a, name); ok {
		return val, nil
	}
	return lua.LNil, errors.New(unknownActionField(a, name))
}

// SnapshotFields returns the snapshot view's numbers (all its fields but ok), in the
// order REFERENCE.md lists them, with how a fixture sets each.
func (suiteVM) SnapshotFields() []seam.SnapshotField {
	out := make([]seam.SnapshotField, 0, len(snapshotFields)-1)
	for _, f := range snapshotFields[fieldOK+1:] {
		out = append(out, seam.SnapshotField{Name: f.name, Set: f.set})
	}
	return out
}

// BackendFields returns the fields of a backend view.
func (suiteVM) BackendFields() []string { return slices.Clone(backendFields[:]) }
