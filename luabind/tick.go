package luabind

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
)

var _ autoscale.Policy = (*Runtime)(nil)

// Decide runs the script's on_tick with a view of in and returns the actions it made,
// each already validated. It implements [autoscale.Policy]. The tick hook has a VM of
// its own and calls are serialized; the state table passed to on_tick persists between
// ticks and across reloads. When the hook fails, Decide returns no actions and a nil
// error (fail-open, the default) or the error (fail-closed); the failure is counted
// and logged either way. Without an on_tick, Decide returns no actions.
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
	acts, err := v.tick(in, r.state, r.cfg.limits.budget(hTick))
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
	return nil, nil
}

// tick calls on_tick(m, state) and converts its return value.
func (v *vm) tick(in *autoscale.Input, state *lua.LTable, budget time.Duration) ([]autoscale.Action, error) {
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
	// passes keep, for the current tick (gen counts ticks), the snapshots the
	// aggregates read of a scope over a span, so that m.sum, m.max and m.min of one
	// scope read its windows once per tick. Their buffers are reused from tick to tick.
	gen      uint64
	passes   [maxPasses]scopePass
	nextPass int
	scanned  metrics.Snapshot // a snapshot being aggregated without a pass to keep it
}

// scopePass is the snapshots of the windows of scope over span, read on tick gen.
type scopePass struct {
	gen   uint64
	scope metrics.Scope
	span  time.Duration
	keys  []string
	snaps []metrics.Snapshot
}

type keyList struct {
	keys []string
	vals []lua.LValue
}

const (
	snapBlock   = 64
	maxKeyLists = 16   // scopes whose key lists m.keys keeps
	maxPasses   = 4    // scope passes the aggregates keep within a tick
	passKeys    = 4096 // a scope with more keys is read again by every aggregate
)

var tickFields = [...]string{"now", "tick", "route", "tenant", "backend", "model", "target", "scope", "keys", "sum", "max", "min"}

// snapField is a snapshot field: its index in snapshotFields.
type snapField uint8

const (
	fieldOK snapField = iota
	fieldSpan
	fieldCount
	fieldErrors
	fieldCanceled
	fieldRejected
	fieldRPS
	fieldErrorRate
	fieldMean
	fieldP50
	fieldP90
	fieldP99
	fieldMax
	fieldBytes
	fieldValue
	fieldInFlight
	fieldMaxInFlight
	fieldConcurrency
)

var snapshotFields = [...]string{"ok", "span", "count", "errors", "canceled", "rejected", "rps", "error_rate", "mean", "p50", "p90", "p99", "max", "bytes", "value", "in_flight", "max_in_flight", "concurrency"}

// aggregates are the m functions that reduce a field over a scope's windows.
var aggregates = [...]string{"sum", "max", "min"}

