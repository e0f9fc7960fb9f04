package luabind

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// limit pushes m.limit(route, class[, span]): an adaptive concurrency limit read from
// its window in metrics.ScopeLimit, where each update of the limit records its value
// (Value) and mean RTT (Latency), and each rejection a rejected observation.
func (tv *tickView) limit(L *lua.LState) int {
	in := tv.input(L)
	route := L.CheckString(1)
	class := checkInt(L, 2, "class")
	span := spanArg(L, 3)
	var s metrics.Snapshot
	ok := false
	if in.Metrics != nil {
		s, ok = in.Metrics.Snapshot(metrics.ScopeLimit, metrics.ClassKey(route, class, ""), span)
	}
	t := L.CreateTable(0, 4)
	updates := s.Count - s.Rejected
	t.RawSetString("ok", lua.LBool(ok))
	t.RawSetString("rejected", lua.LNumber(s.Rejected))
	lim, rtt := 0.0, 0.0
	if updates > 0 {
		lim = s.Value / float64(updates)
		rtt = float64(s.Mean.Microseconds()) / 1000
	}
	t.RawSetString("limit", lua.LNumber(lim))
	t.RawSetString("rtt", lua.LNumber(rtt))
	L.Push(t)
	return 1
}
