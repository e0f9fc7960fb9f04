package luabind

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind/internal/luaunit"
	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
)

var _ autoscale.Policy = (*Runtime)(nil)

// Decide runs the script's on_tick with a view of in and returns the actions it made,
// each already validated. It implements [autoscale.Policy]. The tick hook has a VM of
// its own and calls are serialized; the state table passed to on_tick persists between
// ticks and across reloads. When the hook fails, Decide returns no actions and the
// error, counted and logged either way: fail-open (the default) wraps it in
// [autoscale.ErrPolicySkipped], so that the loop records it and holds without counting
// a failure toward a target's Fallback; fail-closed returns it as it is, a failure the
// Fallback counts. Without an on_tick, Decide returns no actions.
func (r *Runtime) Decide(ctx context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
	p := r.prog.Load()
	if !p.has[hTick] {
		return nil, nil
	}
	if in == nil {
		return nil, fmt.Errorf("luabind: nil input")
	}
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if r.tickVM != nil && r.tickVM.prog != p {
		r.discard(r.tickVM)
		r.tickVM = nil
	}
	if r.tickVM == nil {
		v, err := r.newVM(p, r.cfg.limits.budget(hTick))
		if err != nil {
			return r.tickFailed(ctx, err)
		}
		r.created.Add(1)
		r.tickVM = v
	}
	v := r.tickVM
	v.hook = hTick
	if r.state == nil {
		r.state = v.L.NewTable()
	}
	acts, err := v.tick(in, r.state, r.cfg.limits.budget(hTick), r.cfg.limits.MaxActions)
	// The state outlives the VM: measure it after every tick, failed ones included
	// (a tick that timed out may have grown it as much as one that returned).
	if lim := r.cfg.limits.MaxStateBytes; stateSize(r.state, lim) > lim {
		r.state = nil // the next tick starts from an empty state
		r.stateResets.Add(1)
		if err == nil {
			err = &ScriptError{Hook: HookTick, Script: p.name, Err: ErrScript,
				Message: fmt.Sprintf("state grew past %d bytes (limit): reset to an empty table", lim)}
		}
	}
	if err != nil {
		if !isBadReturn(err) {
			r.discard(v)
			r.tickVM = nil
		}
		return r.tickFailed(ctx, err)
	}
	return acts, nil
}

func isBadReturn(err error) bool {
	_, ok := err.(badReturn)
	return ok
}

type badReturn struct{ error }

func (e badReturn) Unwrap() error { return e.error }

func (r *Runtime) tickFailed(ctx context.Context, err error) ([]autoscale.Action, error) {
	err = r.failed(ctx, hTick, err)
	if r.cfg.fail[hTick] == FailClosed {
		return nil, err
	}
	return nil, fmt.Errorf("%w: %w", autoscale.ErrPolicySkipped, err)
}

// tick calls on_tick(m, state) and converts its return value.
func (v *vm) tick(in *autoscale.Input, state *lua.LTable, budget time.Duration, maxActions int) ([]autoscale.Action, error) {
	v.tickv.set(in)
	defer v.tickv.clear()
	L := v.L
	L.Push(v.fns[hTick])
	L.Push(v.tickv.proxy)
	L.Push(state)
	if err := v.pcall(2, 1, budget); err != nil {
		return nil, v.callErr(hTick, err)
	}
	ret := L.Get(-1)
	L.Pop(1)
	if t, ok := ret.(*lua.LTable); ok && t.Len() > maxActions {
		return nil, &ScriptError{Hook: HookTick, Script: v.prog.name, Err: ErrScript,
			Message: fmt.Sprintf("on_tick returned %d actions, more than %d (limit)", t.Len(), maxActions)}
	}
	acts, err := actionsOf(ret)
	if err != nil {
		return nil, badReturn{fmt.Errorf("%w: on_tick: %w", ErrBadReturn, err)}
	}
	return acts, nil
}

