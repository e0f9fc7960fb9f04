package luatest

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/autoscalelua/autoscalelua/autoscale"
	lua "github.com/yuin/gopher-lua"
)

// This file compares and shows Lua values for the assertions' messages.

// matches reports whether a is of kind and has every field in fields.
func matches(h vmHandle, a autoscale.Action, kind string, fields *lua.LTable) (bool, error) {
	if a.Kind() != kind {
		return false, nil
	}
	ok := true
	var bad error
	fields.ForEach(func(k, want lua.LValue) {
		got, err := h.ActionField(a, k.String())
		if err != nil {
			if bad == nil {
				bad = err
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
