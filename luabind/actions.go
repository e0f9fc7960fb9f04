package luabind

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind/internal/luaunit"
	lua "github.com/yuin/gopher-lua"
)

// The autoscale module: action constructors, as globals and as require("autoscale").

// actionKind is one action a script can make: its constructor's name (the action's
// Kind), how the constructor reads its arguments, and the fields Lua reads back.
type actionKind struct {
	name   string
	ctor   func(*lua.LState) (autoscale.Action, error)
	fields []actionField
}

// actionField is one field of an action as Lua reads it (durations in seconds).
type actionField struct {
	name string
	get  func(autoscale.Action) lua.LValue
}

// field makes an actionField of actions of type A.
func field[A autoscale.Action](name string, get func(A) lua.LValue) actionField {
	return actionField{name, func(a autoscale.Action) lua.LValue { return get(a.(A)) }}
}

// actionKinds are the nine actions, in the order REFERENCE.md lists them. The kind field
// every action has is not listed.
var actionKinds = [...]actionKind{
	{"scale", ctorScale, []actionField{
		field("target", func(a autoscale.Scale) lua.LValue { return lua.LString(a.Target) }),
		field("replicas", func(a autoscale.Scale) lua.LValue { return lua.LNumber(a.Replicas) }),
		field("reason", func(a autoscale.Scale) lua.LValue { return lua.LString(a.Reason) }),
		field("panic", func(a autoscale.Scale) lua.LValue { return lua.LBool(a.Panic) }),
	}},
	{"set_weight", ctorSetWeight, []actionField{
		field("pool", func(a autoscale.SetWeight) lua.LValue { return lua.LString(a.Pool) }),
		field("backend", func(a autoscale.SetWeight) lua.LValue { return lua.LString(a.Backend) }),
		field("weight", func(a autoscale.SetWeight) lua.LValue { return lua.LNumber(a.Weight) }),
	}},
	{"eject", ctorEject, []actionField{
		field("pool", func(a autoscale.Eject) lua.LValue { return lua.LString(a.Pool) }),
		field("backend", func(a autoscale.Eject) lua.LValue { return lua.LString(a.Backend) }),
		field("seconds", func(a autoscale.Eject) lua.LValue { return lua.LNumber(a.Duration.Seconds()) }),
		field("reason", func(a autoscale.Eject) lua.LValue { return lua.LString(a.Reason) }),
	}},
	{"score_weights", ctorScoreWeights, []actionField{
		field("pool", func(a autoscale.ScoreWeights) lua.LValue { return lua.LString(a.Pool) }),
		field("queue", func(a autoscale.ScoreWeights) lua.LValue { return lua.LNumber(a.Queue) }),
		field("kv_cache", func(a autoscale.ScoreWeights) lua.LValue { return lua.LNumber(a.KVCache) }),
		field("in_flight", func(a autoscale.ScoreWeights) lua.LValue { return lua.LNumber(a.InFlight) }),
		field("latency", func(a autoscale.ScoreWeights) lua.LValue { return lua.LNumber(a.Latency) }),
		field("prefix", func(a autoscale.ScoreWeights) lua.LValue { return lua.LNumber(a.Prefix) }),
	}},
	{"shed", ctorShed, []actionField{
		field("route", func(a autoscale.Shed) lua.LValue { return lua.LString(a.Route) }),
		field("fraction", func(a autoscale.Shed) lua.LValue { return lua.LNumber(a.Fraction) }),
		field("retry_after", func(a autoscale.Shed) lua.LValue { return lua.LNumber(a.RetryAfter.Seconds()) }),
		field("priority", func(a autoscale.Shed) lua.LValue {
			if a.Priority == nil {
				return lua.LNil
			}
			return lua.LNumber(*a.Priority)
		}),
	}},
	{"limit_bounds", ctorLimitBounds, []actionField{
		field("route", func(a autoscale.LimitBounds) lua.LValue { return lua.LString(a.Route) }),
		field("min", func(a autoscale.LimitBounds) lua.LValue { return lua.LNumber(a.Min) }),
		field("max", func(a autoscale.LimitBounds) lua.LValue { return lua.LNumber(a.Max) }),
	}},
	{"throttle", ctorThrottle, []actionField{
		field("tenant", func(a autoscale.Throttle) lua.LValue { return lua.LString(a.Tenant) }),
		field("rps", func(a autoscale.Throttle) lua.LValue { return lua.LNumber(a.RPS) }),
		field("burst", func(a autoscale.Throttle) lua.LValue { return lua.LNumber(a.Burst) }),
	}},
	{"route", ctorRoute, []actionField{
		field("from", func(a autoscale.Route) lua.LValue { return lua.LString(a.From) }),
		field("to", func(a autoscale.Route) lua.LValue { return lua.LString(a.To) }),
		field("fraction", func(a autoscale.Route) lua.LValue { return lua.LNumber(a.Fraction) }),
		field("reason", func(a autoscale.Route) lua.LValue { return lua.LString(a.Reason) }),
	}},
	{"budget", ctorBudget, []actionField{
		field("tenant", func(a autoscale.Budget) lua.LValue { return lua.LString(a.Tenant) }),
		field("model", func(a autoscale.Budget) lua.LValue { return lua.LString(a.Model) }),
		field("tokens_per_minute", func(a autoscale.Budget) lua.LValue { return lua.LNumber(a.TokensPerMinute) }),
		field("burst", func(a autoscale.Budget) lua.LValue { return lua.LNumber(a.Burst) }),
	}},
}

