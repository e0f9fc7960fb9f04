package luabind

import (
	"context"
	"fmt"
	"maps"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// BackendView is what pick sees of one backend. The host fills it (the balancer
// adapter does so from a pool's backends); Lua reads it through a read-only view.
type BackendView struct {
	// ID names the backend in its pool.
	ID string
	// InFlight is the number of requests the backend is serving.
	InFlight int64
	// EWMA is the backend's moving average latency (Lua: milliseconds).
	EWMA time.Duration
	// P99 is the backend's 99th percentile latency (Lua: milliseconds).
	P99 time.Duration
	// ErrorRate is the fraction of the backend's recent requests that failed, 0..1.
	ErrorRate float64
	// Weight is the backend's weight in its pool.
	Weight int
	// Healthy is false for a backend the pool would not pick (ejected, failing).
	Healthy bool
	// Labels are the backend's labels (zone, version); nil for none.
	Labels map[string]string
	// HasLoad says the backend has a load report the pick may use (see
	// [Runtime.BalancerPick]); without one, Lua reads queue, kv_cache and load_age as
	// nil, and Queue, KVCache and LoadAge are ignored.
	HasLoad bool
	// Queue is the requests waiting at the backend, from its load report.
	Queue int64
	// KVCache is the backend's KV-cache use, usually 0..1, from its load report.
	KVCache float64
	// LoadAge is the load report's age (Lua: seconds).
	LoadAge time.Duration
}

var backendFields = [...]string{"id", "in_flight", "ewma", "p99", "error_rate", "weight", "healthy", "labels", "queue", "kv_cache", "load_age"}

// Pick runs the script's pick over the backends and returns the index of the chosen
// one, or -1 to leave the choice to the pool's own algorithm: when there is no hook,
// when the hook returns nil, and when it fails or returns a bad answer (an index out of
// range, an unknown id, an unhealthy backend). Failures are counted, logged and
// returned; with [FailClosed] the error wraps [ErrFailClosed] and the caller should
// reject the request. ctx (with Limits.PoolWait) bounds only the wait for a free VM.
func (r *Runtime) Pick(ctx context.Context, req *Request, backends []BackendView) (int, error) {
	p := r.prog.Load()
	if !p.has[hPick] || len(backends) == 0 {
		return -1, nil
	}
	v, err := r.acquire(ctx, p, hPick)
	if err != nil {
		return r.pickFailed(ctx, err)
	}
	v.reqv.set(v, req)
	list := v.picks.set(v, backends)
	L := v.L
	L.Push(v.fns[hPick])
	L.Push(v.reqv.proxy)
	L.Push(list)
	if err := v.pcall(2, 1, r.cfg.limits.budget(hPick)); err != nil {
		v.reqv.clear()
		cerr := v.callErr(hPick, err)
		r.release(v, false)
		return r.pickFailed(ctx, cerr)
	}
	ret := L.Get(-1)
	L.Pop(1)
	v.reqv.clear()
	r.release(v, true)
	i, err := pickAnswer(ret, backends)
	if err != nil {
		return r.pickFailed(ctx, fmt.Errorf("%w: pick: %w", ErrBadReturn, err))
	}
	if i < 0 {
		r.fallbacks.Add(1)
	}
	return i, nil
}

func (r *Runtime) pickFailed(ctx context.Context, err error) (int, error) {
	r.fallbacks.Add(1)
	return -1, r.failed(ctx, hPick, err)
}

// pickAnswer maps pick's return value (nil, a 1-based index or an id) to a 0-based
// index, -1 for nil.
func pickAnswer(ret lua.LValue, backends []BackendView) (int, error) {
	switch ret := ret.(type) {
	case *lua.LNilType:
		return -1, nil
	case lua.LNumber:
		n, ok := intOf(ret)
		if !ok || n < 1 || n > len(backends) {
			return -1, fmt.Errorf("index %v out of [1, %d]", ret, len(backends))
		}
		if !backends[n-1].Healthy {
			return -1, fmt.Errorf("backend %d (%q) is unhealthy", n, backends[n-1].ID)
		}
		return n - 1, nil
	case lua.LString:
		for i := range backends {
			if backends[i].ID == string(ret) {
				if !backends[i].Healthy {
					return -1, fmt.Errorf("backend %q is unhealthy", ret)
				}
				return i, nil
			}
		}
		return -1, fmt.Errorf("no backend %q", ret)
	}
	return -1, fmt.Errorf("got a %s, want nil, an index or an id", ret.Type())
}

// pickViews is a VM's reusable backend list.
type pickViews struct {
	list  *lua.LTable
	views []backendView
}

type backendView struct {
	proxy, data *lua.LTable
	labels      map[string]string
	last        BackendView
}

func (pv *pickViews) init(v *vm) { pv.list = v.L.NewTable() }

// set writes the backends into the list, reusing each slot's view.
func (pv *pickViews) set(v *vm, bs []BackendView) *lua.LTable {
	pv.list.Metatable = lua.LNil
	for i := range bs {
		if i == len(pv.views) {
			data := v.L.CreateTable(0, len(backendFields))
			v.strict(data, "a backend view", backendFields[:])
			pv.views = append(pv.views, backendView{proxy: v.protect(data), data: data})
			pv.views[i].write(v, &bs[i], true)
		} else {
			pv.views[i].write(v, &bs[i], false)
		}
		pv.list.RawSetInt(i+1, pv.views[i].proxy)
	}
	for i := len(bs) + 1; i <= pv.list.MaxN(); i++ {
		pv.list.RawSetInt(i, lua.LNil)
	}
	return pv.list
}

func (bv *backendView) write(v *vm, b *BackendView, first bool) {
	d, l := bv.data, &bv.last
	if first || l.ID != b.ID {
		d.RawSetString("id", v.str(b.ID))
	}
	if first || l.InFlight != b.InFlight {
		d.RawSetString("in_flight", lua.LNumber(b.InFlight))
	}
	if first || l.EWMA != b.EWMA {
		d.RawSetString("ewma", ms(b.EWMA))
	}
	if first || l.P99 != b.P99 {
		d.RawSetString("p99", ms(b.P99))
	}
	if first || l.ErrorRate != b.ErrorRate {
		d.RawSetString("error_rate", lua.LNumber(b.ErrorRate))
	}
	if first || l.Weight != b.Weight {
		d.RawSetString("weight", lua.LNumber(b.Weight))
	}
	if first || l.Healthy != b.Healthy {
		d.RawSetString("healthy", lua.LBool(b.Healthy))
	}
	if first || l.HasLoad != b.HasLoad || l.Queue != b.Queue {
		d.RawSetString("queue", loadNumber(b.HasLoad, float64(b.Queue)))
	}
	if first || l.HasLoad != b.HasLoad || l.KVCache != b.KVCache {
		d.RawSetString("kv_cache", loadNumber(b.HasLoad, b.KVCache))
	}
	if first || l.HasLoad != b.HasLoad || l.LoadAge != b.LoadAge {
		d.RawSetString("load_age", loadNumber(b.HasLoad, b.LoadAge.Seconds()))
	}
	if first || !maps.Equal(bv.labels, b.Labels) {
		t := v.L.CreateTable(0, len(b.Labels))
		for k, val := range b.Labels {
			t.RawSetString(k, v.str(val))
		}
		d.RawSetString("labels", v.protect(t))
		bv.labels = maps.Clone(b.Labels)
	}
	bv.last = *b
	bv.last.Labels = nil
}

// loadNumber is a load-report field as Lua sees it: nil without a report.
func loadNumber(has bool, x float64) lua.LValue {
	if !has {
		return lua.LNil
	}
	return lua.LNumber(x)
}