// actionsOf reads on_tick's return value: nil, one action, or a list of actions.
func actionsOf(ret lua.LValue) ([]autoscale.Action, error) {
	switch ret := ret.(type) {
	case *lua.LNilType:
		return nil, nil
	case *lua.LUserData:
		a, ok := ret.Value.(autoscale.Action)
		if !ok {
			return nil, fmt.Errorf("got a userdata that is not an action")
		}
		return []autoscale.Action{a}, nil
	case *lua.LTable:
		n := ret.Len()
		out := make([]autoscale.Action, 0, n)
		for i := 1; i <= n; i++ {
			ud, ok := ret.RawGetInt(i).(*lua.LUserData)
			if !ok {
				return nil, fmt.Errorf("element %d is a %s, not an action", i, ret.RawGetInt(i).Type())
			}
			a, ok := ud.Value.(autoscale.Action)
			if !ok {
				return nil, fmt.Errorf("element %d is not an action", i)
			}
			out = append(out, a)
		}
		var extra bool
		ret.ForEach(func(k, _ lua.LValue) {
			if n, ok := k.(lua.LNumber); !ok || int(n) < 1 || int(n) > len(out) {
				extra = true
			}
		})
		if extra {
			return nil, fmt.Errorf("the action list has keys beyond 1..%d", len(out))
		}
		return out, nil
	}
	return nil, fmt.Errorf("got a %s, want nil, an action or a list of actions", ret.Type())
}

// tickView is the m argument of on_tick: a protected proxy whose functions read the
// current input.
type tickView struct {
	proxy, data *lua.LTable
	in          *autoscale.Input
	vm          *vm
	// keys holds, per scope, the keys m.keys last returned and their Lua strings, so
	// that an unchanged list costs no conversions.
	keys map[metrics.Scope]*keyList
	// uds and views are the unused tails of the current blocks of snapshot userdata
	// and their Go sides, allocated snapBlock at a time (the views apart, since they
	// hold no pointers and so cost the collector nothing). Blocks are never reused:
	// the script may keep a snapshot in state.
	uds   []lua.LUserData
	views []snapView
	// scanned is the snapshot being aggregated (a field, so that the aggregates do not
	// move a snapshot a window to the heap).
	scanned metrics.Snapshot
	// scopes are the scopes a luatest fixture declares, known even without windows.
	scopes []metrics.Scope
}

type keyList struct {
	keys []string
	vals []lua.LValue
}

const (
	snapBlock   = 64
	maxKeyLists = 16 // scopes whose key lists m.keys keeps
)

var tickFields = [...]string{"now", "tick", "route", "tenant", "backend", "model", "target", "scope", "keys", "sum", "max", "min", "limit"}

// aggregates are the m functions that reduce a field over a scope's windows.
var aggregates = [...]string{"sum", "max", "min"}

