package luabind

import (
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	luar "layeh.com/gopher-luar"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// BenchmarkSnapshotView compares three ways to show on_tick a metrics.Snapshot and read
// two of its fields from Lua: the read-only userdata luabind uses (fields computed on
// demand, in the contract's names and units), a table of all its fields, and
// gopher-luar's reflection (which would also expose Go's field names and nanoseconds,
// not the contract's). The first is what luabind ships; gopher-luar did not pay here.
func BenchmarkSnapshotView(b *testing.B) {
	snap := metrics.Snapshot{Span: time.Minute, Count: 6000, Rate: 100, ErrorRate: 0.01, P50: 20 * time.Millisecond,
		P90: 40 * time.Millisecond, P99: 95 * time.Millisecond, Max: 120 * time.Millisecond, Concurrency: 2.5}
	run := func(b *testing.B, read string, view func(L *lua.LState) lua.LValue) {
		L := lua.NewState(lua.Options{SkipOpenLibs: true})
		defer L.Close()
		if err := L.DoString(`function read(s) return ` + read + ` end`); err != nil {
			b.Fatal(err)
		}
		fn := L.GetGlobal("read")
		b.ReportAllocs()
		for b.Loop() {
			L.Push(fn)
			L.Push(view(L))
			L.Call(1, 1)
			L.Pop(1)
		}
	}
	b.Run("userdata", func(b *testing.B) {
		var mt *lua.LTable
		run(b, "s.rps + s.p99", func(L *lua.LState) lua.LValue {
			if mt == nil {
				mt = L.NewTable()
				mt.RawSetString("__index", L.NewFunction(luaSnapshotIndex))
			}
			ud := L.NewUserData()
			ud.Value = &snapView{snap, true}
			ud.Metatable = mt
			return ud
		})
	})
	b.Run("table", func(b *testing.B) {
		run(b, "s.rps + s.p99", func(L *lua.LState) lua.LValue {
			t := L.CreateTable(0, 18)
			for _, f := range snapshotFields {
				val, _ := snapshotField(&snap, true, f.name)
				t.RawSetString(f.name, val)
			}
			return t
		})
	})
	b.Run("gopher-luar", func(b *testing.B) {
		run(b, "s.Rate + s.P99", func(L *lua.LState) lua.LValue { return luar.New(L, &snap) })
	})
}
