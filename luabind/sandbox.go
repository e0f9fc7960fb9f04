package luabind

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/luabind/internal/luaunit"
	"github.com/autoscalelua/autoscalelua/luabind/internal/pattern"
	lua "github.com/yuin/gopher-lua"
)

// protectedMeta is the value getmetatable returns for every table and userdata the
// sandbox hands to Lua, and what makes setmetatable refuse them.
const protectedMeta = "luabind: protected"

// removedGlobals are the base functions a sandboxed VM does not have.
var removedGlobals = [...]string{
	"dofile", "loadfile", "load", "loadstring", "require", "module", "getfenv", "setfenv",
	"collectgarbage", "newproxy", "_printregs", "_GOPHER_LUA_VERSION",
}

// vm is one sandboxed Lua state and the reusable views it hands to hooks. A vm is used
// by one goroutine at a time.
type vm struct {
	L    *lua.LState
	prog *program
	rt   *Runtime

	data  *lua.LTable // the real globals, behind env
	env   *lua.LTable // the proxy every script function sees as its environment
	envMT *lua.LTable
	fns   [hTick + 1]*lua.LFunction
	hook  int // the hook running, for print and errors

	// budget is the context the VM's calls run under, which ends a call past its
	// deadline; ctxSet says the state has it (a runtime without budgets runs without
	// a context, which gopher-lua's loop then does not consult). The Go-side library
	// functions check the deadline themselves (budgetCheck), and overran records that
	// one saw it pass.
	budget  budgetCtx
	ctxSet  bool
	overran bool
	// built counts the bytes of the strings the library functions built in the
	// running call, against Limits.MaxCallBytes.
	built int

	readOnly *lua.LFunction // __newindex of every view
	seed     maphash.Seed
	pm       pattern.Matcher // the string library's matcher, checking the budget
	libMTs   []*lua.LTable   // the metatables of the library proxies, in libraries' order
	intern   [256]internEntry

	reqv  reqView
	resv  resView
	picks pickViews
	tickv tickView
	mod   *lua.LTable // the autoscale module (a protected proxy)
	actMT *lua.LTable
	// snapMT is the metatable of snapshot userdata.
	snapMT *lua.LTable
}

type internEntry struct {
	s string
	v lua.LValue
}

// str returns s as a Lua value, reusing the box of an equal string seen recently so
// that the request path does not allocate for repeated values (methods, hosts, routes,
// tenants).
func (v *vm) str(s string) lua.LValue {
	if s == "" {
		return lua.LString("")
	}
	e := &v.intern[maphash.String(v.seed, s)&255]
	if e.v != nil && e.s == s {
		return e.v
	}
	e.s, e.v = s, lua.LString(s)
	return e.v
}

// newVM opens a sandboxed state, runs the program's main chunk in it and freezes its
// globals. The caller owns the returned vm.
func (rt *Runtime) newVM(p *program, budget time.Duration) (*vm, error) {
	lim := rt.cfg.limits
	L := lua.NewState(lua.Options{
		SkipOpenLibs:    true,
		CallStackSize:   lim.CallStackSize,
		RegistrySize:    lim.RegistrySize,
		RegistryMaxSize: lim.RegistryMaxSize,
		// gopher-lua grows the value stack by 32 slots at a time by default, copying it
		// each time: unpack of a large table then costs seconds.
		RegistryGrowStep: max(lim.RegistrySize, lim.RegistryMaxSize/16),
	})
	v := &vm{L: L, prog: p, rt: rt, seed: maphash.MakeSeed(), hook: hLoad}
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.StringLibName, lua.OpenString}, {lua.TabLibName, lua.OpenTable}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	v.data = L.G.Global
	for _, name := range removedGlobals {
		v.data.RawSetString(name, lua.LNil)
	}
	v.readOnly = L.NewFunction(luaReadOnly)
	v.installBase()
	v.installModule()
	v.installConfig()
	v.reqv.init(v)
	v.resv.init(v)
	v.picks.init(v)
	v.tickv.init(v)

	// The environment: an empty table whose reads go to the globals and whose writes go
	// there too while the main chunk runs, and raise afterwards.
	v.env = L.NewTable()
	v.envMT = L.NewTable()
	v.envMT.RawSetString("__index", v.data)
	v.envMT.RawSetString("__newindex", v.data)
	v.envMT.RawSetString("__metatable", lua.LString(protectedMeta))
	v.env.Metatable = v.envMT
	v.data.RawSetString("_G", v.env)

	if budget > 0 || lim.budget(hLoad) > 0 {
		v.budget.init()
		L.SetContext(&v.budget)
		v.ctxSet = true
	}

	if p.tests != nil {
		p.tests.install(suiteVM{v})
	}
	for _, c := range p.chunks() {
		fn := L.NewFunctionFromProto(c.proto)
		fn.Env = v.env
		L.Push(fn)
		if err := v.pcall(0, 0, lim.budget(hLoad)); err != nil {
			v.close()
			return nil, scriptError(HookLoad, c.name, err, sentinelOf(err, ErrCompile))
		}
	}
	v.envMT.RawSetString("__newindex", L.NewFunction(luaGlobalWrite))
	v.sealLibraries()
	for i, h := range allHooksArray[:hTick+1] {
		if f, ok := v.data.RawGetString(string(h)).(*lua.LFunction); ok {
			v.fns[i] = f
		}
	}
	if budget == 0 && v.ctxSet {
		L.RemoveContext()
		v.ctxSet = false
	}
	return v, nil
}

