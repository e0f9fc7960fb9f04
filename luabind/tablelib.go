package luabind

import (
	"sort"

	lua "github.com/yuin/gopher-lua"
)

// The table functions below replace gopher-lua's table.concat, table.sort and unpack
// with bounded ones: concat builds no more than MaxStringLen; sort checks the call's
// budget every 1,024 comparisons (gopher-lua's runs to its end inside one Go call);
// unpack refuses more results than the value stack holds before pushing any.

func (v *vm) installTables(tbl *lua.LTable) {
	L := v.L
	tbl.RawSetString("concat", L.NewFunction(v.tblConcat))
	tbl.RawSetString("sort", L.NewFunction(v.tblSort))
	v.data.RawSetString("unpack", L.NewFunction(v.luaUnpack))
}

// tblConcat is table.concat (Lua 5.1), its result bounded by MaxStringLen.
func (v *vm) tblConcat(L *lua.LState) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	i := L.OptInt(3, 1)
	j := L.OptInt(4, t.Len())
	b := v.newBuf("table.concat")
	for k := i; k <= j; k++ {
		switch x := t.RawGetInt(k).(type) {
		case lua.LString:
			b.add(L, string(x))
		case lua.LNumber:
			b.add(L, x.String())
		default:
			L.RaiseError("invalid value (at index %d) in table for 'concat'", k)
		}
		if k != j {
			b.add(L, sep)
		}
	}
	L.Push(b.result())
	return 1
}

// tblSort is table.sort: the array part 1..#t sorted with < or the comparator, the
// budget checked every 1,024 comparisons.
func (v *vm) tblSort(L *lua.LState) int {
	t := L.CheckTable(1)
	var fn *lua.LFunction
	if L.GetTop() >= 2 && L.Get(2) != lua.LNil {
		fn = L.CheckFunction(2)
	}
	n := t.Len()
	vals := make([]lua.LValue, n)
	for i := range vals {
		vals[i] = t.RawGetInt(i + 1)
	}
	steps := 0
	sort.Slice(vals, func(i, j int) bool {
		steps++
		if steps&1023 == 0 {
			if err := v.budgetCheck(); err != nil {
				L.RaiseError("table.sort: %v", err)
			}
		}
		if fn == nil {
			return L.LessThan(vals[i], vals[j])
		}
		L.Push(fn)
		L.Push(vals[i])
		L.Push(vals[j])
		L.Call(2, 1)
		r := L.Get(-1)
		L.Pop(1)
		return lua.LVAsBool(r)
	})
	for i, x := range vals {
		t.RawSetInt(i+1, x)
	}
	return 0
}

// luaUnpack is unpack (Lua 5.1), refusing a range the value stack cannot hold.
func (v *vm) luaUnpack(L *lua.LState) int {
	t := L.CheckTable(1)
	i := L.OptInt(2, 1)
	j := L.OptInt(3, t.Len())
	if i > j {
		return 0
	}
	free := v.rt.cfg.limits.RegistryMaxSize - L.GetTop()
	if j-i >= free || j-i < 0 { // j-i < 0: the difference overflowed
		L.RaiseError("unpack: %v results overflow the value stack (limit)", float64(j)-float64(i)+1)
	}
	for k := i; k <= j; k++ {
		L.Push(t.RawGetInt(k))
	}
	return j - i + 1
}
