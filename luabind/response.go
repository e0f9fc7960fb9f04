package luabind

import (
	"context"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
)

// Response is what on_response sees of a finished request.
type Response struct {
	// Status is the response's status code.
	Status int
	// Latency is the request's duration (Lua: milliseconds).
	Latency time.Duration
	// Bytes is the response's size.
	Bytes int64
	// Backend is the ID of the backend that served the request, when the host knows it
	// (a [balancer.Proxy]'s hook, [Runtime.ProxyHook]); "" otherwise.
	Backend string
	// Values are user values the host attaches (tokens used, cost, cache hit), read by
	// res:value(name). Supported types: string, bool, integers, floats and
	// time.Duration (seconds); others read as nil.
	Values map[string]any
}

var responseFields = [...]string{"status", "latency", "bytes", "backend", "value"}

// OnResponse runs the script's on_response. Failures are counted, logged and
// returned; there is nothing to fail closed. ctx (with Limits.PoolWait) bounds only the wait for a free VM.
func (r *Runtime) OnResponse(ctx context.Context, req *Request, res *Response) error {
	p := r.prog.Load()
	if !p.has[hResponse] {
		return nil
	}
	v, err := r.acquire(ctx, p, hResponse)
	if err != nil {
		return r.failed(ctx, hResponse, err)
	}
	v.reqv.set(v, req)
	v.resv.set(v, res)
	L := v.L
	L.Push(v.fns[hResponse])
	L.Push(v.reqv.proxy)
	L.Push(v.resv.proxy)
	err = v.pcall(2, 0, r.cfg.limits.budget(hResponse))
	v.reqv.clear()
	v.resv.clear()
	if err != nil {
		cerr := v.callErr(hResponse, err)
		r.release(v, false)
		return r.failed(ctx, hResponse, cerr)
	}
	r.release(v, true)
	return nil
}

// resView is a VM's reusable response view. Like reqView it copies what res:value
// reads (the values map) rather than keeping the caller's *Response.
type resView struct {
	proxy, data *lua.LTable
	live        bool
	values      map[string]any
}

func (rv *resView) clear() { rv.live, rv.values = false, nil }

func (rv *resView) init(v *vm) {
	L := v.L
	rv.data = L.CreateTable(0, len(responseFields))
	rv.data.RawSetString("value", L.NewFunction(func(L *lua.LState) int {
		name := stringArg(L, rv.proxy)
		if !rv.live {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(scalarToLua(rv.values[name]))
		return 1
	}))
	v.strict(rv.data, "res", responseFields[:])
	rv.proxy = v.protect(rv.data)
	v.data.RawSetString("observe", L.NewFunction(v.luaObserve))
}

func (rv *resView) set(v *vm, res *Response) {
	rv.live, rv.values = true, res.Values
	rv.data.RawSetString("status", lua.LNumber(res.Status))
	rv.data.RawSetString("latency", ms(res.Latency))
	rv.data.RawSetString("bytes", lua.LNumber(res.Bytes))
	rv.data.RawSetString("backend", v.str(res.Backend))
}

func scalarToLua(x any) lua.LValue {
	switch x := x.(type) {
	case string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, time.Duration:
		return toLua(nil, x)
	}
	return lua.LNil
}

// builtinScopes are the scopes observe refuses: they count requests, and a custom
// observation would count as one.
var builtinScopes = [...]metrics.Scope{metrics.ScopeRoute, metrics.ScopeTenant, metrics.ScopeBackend, metrics.ScopeModel, metrics.ScopeTarget, metrics.ScopeTTFB}

// luaObserve is observe(scope, key, value): it records one observation with the value
// into the registry's window of (scope, key).
func (v *vm) luaObserve(L *lua.LState) int {
	scope := L.CheckString(1)
	key := L.CheckString(2)
	val := float64(L.CheckNumber(3))
	reg := v.rt.cfg.registry
	switch {
	case reg == nil:
		L.RaiseError("observe: the host gave no registry (luabind.WithRegistry)")
	case scope == "" || len(scope) > 64:
		L.RaiseError("observe: scope must be 1..64 bytes")
	case val != val:
		L.RaiseError("observe: value is NaN")
	}
	for _, s := range builtinScopes {
		if metrics.Scope(scope) == s {
			L.RaiseError("observe: scope %q is the library's; use a scope of your own", scope)
		}
	}
	if sc := metrics.Scope(scope); !reg.HasScope(sc) && !v.rt.claimScope(sc) {
		L.RaiseError("observe: scope %q would be the script's %d-th new scope, more than %d (limit); declare the host's with luabind.WithScopes",
			scope, v.rt.cfg.limits.MaxScriptScopes+1, v.rt.cfg.limits.MaxScriptScopes)
	}
	reg.Window(metrics.Scope(scope), key).Record(metrics.Observation{Value: val})
	return 0
}

// claimScope records that the script makes scope in the registry, and reports
// whether it may: a declared scope (WithScopes) always may, others only while the
// script has made fewer than Limits.MaxScriptScopes. observe calls it only for a
// scope the registry does not hold yet, off the common path.
func (r *Runtime) claimScope(scope metrics.Scope) bool {
	if slices.Contains(r.cfg.scopes, scope) {
		return true
	}
	r.scopesMu.Lock()
	defer r.scopesMu.Unlock()
	if _, ok := r.scriptScopes[scope]; ok {
		return true
	}
	if len(r.scriptScopes) >= r.cfg.limits.MaxScriptScopes {
		return false
	}
	if r.scriptScopes == nil {
		r.scriptScopes = map[metrics.Scope]struct{}{}
	}
	r.scriptScopes[scope] = struct{}{}
	return true
}