func (tv *tickView) init(v *vm) {
	L := v.L
	tv.vm = v
	if v.snapMT == nil {
		v.snapMT = L.NewTable()
		v.snapMT.RawSetString("__index", L.NewFunction(luaSnapshotIndex))
		v.snapMT.RawSetString("__newindex", v.readOnly)
		v.snapMT.RawSetString("__metatable", lua.LString(protectedMeta))
	}
	tv.data = L.CreateTable(0, len(tickFields))
	for _, s := range []metrics.Scope{metrics.ScopeRoute, metrics.ScopeTenant, metrics.ScopeBackend, metrics.ScopeModel} {
		tv.data.RawSetString(string(s), L.NewFunction(func(L *lua.LState) int {
			return tv.snapshot(L, s, 1)
		}))
	}
	tv.data.RawSetString("scope", L.NewFunction(func(L *lua.LState) int {
		return tv.snapshot(L, tv.checkScope(L, "scope", 1), 2)
	}))
	tv.data.RawSetString("target", L.NewFunction(func(L *lua.LState) int {
		in := tv.input(L)
		t, ok := in.Target(L.CheckString(1))
		if !ok {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(targetTable(L, t))
		return 1
	}))
	for _, op := range aggregates {
		tv.data.RawSetString(op, L.NewFunction(func(L *lua.LState) int {
			return tv.aggregate(L, op)
		}))
	}
	tv.data.RawSetString("limit", L.NewFunction(tv.limit))
	tv.data.RawSetString("keys", L.NewFunction(func(L *lua.LState) int {
		in := tv.input(L)
		scope := tv.checkScope(L, "keys", 1)
		var keys []string
		if scope == metrics.ScopeTarget {
			for _, t := range in.Targets {
				keys = append(keys, t.Name)
			}
		} else {
			keys = in.Metrics.Keys(scope)
		}
		vals := tv.luaKeys(scope, keys)
		t := L.CreateTable(len(vals), 0)
		for _, k := range vals {
			t.Append(k)
		}
		L.Push(t)
		return 1
	}))
	v.strict(tv.data, "m", tickFields[:])
	tv.proxy = v.protect(tv.data)
}

// luaKeys returns keys as Lua strings, converting them only when they differ from the
// scope's last list.
func (tv *tickView) luaKeys(scope metrics.Scope, keys []string) []lua.LValue {
	kl := tv.keys[scope]
	if kl == nil {
		if len(tv.keys) >= maxKeyLists {
			kl = &keyList{} // a script listing ever new scopes: convert, do not keep
		} else {
			if tv.keys == nil {
				tv.keys = map[metrics.Scope]*keyList{}
			}
			kl = &keyList{}
			tv.keys[scope] = kl
		}
	}
	if !slices.Equal(kl.keys, keys) {
		kl.keys = slices.Clone(keys)
		kl.vals = kl.vals[:0]
		for _, k := range keys {
			kl.vals = append(kl.vals, lua.LString(k))
		}
	}
	return kl.vals
}

// checkScope returns the scope named by argument n of m.fn, raising when the scope is
// unknown: not the library's, not declared ([WithScopes], a fixture's scopes) and
// without windows. m.sum("models", "rps") would otherwise sum nothing, and the policy
// scale to its minimum.
func (tv *tickView) checkScope(L *lua.LState, fn string, n int) metrics.Scope {
	scope := metrics.Scope(L.CheckString(n))
	if slices.Contains(builtinScopes[:], scope) || slices.Contains(tv.vm.rt.cfg.scopes, scope) || slices.Contains(tv.scopes, scope) {
		return scope
	}
	if in := tv.input(L); len(in.Metrics.Keys(scope)) > 0 {
		return scope
	}
	names := make([]string, 0, len(builtinScopes))
	for _, s := range builtinScopes {
		names = append(names, string(s))
	}
	L.ArgError(n, fmt.Sprintf("m.%s: unknown scope %q (the library's are %s; a scope of your own needs windows or luabind.WithScopes)",
		fn, scope, strings.Join(names, ", ")))
	return ""
}

func (tv *tickView) input(L *lua.LState) *autoscale.Input {
	if tv.in == nil {
		L.RaiseError("m is only valid during on_tick")
	}
	return tv.in
}

func (tv *tickView) set(in *autoscale.Input) {
	tv.in = in
	tv.data.RawSetString("now", lua.LNumber(luaunit.UnixSeconds(in.Now)))
	tv.data.RawSetString("tick", lua.LNumber(in.Tick.Seconds()))
}

func (tv *tickView) clear() { tv.in = nil }

// snapshot pushes the snapshot table of (scope, the string argument at arg) over the
// optional span (seconds) at arg+1.
func (tv *tickView) snapshot(L *lua.LState, scope metrics.Scope, arg int) int {
	in := tv.input(L)
	key := L.CheckString(arg)
	span := spanArg(L, arg+1)
	snap, ok := in.Metrics.Snapshot(scope, key, span)
	L.Push(tv.newSnapshot(snap, ok))
	return 1
}

// spanArg returns the optional span in seconds at argument n; zero when absent.
func spanArg(L *lua.LState, n int) time.Duration {
	if L.GetTop() < n || L.Get(n) == lua.LNil {
		return 0
	}
	d, ok := luaunit.Seconds(float64(L.CheckNumber(n)))
	if !ok || d <= 0 {
		L.ArgError(n, "span must be a positive number of seconds")
	}
	return d
}

// aggregate pushes m.sum, m.max or m.min (op) of a numeric snapshot field over the
// windows of a scope: the sum (0 without windows), or the largest or smallest value
// and its key (nil without windows). Ties go to the first key in order.
func (tv *tickView) aggregate(L *lua.LState, op string) int {
	in := tv.input(L)
	scope := tv.checkScope(L, op, 1)
	name := L.CheckString(2)
	f, ok := lookupField(name)
	if !ok || f == fieldOK {
		L.ArgError(2, fmt.Sprintf("%q is not a numeric snapshot field", name))
	}
	span := spanArg(L, 3)
	var (
		n    int
		acc  float64
		best string
	)
	// The tick's snapshot reads the scope once, whichever aggregate asks first.
	for key, s := range in.Metrics.Scope(scope, span) {
		tv.scanned = s
		v := f.number(&tv.scanned)
		switch {
		case op == "sum":
			acc += v
		case n == 0, op == "max" && v > acc, op == "min" && v < acc:
			acc, best = v, key
		}
		n++
	}
	if op == "sum" {
		L.Push(lua.LNumber(acc))
		return 1
	}
	if n == 0 {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LNumber(acc))
	L.Push(lua.LString(best))
	return 2
}