// errTimeout marks a pcall that the budget's timer stopped.
type errTimeout struct{ budget time.Duration }

func (e errTimeout) Error() string { return fmt.Sprintf("time budget of %v exceeded", e.budget) }

// sentinelOf returns ErrScriptTimeout for a timeout, else def.
func sentinelOf(err error, def error) error {
	if _, ok := err.(errTimeout); ok {
		return ErrScriptTimeout
	}
	return def
}

// pcall calls the function below nargs arguments under the budget. A timeout is
// reported as errTimeout; the vm must then be closed (its context is cancelled).
func (v *vm) pcall(nargs, nret int, budget time.Duration) error {
	v.built = 0
	if budget <= 0 || !v.ctxSet {
		return v.L.PCall(nargs, nret, nil)
	}
	v.overran = false
	d := v.budget.begin(budget)
	err := v.L.PCall(nargs, nret, nil)
	if !v.budget.end(d) || v.overran {
		// The watchdog ended the call (the context is done) or a library function saw
		// the deadline pass: a timeout, whatever the call returned.
		return errTimeout{budget}
	}
	return err
}

func (v *vm) close() {
	v.budget.stop()
	v.L.Close()
}

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow reads the monotonic clock alone: one clock read, where time.Now takes two.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// budgetCtx is the context a VM's calls run under, which gopher-lua asks for its Done
// channel before every instruction, stopping the call once that channel is closed.
// Done is nil (a select passes it at once) until a watchdog timer finds the running
// call past its deadline and trips the context, for good: the VM is then discarded.
//
// The watchdog is not armed and stopped around every call, as a timer per call would
// be (two timer-heap operations under the runtime's timer lock, and a channel polled
// per instruction; BenchmarkOnRequest): a call stores its deadline, and arms the timer
// only when it is not armed or armed for later than that deadline. When the timer
// fires, the watchdog trips a call past its deadline, re-arms for a call still within
// it, and stays disarmed while the VM is idle. mu orders a call's start with the
// watchdog; a call's end is one compare-and-swap.
type budgetCtx struct {
	state atomic.Int64 // the running call's deadline on monoNow's clock; 0 idle; tripped

	mu     sync.Mutex
	armed  bool  // the timer is pending, to fire at fireAt
	fireAt int64 // on monoNow's clock
	timer  *time.Timer
}

// tripped is budgetCtx.state once the watchdog ended a call, or the VM was closed.
const tripped = -1

// closedChan is the Done of a tripped budgetCtx.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// init makes the watchdog's timer, stopped, before the context is first used.
func (c *budgetCtx) init() {
	c.timer = time.AfterFunc(time.Hour, c.watch)
	c.timer.Stop()
}

// begin starts a call with the budget and returns its deadline. On a tripped context
// it returns tripped, and the call stops at its first instruction.
func (c *budgetCtx) begin(budget time.Duration) int64 {
	now := monoNow()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() == tripped {
		return tripped
	}
	d := now + int64(budget)
	c.state.Store(d)
	if !c.armed || d < c.fireAt {
		c.timer.Reset(time.Duration(d - now))
		c.armed, c.fireAt = true, d
	}
	return d
}

