package luatest

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind/internal/luaunit"
	lua "github.com/yuin/gopher-lua"
)

// suiteHelpers are the globals a test file sees on top of the sandbox's.
var suiteHelpers = [...]string{"fixture", "request", "backends", "response", "decide", "decide_refused", "assert_eq", "assert_near", "assert_action", "assert_no_action", "clock"}

// install adds the test helpers to a VM.
func (s *suite) install(h vmHandle) {
	L, d := h.State(), h.Globals()
	fixtures := map[*lua.LTable]*autoscale.Input{}
	// targets are the targets of the fixtures the test made; nil before the first.
	var targets map[string]bool
	d.RawSetString("fixture", L.NewFunction(func(L *lua.LState) int {
		in, declared, err := fixtureInput(L.OptTable(1, L.NewTable()), s.clock.Now(), h.SnapshotFields())
		if err != nil {
			L.RaiseError("fixture: %v", err)
		}
		if targets == nil {
			targets = map[string]bool{}
		}
		for _, t := range in.Targets {
			targets[t.Name] = true
		}
		m := h.TickView(in, declared)
		fixtures[m] = in
		L.Push(m)
		return 1
	}))
	// decide runs on_tick on a fixture; it returns the actions the loop would take and
	// those it would refuse, with the reasons.
	decide := func(L *lua.LState, fn string) (acts []autoscale.Action, refused []refusal) {
		m := L.CheckTable(1)
		in, ok := fixtures[m]
		if !ok {
			L.ArgError(1, "not a fixture")
		}
		state := L.OptTable(2, L.NewTable())
		if !h.HasTick() {
			L.RaiseError("%s: the script has no on_tick", fn)
		}
		all, err := h.Tick(in, state)
		if err != nil {
			L.RaiseError("%s: %v", fn, err)
		}
		for _, a := range all {
			if why := refusedBy(a, in.Targets); why != "" {
				refused = append(refused, refusal{a, why})
			} else {
				acts = append(acts, a)
			}
		}
		return acts, refused
	}
	d.RawSetString("decide", L.NewFunction(func(L *lua.LState) int {
		acts, refused := decide(L, "decide")
		if len(refused) > 0 {
			L.RaiseError("decide: the loop would refuse %s: %s (a test that expects it calls decide_refused)",
				showAction(refused[0].a), refused[0].why)
		}
		L.Push(actionTable(h, acts))
		return 1
	}))
	d.RawSetString("decide_refused", L.NewFunction(func(L *lua.LState) int {
		acts, refused := decide(L, "decide_refused")
		list := L.CreateTable(len(refused), 0)
		for _, r := range refused {
			e := L.CreateTable(0, 2)
			e.RawSetString("action", h.Action(r.a))
			e.RawSetString("reason", lua.LString(r.why))
			list.Append(e)
		}
		L.Push(actionTable(h, acts))
		L.Push(list)
		return 2
	}))
	// checkRefused fails an assertion given an action the loop would refuse: a Scale
	// action for a target none of the test's fixtures has.
	checkRefused := func(L *lua.LState, fn string, val lua.LValue) {
		if targets == nil {
			return
		}
		acts, err := h.ActionsOf(val)
		if err != nil {
			return
		}
		for _, a := range acts {
			if sc, ok := a.(autoscale.Scale); ok && !targets[sc.Target] {
				L.RaiseError("%s: the loop would refuse %s: unknown target %q (the fixtures' targets: %s)",
					fn, showAction(a), sc.Target, strings.Join(slices.Sorted(maps.Keys(targets)), ", "))
			}
		}
	}
	d.RawSetString("request", L.NewFunction(func(L *lua.LState) int {
		req, err := fixtureRequest(L.OptTable(1, L.NewTable()))
		if err != nil {
			L.RaiseError("request: %v", err)
		}
		L.Push(h.RequestView(req))
		return 1
	}))
	d.RawSetString("backends", L.NewFunction(func(L *lua.LState) int {
		bs, err := fixtureBackends(L.CheckTable(1), h.BackendFields())
		if err != nil {
			L.RaiseError("backends: %v", err)
		}
		L.Push(h.BackendsView(bs))
		return 1
	}))
	d.RawSetString("response", L.NewFunction(func(L *lua.LState) int {
		res, err := fixtureResponse(L.OptTable(1, L.NewTable()))
		if err != nil {
			L.RaiseError("response: %v", err)
		}
		L.Push(h.ResponseView(res))
		return 1
	}))
	d.RawSetString("assert_eq", L.NewFunction(func(L *lua.LState) int {
		a, b := L.Get(1), L.Get(2)
		checkRefused(L, "assert_eq", a)
		if !deepEqual(a, b, 0) {
			L.RaiseError("assert_eq: got %s, want %s%s", show(a), show(b), msgSuffix(L, 3))
		}
		return 0
	}))
	d.RawSetString("assert_near", L.NewFunction(func(L *lua.LState) int {
		a, b := float64(L.CheckNumber(1)), float64(L.CheckNumber(2))
		eps := float64(L.OptNumber(3, 1e-9))
		if math.Abs(a-b) > eps {
			L.RaiseError("assert_near: got %v, want %v ± %v%s", a, b, eps, msgSuffix(L, 4))
		}
		return 0
	}))
	d.RawSetString("assert_action", L.NewFunction(func(L *lua.LState) int {
		acts := actionList(h, L, 1)
		checkRefused(L, "assert_action", L.Get(1))
		kind := L.CheckString(2)
		fields := L.OptTable(3, L.NewTable())
		for _, a := range acts {
			ok, err := matches(h, a, kind, fields)
			if err != nil {
				L.RaiseError("assert_action: %v%s", err, msgSuffix(L, 4))
			}
			if ok {
				L.Push(h.Action(a))
				return 1
			}
		}
		L.RaiseError("assert_action: no %s action matching %s among %s%s", kind, show(fields), showActions(acts), msgSuffix(L, 4))
		return 0
	}))
	d.RawSetString("assert_no_action", L.NewFunction(func(L *lua.LState) int {
		acts := actionList(h, L, 1)
		checkRefused(L, "assert_no_action", L.Get(1))
		kind := L.CheckString(2)
		fields := L.OptTable(3, L.NewTable())
		for _, a := range acts {
			ok, err := matches(h, a, kind, fields)
			if err != nil {
				L.RaiseError("assert_no_action: %v%s", err, msgSuffix(L, 4))
			}
			if ok {
				L.RaiseError("assert_no_action: found %s%s", showActions([]autoscale.Action{a}), msgSuffix(L, 4))
			}
		}
		return 0
	}))
	clock := L.NewTable()
	clock.RawSetString("now", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(luaunit.UnixSeconds(s.clock.Now())))
		return 1
	}))
	clock.RawSetString("set", L.NewFunction(func(L *lua.LState) int {
		t, ok := luaunit.Instant(float64(L.CheckNumber(1)))
		if !ok {
			L.ArgError(1, "not a time")
		}
		s.clock.Set(t)
		return 0
	}))
	clock.RawSetString("advance", L.NewFunction(func(L *lua.LState) int {
		d, ok := luaunit.Seconds(float64(L.CheckNumber(1)))
		if !ok {
			L.ArgError(1, "not a duration")
		}
		L.Push(lua.LNumber(luaunit.UnixSeconds(s.clock.Advance(d))))
		return 1
	}))
	d.RawSetString("clock", h.Protect(clock))
}

