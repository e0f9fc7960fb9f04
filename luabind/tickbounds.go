package luabind

import (
	lua "github.com/yuin/gopher-lua"
)

// stateSize estimates the bytes reachable from on_tick's state table, stopping
// once the estimate passes limit (so a check costs at most a walk of limit bytes'
// worth of entries per table). It counts what a script can grow: tables (a header
// and two values per entry), strings (their bytes), metatables, functions and the
// upvalues they close over, userdata (a snapshot or action kept in state).
func stateSize(state *lua.LTable, limit int) int {
	w := sizeWalk{seen: map[any]struct{}{}, limit: limit}
	w.value(state)
	return w.n
}

type sizeWalk struct {
	seen  map[any]struct{}
	n     int
	limit int
}

// The estimate's costs, in bytes: gopher-lua's LTable and an entry of its array or
// hash part (key and value interfaces), a function and an upvalue, a userdata.
const (
	sizeTable    = 96
	sizeEntry    = 40
	sizeFunction = 96
	sizeUpvalue  = 32
	sizeUserData = 256
	sizeString   = 16
)

func (w *sizeWalk) value(v lua.LValue) {
	if w.n > w.limit {
		return
	}
	switch x := v.(type) {
	case lua.LString:
		w.n += sizeString + len(x)
	case *lua.LTable:
		if _, ok := w.seen[x]; ok {
			return
		}
		w.seen[x] = struct{}{}
		w.n += sizeTable
		if x.Metatable != nil {
			w.value(x.Metatable)
		}
		x.ForEach(func(k, val lua.LValue) {
			if w.n > w.limit {
				return
			}
			w.n += sizeEntry
			w.value(k)
			w.value(val)
		})
	case *lua.LFunction:
		if _, ok := w.seen[x]; ok {
			return
		}
		w.seen[x] = struct{}{}
		w.n += sizeFunction
		for _, uv := range x.Upvalues {
			w.n += sizeUpvalue
			if uv != nil {
				w.value(uv.Value())
			}
		}
	case *lua.LUserData:
		if _, ok := w.seen[x]; ok {
			return
		}
		w.seen[x] = struct{}{}
		w.n += sizeUserData
		if x.Metatable != nil {
			w.value(x.Metatable)
		}
	}
}