// end ends the call begun with deadline d, reporting false if the watchdog tripped it.
func (c *budgetCtx) end(d int64) bool { return d != tripped && c.state.CompareAndSwap(d, 0) }

// watch is the watchdog, run by the timer.
func (c *budgetCtx) watch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	d := c.state.Load()
	if d <= 0 {
		return // idle, or tripped already
	}
	if now := monoNow(); now < d {
		c.timer.Reset(time.Duration(d - now))
		c.armed, c.fireAt = true, d
		return
	}
	// This fails when the call has just ended; a call that began since with the same
	// deadline is past it too, and is rightly tripped.
	c.state.CompareAndSwap(d, tripped)
}

// stop trips the context and stops the watchdog, for a VM being closed.
func (c *budgetCtx) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.Store(tripped)
	if c.timer != nil {
		c.timer.Stop()
	}
}

func (c *budgetCtx) Done() <-chan struct{} {
	if c.state.Load() == tripped {
		return closedChan
	}
	return nil
}

func (c *budgetCtx) Err() error {
	if c.state.Load() == tripped {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *budgetCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *budgetCtx) Value(any) any               { return nil }

// expired reports whether the running call's deadline has passed, for the library
// functions, which run while the Lua loop does not look at Done.
func (c *budgetCtx) expired() bool {
	d := c.state.Load()
	return d > 0 && monoNow() > d
}

func luaReadOnly(L *lua.LState) int {
	L.RaiseError("attempt to modify a read-only view (field %s)", L.Get(2).String())
	return 0
}

func luaGlobalWrite(L *lua.LState) int {
	L.RaiseError("assignment to global '%s' after load: globals are read-only in hooks; use a local (or state in on_tick)", L.Get(2).String())
	return 0
}

// protect makes t read-only and hides its metatable: writes raise, setmetatable and
// rawset refuse it.
func (v *vm) protect(data *lua.LTable) *lua.LTable {
	mt := v.L.NewTable()
	mt.RawSetString("__index", data)
	mt.RawSetString("__newindex", v.readOnly)
	mt.RawSetString("__metatable", lua.LString(protectedMeta))
	p := v.L.NewTable()
	p.Metatable = mt
	return p
}

// strict makes a read of a name data lacks raise, unless the name is one of fields (a
// field that may be nil, such as req.tokens): a misspelt field fails the hook instead
// of reading nil. Reads of present fields do not reach the check.
func (v *vm) strict(data *lua.LTable, what string, fields []string) {
	list := strings.Join(fields, ", ")
	mt := v.L.NewTable()
	mt.RawSetString("__index", v.L.NewFunction(func(L *lua.LState) int {
		if s, ok := L.Get(2).(lua.LString); ok && slices.Contains(fields, string(s)) {
			L.Push(lua.LNil)
			return 1
		}
		L.RaiseError("%s has no field %s (fields: %s)", what, lua.LVAsString(L.Get(2)), list)
		return 0
	}))
	data.Metatable = mt
}

// isProtected reports whether val is a table with a protected metatable (a view, the
// global environment, the module).
func isProtected(_ *lua.LState, val lua.LValue) bool {
	t, ok := val.(*lua.LTable)
	if !ok {
		return false
	}
	mt, ok := t.Metatable.(*lua.LTable)
	return ok && mt.RawGetString("__metatable") != lua.LNil
}

func (v *vm) installBase() {
	L, d := v.L, v.data
	d.RawSetString("print", L.NewFunction(v.luaPrint))
	rawset := d.RawGetString("rawset").(*lua.LFunction)
	d.RawSetString("rawset", L.NewFunction(func(L *lua.LState) int {
		if isProtected(L, L.Get(1)) {
			L.RaiseError("rawset on a protected table")
		}
		return rawset.GFunction(L)
	}))
	d.RawSetString("require", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		if name != "autoscale" {
			L.RaiseError("module '%s' not found: the sandbox has only 'autoscale'", name)
		}
		L.Push(v.mod)
		return 1
	}))
	d.RawSetString("now", L.NewFunction(v.luaNow))

	v.installStrings(d.RawGetString("string").(*lua.LTable))
	v.installTables(d.RawGetString("table").(*lua.LTable))
	m := d.RawGetString("math").(*lua.LTable)
	m.RawSetString("randomseed", lua.LNil) // it would reseed the process-wide source

	// The library tables, like the globals, are written through a proxy: freely while
	// the main chunk runs, never after (sealLibraries), so that no request changes
	// what a later request on the same VM sees. The string metatable's __index is the
	// string proxy, and getmetatable("") returns the protected marker.
	for _, name := range libraries {
		data := d.RawGetString(name).(*lua.LTable)
		mt := L.NewTable()
		mt.RawSetString("__index", data)
		mt.RawSetString("__newindex", data)
		mt.RawSetString("__metatable", lua.LString(protectedMeta))
		p := L.NewTable()
		p.Metatable = mt
		d.RawSetString(name, p)
		v.libMTs = append(v.libMTs, mt)
		if name == lua.StringLibName {
			smt := L.NewTable()
			smt.RawSetString("__index", p)
			smt.RawSetString("__metatable", lua.LString(protectedMeta))
			L.SetMetatable(lua.LString(""), smt)
		}
	}
}