// refusal is an action the loop would refuse and why.
type refusal struct {
	a   autoscale.Action
	why string
}

// refusedBy says why the loop would refuse a, given the tick's targets: a Scale action
// for an unknown target. "" when it would not. (Invalid actions do not get this far:
// their constructors raise.)
func refusedBy(a autoscale.Action, targets []autoscale.TargetState) string {
	sc, ok := a.(autoscale.Scale)
	if !ok {
		return ""
	}
	names := make([]string, 0, len(targets))
	for _, t := range targets {
		if t.Name == sc.Target {
			return ""
		}
		names = append(names, t.Name)
	}
	return fmt.Sprintf("unknown target %q (the fixture's targets: %s)", sc.Target, strings.Join(names, ", "))
}

// actionTable returns acts as a Lua list of action userdata.
func actionTable(h vmHandle, acts []autoscale.Action) *lua.LTable {
	list := h.State().CreateTable(len(acts), 0)
	for _, a := range acts {
		list.Append(h.Action(a))
	}
	return list
}

func msgSuffix(L *lua.LState, n int) string {
	if L.GetTop() >= n && L.Get(n) != lua.LNil {
		return ": " + L.Get(n).String()
	}
	return ""
}

// actionList reads a list of actions (or one action) at argument n.
func actionList(h vmHandle, L *lua.LState, n int) []autoscale.Action {
	acts, err := h.ActionsOf(L.Get(n))
	if err != nil {
		L.ArgError(n, err.Error())
	}
	return acts
}

func showAction(a autoscale.Action) string { return fmt.Sprintf("%s%+v", a.Kind(), a) }

func showActions(acts []autoscale.Action) string {
	if len(acts) == 0 {
		return "no actions"
	}
	parts := make([]string, len(acts))
	for i, a := range acts {
		parts[i] = showAction(a)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
