package luabind

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
)

// SuiteStartUnix is the time, in Unix seconds, a [Suite]'s manual clock reads when
// each test starts: 2023-11-14T22:13:20Z.
const SuiteStartUnix = 1_700_000_000

// Suite runs the tests of a script: the global functions whose names start with "Test"
// in a test file loaded after the script, each in a fresh VM, with the test helpers
// (fixture, request, backends, response, decide, decide_refused, assert_eq, assert_near,
// assert_action, assert_no_action, clock) as globals. Package luatest runs a suite as
// Go subtests. A Suite is safe for concurrent use; each test gets its own VM.
type Suite struct {
	rt    *Runtime
	clock *metrics.ManualClock
	name  string
	proto *lua.FunctionProto
	prog  *program
	tests []string
}

// NewSuite loads script (running its self_test()), then the test file, and lists the
// tests. The options are those of [New]; the clock is always the suite's manual clock.
func NewSuite(script, tests Source, opts ...Option) (*Suite, error) {
	clock := metrics.NewManualClock(time.Unix(SuiteStartUnix, 0))
	rt, err := New(script, append(slices.Clip(opts), WithClock(clock))...)
	if err != nil {
		return nil, err
	}
	c, err := parseChunk(tests)
	if err != nil {
		rt.Close()
		return nil, err
	}
	s := &Suite{rt: rt, clock: clock, name: c.name, proto: c.proto}
	base := rt.prog.Load()
	s.prog = &program{name: base.name, proto: base.proto, has: base.has, gen: base.gen, suite: s}
	v, err := rt.newVM(s.prog, rt.cfg.limits.budget(hLoad))
	if err != nil {
		rt.Close()
		return nil, err
	}
	defer v.close()
	v.data.ForEach(func(k, val lua.LValue) {
		if name, ok := k.(lua.LString); ok && strings.HasPrefix(string(name), "Test") {
			if _, ok := val.(*lua.LFunction); ok {
				s.tests = append(s.tests, string(name))
			}
		}
	})
	slices.Sort(s.tests)
	return s, nil
}

// Tests returns the names of the tests, sorted.
func (s *Suite) Tests() []string { return slices.Clone(s.tests) }

// Clock returns the suite's manual clock.
func (s *Suite) Clock() *metrics.ManualClock { return s.clock }

// Runtime returns the runtime the suite loaded the script into.
func (s *Suite) Runtime() *Runtime { return s.rt }

// Run runs one test in a fresh VM with the clock reset to [SuiteStartUnix]. It returns the
// test's failure (a [*ScriptError] whose Line is the failing line of the test file) or
// nil.
func (s *Suite) Run(name string) error {
	if !slices.Contains(s.tests, name) {
		return fmt.Errorf("luabind: no test %q", name)
	}
	s.clock.Set(time.Unix(SuiteStartUnix, 0))
	v, err := s.rt.newVM(s.prog, s.rt.cfg.limits.budget(hLoad))
	if err != nil {
		return err
	}
	defer v.close()
	v.hook = hSelfTest
	v.L.Push(v.data.RawGetString(name))
	if err := v.pcall(0, 0, s.rt.cfg.limits.budget(hLoad)); err != nil {
		se := scriptError(HookSelfTest, s.name, err, sentinelOf(err, ErrScript))
		se.Hook = Hook(name)
		return se
	}
	return nil
}

// Close releases the suite's runtime.
func (s *Suite) Close() error { return s.rt.Close() }

// suiteHelpers are the globals a test file sees on top of the sandbox's.
var suiteHelpers = [...]string{"fixture", "request", "backends", "response", "decide", "decide_refused", "assert_eq", "assert_near", "assert_action", "assert_no_action", "clock"}