// libraries are the library tables a VM protects.
var libraries = [...]string{lua.StringLibName, lua.TabLibName, lua.MathLibName}

// sealLibraries makes the library tables read-only; newVM calls it after the main
// chunk.
func (v *vm) sealLibraries() {
	for i, mt := range v.libMTs {
		name := libraries[i]
		mt.RawSetString("__newindex", v.L.NewFunction(func(L *lua.LState) int {
			L.RaiseError("assignment to %s.%s after load: library tables are read-only in hooks", name, L.Get(2).String())
			return 0
		}))
	}
}

func (v *vm) luaPrint(L *lua.LState) int {
	var b strings.Builder
	for i := 1; i <= L.GetTop(); i++ {
		if i > 1 {
			b.WriteByte('\t')
		}
		// Only what fits is copied: a string grown with `..` can be hundreds of MB.
		s := L.ToStringMeta(L.Get(i)).String()
		b.WriteString(s[:min(len(s), 4097-b.Len())])
		if b.Len() > 4096 {
			break
		}
	}
	msg := b.String()
	if len(msg) > 4096 {
		msg = msg[:4096] + "…"
	}
	v.rt.cfg.logger.Info("lua print", "script", v.prog.name, "hook", string(allHooksArray[v.hook]), "msg", msg)
	return 0
}

func (v *vm) luaNow(L *lua.LState) int {
	L.Push(lua.LNumber(luaunit.UnixSeconds(v.rt.cfg.clock.Now())))
	return 1
}

// ms converts a duration to Lua milliseconds.
func ms(d time.Duration) lua.LValue { return lua.LNumber(float64(d) / 1e6) }

// installConfig sets the global config from the runtime's values.
func (v *vm) installConfig() {
	t := v.L.NewTable()
	for k, val := range v.rt.cfg.values {
		t.RawSetString(k, toLua(v.L, val))
	}
	v.data.RawSetString("config", t)
}

func checkConfigValue(x any, depth int) error {
	if depth > 32 {
		return fmt.Errorf("nested deeper than 32")
	}
	switch x := x.(type) {
	case nil, bool, string, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, time.Duration, []string, []float64, map[string]string:
		return nil
	case []any:
		for _, e := range x {
			if err := checkConfigValue(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for k, e := range x {
			if err := checkConfigValue(e, depth+1); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	}
	return fmt.Errorf("unsupported type %T", x)
}

// toLua copies a checked config value into Lua.
func toLua(L *lua.LState, x any) lua.LValue {
	switch x := x.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int:
		return lua.LNumber(x)
	case int8:
		return lua.LNumber(x)
	case int16:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case uint:
		return lua.LNumber(x)
	case uint8:
		return lua.LNumber(x)
	case uint16:
		return lua.LNumber(x)
	case uint32:
		return lua.LNumber(x)
	case uint64:
		return lua.LNumber(x)
	case float32:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case time.Duration:
		return lua.LNumber(x.Seconds())
	case []string:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(lua.LString(e))
		}
		return t
	case []float64:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(lua.LNumber(e))
		}
		return t
	case []any:
		t := L.CreateTable(len(x), 0)
		for i, e := range x {
			t.RawSetInt(i+1, toLua(L, e))
		}
		return t
	case map[string]string:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, lua.LString(e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	}
	return lua.LNil
}