// kindOf returns the entry of actionKinds for a's kind.
func kindOf(a autoscale.Action) *actionKind {
	k := a.Kind()
	for i := range actionKinds {
		if actionKinds[i].name == k {
			return &actionKinds[i]
		}
	}
	return nil
}

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
	for _, k := range &actionKinds {
		f := L.NewFunction(func(L *lua.LState) int {
			a, err := k.ctor(L)
			if err == nil {
				err = a.Validate()
			}
			if err != nil {
				L.RaiseError("%s: %v", k.name, err)
			}
			L.Push(v.actionUD(a))
			return 1
		})
		mod.RawSetString(k.name, f)
		v.data.RawSetString(k.name, f)
	}
	mod.RawSetString("now", L.NewFunction(v.luaNow))
	v.mod = v.protect(mod)
}

// actionUD returns a as the userdata the action constructors return.
func (v *vm) actionUD(a autoscale.Action) *lua.LUserData {
	ud := v.L.NewUserData()
	ud.Value = a
	ud.Metatable = v.actMT
	return ud
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
	d, ok := luaunit.Seconds(float64(L.CheckNumber(n)))
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

// ctorScoreWeights reads score_weights(pool, {queue=, kv_cache=, in_flight=, latency=,
// prefix=}): a weight left out is 0; an unknown key or a value that is not a number
// is an error.
func ctorScoreWeights(L *lua.LState) (autoscale.Action, error) {
	a := autoscale.ScoreWeights{Pool: L.CheckString(1)}
	ws := map[string]*float64{"queue": &a.Queue, "kv_cache": &a.KVCache, "in_flight": &a.InFlight, "latency": &a.Latency, "prefix": &a.Prefix}
	var bad error
	L.CheckTable(2).ForEach(func(k, v lua.LValue) {
		p, ok := ws[lua.LVAsString(k)]
		n, isNum := v.(lua.LNumber)
		switch {
		case bad != nil:
		case !ok || k.Type() != lua.LTString:
			bad = fmt.Errorf("unknown weight %v (want queue, kv_cache, in_flight, latency, prefix)", k)
		case !isNum:
			bad = fmt.Errorf("weight %v is not a number", k)
		default:
			*p = float64(n)
		}
	})
	return a, bad
}

func ctorShed(L *lua.LState) (autoscale.Action, error) {
	a := autoscale.Shed{Route: L.CheckString(1), Fraction: float64(L.CheckNumber(2))}
	if L.GetTop() >= 3 && L.Get(3) != lua.LNil {
		a.RetryAfter = checkSeconds(L, 3, "retry_after")
	}
	if L.GetTop() >= 4 && L.Get(4) != lua.LNil {
		p := checkInt(L, 4, "priority")
		a.Priority = &p
	}
	return a, nil
}

func ctorLimitBounds(L *lua.LState) (autoscale.Action, error) {
	return autoscale.LimitBounds{Route: L.CheckString(1), Min: checkInt(L, 2, "min"), Max: checkInt(L, 3, "max")}, nil
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
	return autoscale.Route{From: L.CheckString(1), To: L.CheckString(2), Fraction: float64(L.CheckNumber(3)), Reason: optString(L, 4)}, nil
}

func ctorBudget(L *lua.LState) (autoscale.Action, error) {
	a := autoscale.Budget{Tenant: L.CheckString(1), Model: optString(L, 2), TokensPerMinute: int64(checkInt(L, 3, "tokens_per_minute"))}
	if L.GetTop() >= 4 && L.Get(4) != lua.LNil {
		a.Burst = int64(checkInt(L, 4, "burst"))
	}
	return a, nil
}

// luaActionIndex reads a field of an action userdata; an unknown field raises.
func luaActionIndex(L *lua.LState) int {
	a, _ := L.CheckUserData(1).Value.(autoscale.Action)
	name := L.CheckString(2)
	val, ok := actionFieldOf(a, name)
	if !ok {
		L.RaiseError("%s", unknownActionField(a, name))
	}
	L.Push(val)
	return 1
}

// actionFieldOf returns one field of an action as Lua sees it (durations in seconds);
// false when the action has no such field.
func actionFieldOf(a autoscale.Action, name string) (lua.LValue, bool) {
	if a == nil {
		return lua.LNil, false
	}
	if name == "kind" {
		return lua.LString(a.Kind()), true
	}
	if k := kindOf(a); k != nil {
		for _, f := range k.fields {
			if f.name == name {
				return f.get(a), true
			}
		}
	}
	return lua.LNil, false
}

func unknownActionField(a autoscale.Action, name string) string {
	if a == nil {
		return fmt.Sprintf("not an action (field %q)", name)
	}
	names := []string{"kind"}
	if k := kindOf(a); k != nil {
		for _, f := range k.fields {
			names = append(names, f.name)
		}
	}
	return fmt.Sprintf("a %s action has no field %q (fields: %s)", a.Kind(), name, strings.Join(names, ", "))
}