var targetFields = [...]string{"name", "replicas", "desired", "min", "max"}

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
		return tv.snapshot(L, metrics.Scope(L.CheckString(1)), 2)
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
	tv.data.RawSetString("keys", L.NewFunction(func(L *lua.LState) int {
		in := tv.input(L)
		scope := metrics.Scope(L.CheckString(1))
		var keys []string
		if scope == metrics.ScopeTarget {
			for _, t := range in.Targets {
				keys = append(keys, t.Name)
			}
		} else if in.Metrics != nil {
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

func (tv *tickView) input(L *lua.LState) *autoscale.Input {
	if tv.in == nil {
		L.RaiseError("m is only valid during on_tick")
	}
	return tv.in
}

func (tv *tickView) set(in *autoscale.Input) {
	tv.in = in
	tv.gen++
	tv.data.RawSetString("now", lua.LNumber(unixSeconds(in.Now)))
	tv.data.RawSetString("tick", lua.LNumber(in.Tick.Seconds()))
}

func (tv *tickView) clear() { tv.in = nil }

// snapshot pushes the snapshot table of (scope, the string argument at arg) over the
// optional span (seconds) at arg+1.
func (tv *tickView) snapshot(L *lua.LState, scope metrics.Scope, arg int) int {
	in := tv.input(L)
	key := L.CheckString(arg)
	span := spanArg(L, arg+1)
	var snap metrics.Snapshot
	ok := false
	if in.Metrics != nil {
		snap, ok = in.Metrics.Snapshot(scope, key, span)
	}
	L.Push(tv.newSnapshot(snap, ok))
	return 1
}

// spanArg returns the optional span in seconds at argument n; zero when absent.
func spanArg(L *lua.LState, n int) time.Duration {
	if L.GetTop() < n || L.Get(n) == lua.LNil {
		return 0
	}
	d, ok := seconds(float64(L.CheckNumber(n)))
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
	scope := metrics.Scope(L.CheckString(1))
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
	if in.Metrics != nil {
		tv.scan(in.Metrics, scope, span, func(key string, s *metrics.Snapshot) {
			v := f.number(s)
			switch {
			case op == "sum":
				acc += v
			case n == 0, op == "max" && v > acc, op == "min" && v < acc:
				acc, best = v, key
			}
			n++
		})
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

// scan calls f with the key and snapshot of every window of scope over span, in key
// order: from this tick's pass over them when an aggregate made one, else reading them
// (in one pass when r is an autoscale.ScopeReader) and keeping them as the tick's pass
// unless there are more than passKeys.
func (tv *tickView) scan(r autoscale.Reader, scope metrics.Scope, span time.Duration, f func(string, *metrics.Snapshot)) {
	for i := range tv.passes {
		if p := &tv.passes[i]; p.gen == tv.gen && p.scope == scope && p.span == span {
			for j := range p.snaps {
				f(p.keys[j], &p.snaps[j])
			}
			return
		}
	}
	p := &tv.passes[tv.nextPass]
	p.gen, p.keys, p.snaps = 0, p.keys[:0], p.snaps[:0]
	keep := true
	for k, s := range autoscale.ScopeSnapshots(r, scope, span) {
		sp := &tv.scanned // not &s, which would escape to the heap, a snapshot at a time
		if keep = keep && len(p.snaps) < passKeys; keep {
			p.keys, p.snaps = append(p.keys, k), append(p.snaps, s)
			sp = &p.snaps[len(p.snaps)-1]
		} else {
			*sp = s
		}
		f(k, sp)
	}
	if keep {
		p.gen, p.scope, p.span = tv.gen, scope, span
		tv.nextPass = (tv.nextPass + 1) % maxPasses
	}
}

// snapView is the Go side of a snapshot userdata.
type snapView struct {
	s  metrics.Snapshot
	ok bool
}

// newSnapshot returns a read-only snapshot userdata. Userdata whose fields are read on
// demand, taken from blocks, cost two allocations per 64 snapshots; a table of the
// eighteen fields would cost about thirty per snapshot, and gopher-luar's reflection
// more time (BenchmarkSnapshotView compares the three, unpooled).
func (tv *tickView) newSnapshot(s metrics.Snapshot, ok bool) *lua.LUserData {
	if len(tv.uds) == 0 {
		tv.uds = make([]lua.LUserData, snapBlock)
		tv.views = make([]snapView, snapBlock)
	}
	ud, sv := &tv.uds[0], &tv.views[0]
	tv.uds, tv.views = tv.uds[1:], tv.views[1:]
	*sv = snapView{s, ok}
	ud.Value = sv
	ud.Env = tv.vm.L.Env
	ud.Metatable = tv.vm.snapMT
	return ud
}

// luaSnapshotIndex reads a field of a snapshot userdata; latencies in milliseconds.
func luaSnapshotIndex(L *lua.LState) int {
	sv, _ := L.CheckUserData(1).Value.(*snapView)
	if sv == nil {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(snapshotField(&sv.s, sv.ok, L.CheckString(2)))
	return 1
}

func snapshotField(s *metrics.Snapshot, ok bool, name string) lua.LValue {
	f, known := lookupField(name)
	switch {
	case !known:
		return lua.LNil
	case f == fieldOK:
		return lua.LBool(ok)
	}
	return lua.LNumber(f.number(s))
}

func lookupField(name string) (snapField, bool) {
	for i, n := range snapshotFields {
		if n == name {
			return snapField(i), true
		}
	}
	return 0, false
}

// number returns field f of s as Lua reads it: seconds, milliseconds for latencies;
// 0 for ok.
func (f snapField) number(s *metrics.Snapshot) float64 {
	switch f {
	case fieldSpan:
		return s.Span.Seconds()
	case fieldCount:
		return float64(s.Count)
	case fieldErrors:
		return float64(s.Errors)
	case fieldCanceled:
		return float64(s.Canceled)
	case fieldRejected:
		return float64(s.Rejected)
	case fieldRPS:
		return s.Rate
	case fieldErrorRate:
		return s.ErrorRate
	case fieldMean:
		return float64(s.Mean) / 1e6
	case fieldP50:
		return float64(s.P50) / 1e6
	case fieldP90:
		return float64(s.P90) / 1e6
	case fieldP99:
		return float64(s.P99) / 1e6
	case fieldMax:
		return float64(s.Max) / 1e6
	case fieldBytes:
		return float64(s.Bytes)
	case fieldValue:
		return s.Value
	case fieldInFlight:
		return float64(s.InFlight)
	case fieldMaxInFlight:
		return float64(s.MaxInFlight)
	case fieldConcurrency:
		return s.Concurrency
	}
	return 0
}

func targetTable(L *lua.LState, t autoscale.TargetState) *lua.LTable {
	tb := L.CreateTable(0, len(targetFields))
	tb.RawSetString("name", lua.LString(t.Name))
	tb.RawSetString("replicas", lua.LNumber(t.Replicas))
	tb.RawSetString("desired", lua.LNumber(t.Desired))
	tb.RawSetString("min", lua.LNumber(t.Min))
	tb.RawSetString("max", lua.LNumber(t.Max))
	return tb
}

// The autoscale module: action constructors, as globals and as require("autoscale").

var actionConstructors = [...]string{"scale", "set_weight", "eject", "shed", "throttle", "route"}

func (v *vm) installModule() {
	L := v.L
	mod := L.NewTable()
	v.actMT = L.NewTable()
	v.actMT.RawSetString("__index", L.NewFunction(luaActionIndex))
	v.actMT.RawSetString("__newindex", L.NewFunction(luaReadOnly))
	v.actMT.RawSetString("__metatable", lua.LString(protectedMeta))
	v.actMT.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		a := L.CheckUserData(1).Value
		L.Push(lua.LString(fmt.Sprintf("%s%+v", a.(autoscale.Action).Kind(), a)))
		return 1
	}))
	ctors := map[string]func(*lua.LState) (autoscale.Action, error){
		"scale":      ctorScale,
		"set_weight": ctorSetWeight,
		"eject":      ctorEject,
		"shed":       ctorShed,
		"throttle":   ctorThrottle,
		"route":      ctorRoute,
	}
	for _, name := range actionConstructors {
		ctor := ctors[name]
		f := L.NewFunction(func(L *lua.LState) int {
			a, err := ctor(L)
			if err == nil {
				err = a.Validate()
			}
			if err != nil {
				L.RaiseError("%s: %v", name, err)
			}
			ud := L.NewUserData()
			ud.Value = a
			ud.Metatable = v.actMT
			L.Push(ud)
			return 1
		})
		mod.RawSetString(name, f)
		v.data.RawSetString(name, f)
	}
	mod.RawSetString("now", L.NewFunction(v.luaNow))
	v.mod = v.protect(mod)
}

func optString(L *lua.LState, n int) string {
	if L.Get(n) == lua.LNil {
		return ""
	}
	return L.CheckString(n)
}

func checkInt(L *lua.LState, n int, what string) int {
	i, ok := intOf(L.Get(n))
	if !ok {
		L.ArgError(n, what+" must be an integer (use math.floor or math.ceil)")
	}
	return i
}

func checkSeconds(L *lua.LState, n int, what string) time.Duration {
	d, ok := seconds(float64(L.CheckNumber(n)))
	if !ok {
		L.ArgError(n, what+" must be a finite number of seconds")
	}
	return d
}

func ctorScale(L *lua.LState) (autoscale.Action, error) {
	a := autoscale.Scale{Target: L.CheckString(1), Replicas: checkInt(L, 2, "replicas"), Reason: optString(L, 3)}
	if L.GetTop() >= 4 && L.Get(4) != lua.LNil {
		opts := L.CheckTable(4)
		var bad error
		opts.ForEach(func(k, val lua.LValue) {
			switch {
			case k == lua.LString("panic"):
				b, ok := val.(lua.LBool)
				if !ok {
					bad = fmt.Errorf("option panic must be a boolean")
				}
				a.Panic = bool(b)
			case bad == nil:
				bad = fmt.Errorf("unknown option %v", k)
			}
		})
		if bad != nil {
			return nil, bad
		}
	}
	return a, nil
}

func ctorSetWeight(L *lua.LState) (autoscale.Action, error) {
	return autoscale.SetWeight{Pool: L.CheckString(1), Backend: L.CheckString(2), Weight: checkInt(L, 3, "weight")}, nil
}

func ctorEject(L *lua.LState) (autoscale.Action, error) {
	return autoscale.Eject{Pool: L.CheckString(1), Backend: L.CheckString(2), Duration: checkSeconds(L, 3, "seconds"), Reason: optString(L, 4)}, nil
}

func ctorShed(L *lua.LState) (autoscale.Action, error) {
	a := autoscale.Shed{Route: L.CheckString(1), Fraction: float64(L.CheckNumber(2))}
	if L.GetTop() >= 3 && L.Get(3) != lua.LNil {
		a.RetryAfter = checkSeconds(L, 3, "retry_after")
	}
	return a, nil
}

func ctorThrottle(L *lua.LState) (autoscale.Action, error) {
	a := autoscale.Throttle{Tenant: L.CheckString(1), RPS: float64(L.CheckNumber(2))}
	if L.GetTop() >= 3 && L.Get(3) != lua.LNil {
		a.Burst = checkInt(L, 3, "burst")
	} else if a.RPS >= 0 && a.RPS < math.MaxInt32 {
		a.Burst = max(1, int(math.Ceil(a.RPS)))
	}
	return a, nil
}

func ctorRoute(L *lua.LState) (autoscale.Action, error) {
	return autoscale.Route{From: L.CheckString(1), To: L.CheckString(2), Fraction: float64(L.CheckNumber(3))}, nil
}

// luaActionIndex reads a field of an action userdata.
func luaActionIndex(L *lua.LState) int {
	a, _ := L.CheckUserData(1).Value.(autoscale.Action)
	L.Push(actionField(a, L.CheckString(2)))
	return 1
}

// actionField returns one field of an action as Lua sees it (durations in seconds).
func actionField(a autoscale.Action, f string) lua.LValue {
	if a == nil {
		return lua.LNil
	}
	if f == "kind" {
		return lua.LString(a.Kind())
	}
	switch a := a.(type) {
	case autoscale.Scale:
		switch f {
		case "target":
			return lua.LString(a.Target)
		case "replicas":
			return lua.LNumber(a.Replicas)
		case "reason":
			return lua.LString(a.Reason)
		case "panic":
			return lua.LBool(a.Panic)
		}
	case autoscale.SetWeight:
		switch f {
		case "pool":
			return lua.LString(a.Pool)
		case "backend":
			return lua.LString(a.Backend)
		case "weight":
			return lua.LNumber(a.Weight)
		}
	case autoscale.Eject:
		switch f {
		case "pool":
			return lua.LString(a.Pool)
		case "backend":
			return lua.LString(a.Backend)
		case "seconds":
			return lua.LNumber(a.Duration.Seconds())
		case "reason":
			return lua.LString(a.Reason)
		}
	case autoscale.Shed:
		switch f {
		case "route":
			return lua.LString(a.Route)
		case "fraction":
			return lua.LNumber(a.Fraction)
		case "retry_after":
			return lua.LNumber(a.RetryAfter.Seconds())
		}
	case autoscale.Throttle:
		switch f {
		case "tenant":
			return lua.LString(a.Tenant)
		case "rps":
			return lua.LNumber(a.RPS)
		case "burst":
			return lua.LNumber(a.Burst)
		}
	case autoscale.Route:
		switch f {
		case "from":
			return lua.LString(a.From)
		case "to":
			return lua.LString(a.To)
		case "fraction":
			return lua.LNumber(a.Fraction)
		}
	}
	return lua.LNil
}
