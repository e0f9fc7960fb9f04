package luabind

import (
	"strings"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind/internal/luaunit"
	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
)

// snapFieldSpec is one field of a snapshot view: its Lua name, how it reads the Go
// snapshot in Lua's units (seconds, milliseconds for latencies) and how a luatest
// fixture sets it. ok, the first, has neither: it is the view's, not the snapshot's.
type snapFieldSpec struct {
	name string
	get  func(*metrics.Snapshot) float64
	set  func(*metrics.Snapshot, float64)
}

// snapshotFields are the fields of a snapshot view, in the order REFERENCE.md lists
// them. A snapField is an index into it.
var snapshotFields = [...]snapFieldSpec{
	{name: "ok"},
	{"span", func(s *metrics.Snapshot) float64 { return s.Span.Seconds() },
		func(s *metrics.Snapshot, v float64) { s.Span, _ = luaunit.Seconds(v) }},
	{"count", func(s *metrics.Snapshot) float64 { return float64(s.Count) },
		func(s *metrics.Snapshot, v float64) { s.Count = uint64(v) }},
	{"errors", func(s *metrics.Snapshot) float64 { return float64(s.Errors) },
		func(s *metrics.Snapshot, v float64) { s.Errors = uint64(v) }},
	{"canceled", func(s *metrics.Snapshot) float64 { return float64(s.Canceled) },
		func(s *metrics.Snapshot, v float64) { s.Canceled = uint64(v) }},
	{"rejected", func(s *metrics.Snapshot) float64 { return float64(s.Rejected) },
		func(s *metrics.Snapshot, v float64) { s.Rejected = uint64(v) }},
	{"rps", func(s *metrics.Snapshot) float64 { return s.Rate },
		func(s *metrics.Snapshot, v float64) { s.Rate = v }},
	{"error_rate", func(s *metrics.Snapshot) float64 { return s.ErrorRate },
		func(s *metrics.Snapshot, v float64) { s.ErrorRate = v }},
	{"mean", func(s *metrics.Snapshot) float64 { return float64(s.Mean) / 1e6 },
		func(s *metrics.Snapshot, v float64) { s.Mean = luaunit.Millis(v) }},
	{"p50", func(s *metrics.Snapshot) float64 { return float64(s.P50) / 1e6 },
		func(s *metrics.Snapshot, v float64) { s.P50 = luaunit.Millis(v) }},
	{"p90", func(s *metrics.Snapshot) float64 { return float64(s.P90) / 1e6 },
		func(s *metrics.Snapshot, v float64) { s.P90 = luaunit.Millis(v) }},
	{"p99", func(s *metrics.Snapshot) float64 { return float64(s.P99) / 1e6 },
		func(s *metrics.Snapshot, v float64) { s.P99 = luaunit.Millis(v) }},
	{"max", func(s *metrics.Snapshot) float64 { return float64(s.Max) / 1e6 },
		func(s *metrics.Snapshot, v float64) { s.Max = luaunit.Millis(v) }},
	{"bytes", func(s *metrics.Snapshot) float64 { return float64(s.Bytes) },
		func(s *metrics.Snapshot, v float64) { s.Bytes = uint64(v) }},
	{"value", func(s *metrics.Snapshot) float64 { return s.Value },
		func(s *metrics.Snapshot, v float64) { s.Value = v }},
	{"in_flight", func(s *metrics.Snapshot) float64 { return float64(s.InFlight) },
		func(s *metrics.Snapshot, v float64) { s.InFlight = int64(v) }},
	{"max_in_flight", func(s *metrics.Snapshot) float64 { return float64(s.MaxInFlight) },
		func(s *metrics.Snapshot, v float64) { s.MaxInFlight = int64(v) }},
	{"concurrency", func(s *metrics.Snapshot) float64 { return s.Concurrency },
		func(s *metrics.Snapshot, v float64) { s.Concurrency = v }},
}

// snapField is a snapshot field: its index in snapshotFields.
type snapField uint8

const fieldOK snapField = 0

func lookupField(name string) (snapField, bool) {
	for i := range snapshotFields {
		if snapshotFields[i].name == name {
			return snapField(i), true
		}
	}
	return 0, false
}

// number returns field f of s as Lua reads it; 0 for ok.
func (f snapField) number(s *metrics.Snapshot) float64 {
	if f == fieldOK {
		return 0
	}
	return snapshotFields[f].get(s)
}

// snapshotFieldNames lists the fields, for error messages.
func snapshotFieldNames() string {
	var b strings.Builder
	for i := range snapshotFields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(snapshotFields[i].name)
	}
	return b.String()
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

// luaSnapshotIndex reads a field of a snapshot userdata; latencies in milliseconds. An
// unknown field raises, so that a misspelling (s.p99x) fails the hook instead of
// reading nil.
func luaSnapshotIndex(L *lua.LState) int {
	sv, _ := L.CheckUserData(1).Value.(*snapView)
	name := L.CheckString(2)
	if sv == nil {
		L.RaiseError("not a snapshot (field %q)", name)
	}
	val, ok := snapshotField(&sv.s, sv.ok, name)
	if !ok {
		L.RaiseError("a snapshot has no field %q (fields: %s)", name, snapshotFieldNames())
	}
	L.Push(val)
	return 1
}

// snapshotField returns the field name of s; false when there is no such field.
func snapshotField(s *metrics.Snapshot, ok bool, name string) (lua.LValue, bool) {
	f, known := lookupField(name)
	switch {
	case !known:
		return lua.LNil, false
	case f == fieldOK:
		return lua.LBool(ok), true
	}
	return lua.LNumber(f.number(s)), true
}

// targetFields are the fields of the table m.target returns, in the order
// REFERENCE.md lists them.
var targetFields = [...]struct {
	name string
	get  func(*autoscale.TargetState) lua.LValue
}{
	{"name", func(t *autoscale.TargetState) lua.LValue { return lua.LString(t.Name) }},
	{"replicas", func(t *autoscale.TargetState) lua.LValue { return lua.LNumber(t.Replicas) }},
	{"desired", func(t *autoscale.TargetState) lua.LValue { return lua.LNumber(t.Desired) }},
	{"min", func(t *autoscale.TargetState) lua.LValue { return lua.LNumber(t.Min) }},
	{"max", func(t *autoscale.TargetState) lua.LValue { return lua.LNumber(t.Max) }},
}

func targetTable(L *lua.LState, t autoscale.TargetState) *lua.LTable {
	tb := L.CreateTable(0, len(targetFields))
	for _, f := range &targetFields {
		tb.RawSetString(f.name, f.get(&t))
	}
	return tb
}
