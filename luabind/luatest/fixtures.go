package luatest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/internal/luaunit"
	"github.com/autoscalelua/autoscalelua/luabind/internal/seam"
	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
)

// This file turns the tables a test passes to fixture, request, backends and response
// into the Go values the runtime's views show.

// fields returns t's fields, failing on one not in allowed.
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

// fixtureInput returns the input a fixture table describes, and the scopes it declares.
func fixtureInput(t *lua.LTable, now time.Time, sf []seam.SnapshotField) (*autoscale.Input, []metrics.Scope, error) {
	plural := map[string]string{"routes": "route", "tenants": "tenant", "backends": "backend", "models": "model"}
	f, err := fields(t, "now", "tick", "targets", "scopes", "routes", "tenants", "backends", "models")
	if err != nil {
		return nil, nil, err
	}
	in := &autoscale.Input{Now: now, Tick: time.Second}
	if v, ok := f["now"]; ok {
		n, ok := v.(lua.LNumber)
		t, ok2 := luaunit.Instant(float64(n))
		if !ok || !ok2 {
			return nil, nil, fmt.Errorf("now: %v is not a time in seconds", v)
		}
		in.Now = t
	}
	tick, err := num(f, "tick", 1)
	if err != nil {
		return nil, nil, err
	}
	in.Tick, _ = luaunit.Seconds(tick)
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
			e, err := fixtureEntryOf(tb, sf)
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

// snapshotFieldNames are the fields a fixture's window may set: the snapshot's
// numbers (not ok, which is the fixture's having the window).
func snapshotFieldNames(sf []seam.SnapshotField) []string {
	names := make([]string, len(sf))
	for i, f := range sf {
		names[i] = f.Name
	}
	return names
}

func fixtureEntryOf(t *lua.LTable, sf []seam.SnapshotField) (fixtureEntry, error) {
	var e fixtureEntry
	names := snapshotFieldNames(sf)
	f, err := fields(t, append(names, "by_span")...)
	if err != nil {
		return e, err
	}
	if e.base, err = fixtureSnapshot(f, sf); err != nil {
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
			d, ok3 := luaunit.Seconds(float64(kn))
			if bad != nil {
				return
			}
			if !ok1 || !ok2 || !ok3 || d <= 0 {
				bad = fmt.Errorf("by_span: want {[seconds] = {...}}")
				return
			}
			wf, err := fields(st, names...)
			if err == nil {
				e.bySpan[d], err = fixtureSnapshot(wf, sf)
			}
			bad = err
		})
		if bad != nil {
			return e, bad
		}
	}
	return e, nil
}

func fixtureSnapshot(f map[string]lua.LValue, sf []seam.SnapshotField) (metrics.Snapshot, error) {
	s := metrics.Snapshot{Span: time.Minute}
	for _, field := range sf {
		if _, ok := f[field.Name]; !ok {
			continue
		}
		v, err := num(f, field.Name, 0)
		if err != nil {
			return s, err
		}
		field.Set(&s, v)
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

func fixtureRequest(t *lua.LTable) (*luabind.Request, error) {
	f, err := fields(t, "method", "path", "host", "headers", "query", "tenant", "route", "model", "priority", "content_length", "tokens")
	if err != nil {
		return nil, err
	}
	r := &luabind.Request{Method: "GET", Path: "/", ContentLength: -1}
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

func fixtureBackends(t *lua.LTable, backendFields []string) ([]luabind.BackendView, error) {
	var out []luabind.BackendView
	for i := 1; i <= t.Len(); i++ {
		bt, ok := t.RawGetInt(i).(*lua.LTable)
		if !ok {
			return nil, fmt.Errorf("[%d]: not a table", i)
		}
		f, err := fields(bt, backendFields...)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		b := luabind.BackendView{Healthy: true, Weight: 1}
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
		b.InFlight, b.EWMA, b.P99, b.ErrorRate, b.Weight = int64(vals[0]), luaunit.Millis(vals[1]), luaunit.Millis(vals[2]), vals[3], int(vals[4])
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

func fixtureResponse(t *lua.LTable) (*luabind.Response, error) {
	f, err := fields(t, "status", "latency", "bytes", "backend", "values")
	if err != nil {
		return nil, err
	}
	res := &luabind.Response{}
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
	res.Status, res.Latency, res.Bytes = int(st), luaunit.Millis(lat), int64(by)
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