// install adds the test helpers to a VM.
func (s *Suite) install(v *vm) {
	L, d := v.L, v.data
	fixtures := map[*lua.LTable]*autoscale.Input{}
	// targets are the targets of the fixtures the test made; nil before the first.
	var targets map[string]bool
	d.RawSetString("fixture", L.NewFunction(func(L *lua.LState) int {
		in, declared, err := fixtureInput(L.OptTable(1, L.NewTable()), s.clock.Now())
		if err != nil {
			L.RaiseError("fixture: %v", err)
		}
		if targets == nil {
			targets = map[string]bool{}
		}
		for _, t := range in.Targets {
			targets[t.Name] = true
		}
		tv := &tickView{scopes: declared}
		tv.init(v)
		tv.set(in)
		fixtures[tv.proxy] = in
		L.Push(tv.proxy)
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
		if v.fns[hTick] == nil {
			L.RaiseError("%s: the script has no on_tick", fn)
		}
		all, err := v.tick(in, state, 0, v.rt.cfg.limits.MaxActions)
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
		L.Push(v.actionTable(acts))
		return 1
	}))
	d.RawSetString("decide_refused", L.NewFunction(func(L *lua.LState) int {
		acts, refused := decide(L, "decide_refused")
		list := L.CreateTable(len(refused), 0)
		for _, r := range refused {
			e := L.CreateTable(0, 2)
			e.RawSetString("action", v.actionUD(r.a))
			e.RawSetString("reason", lua.LString(r.why))
			list.Append(e)
		}
		L.Push(v.actionTable(acts))
		L.Push(list)
		return 2
	}))
	// checkRefused fails an assertion given an action the loop would refuse: a Scale
	// action for a target none of the test's fixtures has.
	checkRefused := func(L *lua.LState, fn string, val lua.LValue) {
		if targets == nil {
			return
		}
		acts, err := actionsOf(val)
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
		rv := &reqView{}
		rv.init(v)
		rv.set(v, req)
		L.Push(rv.proxy)
		return 1
	}))
	d.RawSetString("backends", L.NewFunction(func(L *lua.LState) int {
		bs, err := fixtureBackends(L.CheckTable(1))
		if err != nil {
			L.RaiseError("backends: %v", err)
		}
		pv := &pickViews{}
		pv.init(v)
		L.Push(pv.set(v, bs))
		return 1
	}))
	d.RawSetString("response", L.NewFunction(func(L *lua.LState) int {
		res, err := fixtureResponse(L.OptTable(1, L.NewTable()))
		if err != nil {
			L.RaiseError("response: %v", err)
		}
		rv := &resView{}
		rv.init(v)
		rv.set(v, res)
		L.Push(rv.proxy)
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
		acts := actionList(L, 1)
		checkRefused(L, "assert_action", L.Get(1))
		kind := L.CheckString(2)
		fields := L.OptTable(3, L.NewTable())
		for _, a := range acts {
			ok, err := matches(a, kind, fields)
			if err != nil {
				L.RaiseError("assert_action: %v%s", err, msgSuffix(L, 4))
			}
			if ok {
				L.Push(v.actionUD(a))
				return 1
			}
		}
		L.RaiseError("assert_action: no %s action matching %s among %s%s", kind, show(fields), showActions(acts), msgSuffix(L, 4))
		return 0
	}))
	d.RawSetString("assert_no_action", L.NewFunction(func(L *lua.LState) int {
		acts := actionList(L, 1)
		checkRefused(L, "assert_no_action", L.Get(1))
		kind := L.CheckString(2)
		fields := L.OptTable(3, L.NewTable())
		for _, a := range acts {
			ok, err := matches(a, kind, fields)
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
	clock.RawSetString("now", L.NewFunction(v.luaNow))
	clock.RawSetString("set", L.NewFunction(func(L *lua.LState) int {
		t, ok := instant(float64(L.CheckNumber(1)))
		if !ok {
			L.ArgError(1, "not a time")
		}
		s.clock.Set(t)
		return 0
	}))
	clock.RawSetString("advance", L.NewFunction(func(L *lua.LState) int {
		d, ok := seconds(float64(L.CheckNumber(1)))
		if !ok {
			L.ArgError(1, "not a duration")
		}
		L.Push(lua.LNumber(unixSeconds(s.clock.Advance(d))))
		return 1
	}))
	d.RawSetString("clock", v.protect(clock))
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

// actionUD returns a as a Lua action userdata.
func (v *vm) actionUD(a autoscale.Action) *lua.LUserData {
	ud := v.L.NewUserData()
	ud.Value = a
	ud.Metatable = v.actMT
	return ud
}

// actionTable returns acts as a Lua list of action userdata.
func (v *vm) actionTable(acts []autoscale.Action) *lua.LTable {
	list := v.L.CreateTable(len(acts), 0)
	for _, a := range acts {
		list.Append(v.actionUD(a))
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
func actionList(L *lua.LState, n int) []autoscale.Action {
	acts, err := actionsOf(L.Get(n))
	if err != nil {
		L.ArgError(n, err.Error())
	}
	return acts
}

// matches reports whether a is of kind and has every field in fields.
func matches(a autoscale.Action, kind string, fields *lua.LTable) (bool, error) {
	if a.Kind() != kind {
		return false, nil
	}
	ok := true
	var bad error
	fields.ForEach(func(k, want lua.LValue) {
		got, known := actionFieldOf(a, k.String())
		if !known {
			if bad == nil {
				bad = fmt.Errorf("%s", unknownActionField(a, k.String()))
			}
			ok = false
			return
		}
		if !deepEqual(got, want, 0) {
			gn, ok1 := got.(lua.LNumber)
			wn, ok2 := want.(lua.LNumber)
			if !ok1 || !ok2 || math.Abs(float64(gn-wn)) > 1e-9*max(1, math.Abs(float64(wn))) {
				ok = false
			}
		}
	})
	return ok, bad
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

// deepEqual compares Lua values; tables by content, actions by value.
func deepEqual(a, b lua.LValue, depth int) bool {
	if depth > 32 {
		return false
	}
	switch a := a.(type) {
	case *lua.LTable:
		bt, ok := b.(*lua.LTable)
		if !ok {
			return false
		}
		if a == bt {
			return true
		}
		eq := true
		n := 0
		a.ForEach(func(k, v lua.LValue) {
			n++
			if eq && !deepEqual(v, bt.RawGet(k), depth+1) {
				eq = false
			}
		})
		m := 0
		bt.ForEach(func(lua.LValue, lua.LValue) { m++ })
		return eq && n == m
	case *lua.LUserData:
		bu, ok := b.(*lua.LUserData)
		if !ok {
			return false
		}
		aa, ok1 := a.Value.(autoscale.Action)
		ba, ok2 := bu.Value.(autoscale.Action)
		if ok1 && ok2 {
			return aa == ba
		}
		return a == bu
	}
	return a == b
}

func show(v lua.LValue) string {
	var b strings.Builder
	showTo(&b, v, 0)
	return b.String()
}

func showTo(b *strings.Builder, v lua.LValue, depth int) {
	switch v := v.(type) {
	case lua.LString:
		fmt.Fprintf(b, "%q", string(v))
	case *lua.LTable:
		if depth > 3 {
			b.WriteString("{...}")
			return
		}
		var keys []string
		vals := map[string]lua.LValue{}
		v.ForEach(func(k, val lua.LValue) {
			ks := k.String()
			if _, ok := k.(lua.LString); !ok {
				ks = "[" + ks + "]"
			}
			keys = append(keys, ks)
			vals[ks] = val
		})
		slices.Sort(keys)
		b.WriteString("{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k)
			b.WriteString("=")
			showTo(b, vals[k], depth+1)
		}
		b.WriteString("}")
	case *lua.LUserData:
		if a, ok := v.Value.(autoscale.Action); ok {
			fmt.Fprintf(b, "%s%+v", a.Kind(), a)
			return
		}
		b.WriteString(v.String())
	default:
		b.WriteString(v.String())
	}
}

// Fixtures: Lua tables to Go values.

func fields(t *lua.LTable, allowed ...string) (map[string]lua.LValue, error) {
	out := map[string]lua.LValue{}
	var bad error
	t.ForEach(func(k, v lua.LValue) {
		ks, ok := k.(lua.LString)
		if !ok || !slices.Contains(allowed, string(ks)) {
			if bad == nil {
				bad = fmt.Errorf("unknown field %v (want one of %s)", k, strings.Join(allowed, ", "))
			}
			return
		}
		out[string(ks)] = v
	})
	return out, bad
}

func num(f map[string]lua.LValue, k string, def float64) (float64, error) {
	v, ok := f[k]
	if !ok {
		return def, nil
	}
	n, ok := v.(lua.LNumber)
	if !ok {
		return 0, fmt.Errorf("%s: %v is not a number", k, v)
	}
	return float64(n), nil
}

func str(f map[string]lua.LValue, k string) (string, error) {
	v, ok := f[k]
	if !ok {
		return "", nil
	}
	s, ok := v.(lua.LString)
	if !ok {
		return "", fmt.Errorf("%s: %v is not a string", k, v)
	}
	return string(s), nil
}

func msDur(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// fixtureInput returns the input a fixture table describes, and the scopes it declares.
func fixtureInput(t *lua.LTable, now time.Time) (*autoscale.Input, []metrics.Scope, error) {
	plural := map[string]string{"routes": "route", "tenants": "tenant", "backends": "backend", "models": "model"}
	f, err := fields(t, "now", "tick", "targets", "scopes", "routes", "tenants", "backends", "models")
	if err != nil {
		return nil, nil, err
	}
	in := &autoscale.Input{Now: now, Tick: time.Second}
	if v, ok := f["now"]; ok {
		n, ok := v.(lua.LNumber)
		t, ok2 := instant(float64(n))
		if !ok || !ok2 {
			return nil, nil, fmt.Errorf("now: %v is not a time in seconds", v)
		}
		in.Now = t
	}
	tick, err := num(f, "tick", 1)
	if err != nil {
		return nil, nil, err
	}
	in.Tick, _ = seconds(tick)
	rd := &fixtureReader{snaps: map[metrics.Scope]map[string]fixtureEntry{}}
	addScope := func(scope string, v lua.LValue) error {
		st, ok := v.(*lua.LTable)
		if !ok {
			return fmt.Errorf("%s: not a table", scope)
		}
		var bad error
		st.ForEach(func(k, sv lua.LValue) {
			if bad != nil {
				return
			}
			tb, ok := sv.(*lua.LTable)
			if !ok {
				bad = fmt.Errorf("%s[%v]: not a table", scope, k)
				return
			}
			e, err := fixtureEntryOf(tb)
			if err != nil {
				bad = fmt.Errorf("%s[%v]: %w", scope, k, err)
				return
			}
			if rd.snaps[metrics.Scope(scope)] == nil {
				rd.snaps[metrics.Scope(scope)] = map[string]fixtureEntry{}
			}
			rd.snaps[metrics.Scope(scope)][k.String()] = e
		})
		return bad
	}
	for _, key := range []string{"routes", "tenants", "backends", "models"} {
		if v, ok := f[key]; ok {
			if err := addScope(plural[key], v); err != nil {
				return nil, nil, err
			}
		}
	}
	if v, ok := f["scopes"]; ok {
		st, ok := v.(*lua.LTable)
		if !ok {
			return nil, nil, fmt.Errorf("scopes: not a table")
		}
		var bad error
		st.ForEach(func(k, sv lua.LValue) {
			if bad == nil {
				rd.declared = append(rd.declared, metrics.Scope(k.String()))
				bad = addScope(k.String(), sv)
			}
		})
		if bad != nil {
			return nil, nil, bad
		}
	}
	if v, ok := f["targets"]; ok {
		tt, ok := v.(*lua.LTable)
		if !ok {
			return nil, nil, fmt.Errorf("targets: not a table")
		}
		var bad error
		tt.ForEach(func(k, tv lua.LValue) {
			if bad != nil {
				return
			}
			tb, ok := tv.(*lua.LTable)
			if !ok {
				bad = fmt.Errorf("targets[%v]: not a table", k)
				return
			}
			tf, err := fields(tb, "replicas", "desired", "min", "max")
			if err != nil {
				bad = fmt.Errorf("targets[%v]: %w", k, err)
				return
			}
			ts := autoscale.TargetState{Name: k.String()}
			var vals [4]float64
			for i, name := range []string{"replicas", "desired", "min", "max"} {
				def := []float64{1, -2, 1, 100}[i]
				if vals[i], err = num(tf, name, def); err != nil {
					bad = fmt.Errorf("targets[%v]: %w", k, err)
					return
				}
			}
			ts.Replicas, ts.Desired, ts.Min, ts.Max = int(vals[0]), int(vals[1]), int(vals[2]), int(vals[3])
			if ts.Desired == -2 {
				ts.Desired = ts.Replicas
			}
			in.Targets = append(in.Targets, ts)
		})
		if bad != nil {
			return nil, nil, bad
		}
		slices.SortFunc(in.Targets, func(a, b autoscale.TargetState) int { return strings.Compare(a.Name, b.Name) })
	}
	in.Metrics = autoscale.NewSnapshot(in.Now, rd)
	return in, rd.declared, nil
}

// fixtureSnapshotFields are the fields a fixture's window may set: the snapshot's
// numbers (not ok, which is the fixture's having the window), then by_span.
var fixtureSnapshotFields = func() []string {
	var names []string
	for _, f := range snapshotFields[fieldOK+1:] {
		names = append(names, f.name)
	}
	return append(names, "by_span")
}()

func fixtureEntryOf(t *lua.LTable) (fixtureEntry, error) {
	var e fixtureEntry
	f, err := fields(t, fixtureSnapshotFields...)
	if err != nil {
		return e, err
	}
	if e.base, err = fixtureSnapshot(f); err != nil {
		return e, err
	}
	if v, ok := f["by_span"]; ok {
		bt, ok := v.(*lua.LTable)
		if !ok {
			return e, fmt.Errorf("by_span: not a table")
		}
		e.bySpan = map[time.Duration]metrics.Snapshot{}
		var bad error
		bt.ForEach(func(k, sv lua.LValue) {
			kn, ok1 := k.(lua.LNumber)
			st, ok2 := sv.(*lua.LTable)
			d, ok3 := seconds(float64(kn))
			if bad != nil {
				return
			}
			if !ok1 || !ok2 || !ok3 || d <= 0 {
				bad = fmt.Errorf("by_span: want {[seconds] = {...}}")
				return
			}
			sf, err := fields(st, fixtureSnapshotFields[:len(fixtureSnapshotFields)-1]...)
			if err == nil {
				e.bySpan[d], err = fixtureSnapshot(sf)
			}
			bad = err
		})
		if bad != nil {
			return e, bad
		}
	}
	return e, nil
}

func fixtureSnapshot(f map[string]lua.LValue) (metrics.Snapshot, error) {
	s := metrics.Snapshot{Span: time.Minute}
	for _, sf := range snapshotFields[fieldOK+1:] {
		if _, ok := f[sf.name]; !ok {
			continue
		}
		v, err := num(f, sf.name, 0)
		if err != nil {
			return s, err
		}
		sf.set(&s, v)
	}
	return s, nil
}

type fixtureEntry struct {
	base   metrics.Snapshot
	bySpan map[time.Duration]metrics.Snapshot
}

// fixtureReader is an [autoscale.Reader] over fixed snapshots: the span picks a
// by_span entry when there is one, else the base snapshot.
type fixtureReader struct {
	snaps map[metrics.Scope]map[string]fixtureEntry
	// declared are the scopes of the fixture's scopes table, windows or not.
	declared []metrics.Scope
}

func (f *fixtureReader) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	e, ok := f.snaps[scope][key]
	if !ok {
		return metrics.Snapshot{}, false
	}
	if s, ok := e.bySpan[span]; ok && span > 0 {
		return s, true
	}
	return e.base, true
}

func (f *fixtureReader) Keys(scope metrics.Scope) []string {
	var keys []string
	for k := range f.snaps[scope] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func fixtureRequest(t *lua.LTable) (*Request, error) {
	f, err := fields(t, "method", "path", "host", "headers", "query", "tenant", "route", "model", "priority", "content_length", "tokens")
	if err != nil {
		return nil, err
	}
	r := &Request{Method: "GET", Path: "/", ContentLength: -1}
	for _, p := range []struct {
		k string
		p *string
	}{{"method", &r.Method}, {"path", &r.Path}, {"host", &r.Host}, {"query", &r.RawQuery}, {"tenant", &r.Tenant}, {"route", &r.Route}, {"model", &r.Model}} {
		if _, ok := f[p.k]; ok {
			if *p.p, err = str(f, p.k); err != nil {
				return nil, err
			}
		}
	}
	prio, err := num(f, "priority", 0)
	if err != nil {
		return nil, err
	}
	cl, err := num(f, "content_length", -1)
	if err != nil {
		return nil, err
	}
	tok, err := num(f, "tokens", 0)
	if err != nil {
		return nil, err
	}
	r.Priority, r.ContentLength, r.Tokens = int(prio), int64(cl), int64(tok)
	if v, ok := f["headers"]; ok {
		ht, ok := v.(*lua.LTable)
		if !ok {
			return nil, fmt.Errorf("headers: not a table")
		}
		r.Header = http.Header{}
		ht.ForEach(func(k, hv lua.LValue) { r.Header.Add(k.String(), hv.String()) })
	}
	return r, nil
}

func fixtureBackends(t *lua.LTable) ([]BackendView, error) {
	var out []BackendView
	for i := 1; i <= t.Len(); i++ {
		bt, ok := t.RawGetInt(i).(*lua.LTable)
		if !ok {
			return nil, fmt.Errorf("[%d]: not a table", i)
		}
		f, err := fields(bt, backendFields[:]...)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		b := BackendView{Healthy: true, Weight: 1}
		if b.ID, err = str(f, "id"); err != nil {
			return nil, err
		}
		if b.ID == "" {
			b.ID = fmt.Sprint(i)
		}
		var vals [5]float64
		for j, k := range []string{"in_flight", "ewma", "p99", "error_rate", "weight"} {
			if vals[j], err = num(f, k, []float64{0, 0, 0, 0, 1}[j]); err != nil {
				return nil, err
			}
		}
		b.InFlight, b.EWMA, b.P99, b.ErrorRate, b.Weight = int64(vals[0]), msDur(vals[1]), msDur(vals[2]), vals[3], int(vals[4])
		if v, ok := f["healthy"]; ok {
			b.Healthy = lua.LVAsBool(v)
		}
		for _, k := range []string{"queue", "kv_cache", "load_age"} {
			if _, ok := f[k]; ok {
				b.HasLoad = true
			}
		}
		if b.HasLoad {
			var load [3]float64
			for j, k := range []string{"queue", "kv_cache", "load_age"} {
				if load[j], err = num(f, k, 0); err != nil {
					return nil, err
				}
			}
			b.Queue, b.KVCache, b.LoadAge = int64(load[0]), load[1], time.Duration(load[2]*float64(time.Second))
		}
		if v, ok := f["labels"]; ok {
			lt, ok := v.(*lua.LTable)
			if !ok {
				return nil, fmt.Errorf("[%d]: labels: not a table", i)
			}
			b.Labels = map[string]string{}
			lt.ForEach(func(k, lv lua.LValue) { b.Labels[k.String()] = lv.String() })
		}
		out = append(out, b)
	}
	return out, nil
}

func fixtureResponse(t *lua.LTable) (*Response, error) {
	f, err := fields(t, "status", "latency", "bytes", "backend", "values")
	if err != nil {
		return nil, err
	}
	res := &Response{}
	st, err := num(f, "status", 200)
	if err != nil {
		return nil, err
	}
	lat, err := num(f, "latency", 0)
	if err != nil {
		return nil, err
	}
	by, err := num(f, "bytes", 0)
	if err != nil {
		return nil, err
	}
	res.Status, res.Latency, res.Bytes = int(st), msDur(lat), int64(by)
	if res.Backend, err = str(f, "backend"); err != nil {
		return nil, err
	}
	if v, ok := f["values"]; ok {
		vt, ok := v.(*lua.LTable)
		if !ok {
			return nil, fmt.Errorf("values: not a table")
		}
		res.Values = map[string]any{}
		vt.ForEach(func(k, val lua.LValue) {
			switch val := val.(type) {
			case lua.LNumber:
				res.Values[k.String()] = float64(val)
			case lua.LBool:
				res.Values[k.String()] = bool(val)
			default:
				res.Values[k.String()] = val.String()
			}
		})
	}
	return res, nil
}
