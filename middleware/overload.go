package middleware

import (
	"cmp"
	"errors"
	"runtime"
	runmetrics "runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOverloaded: the gateway itself is over one of its limits (heap, goroutines, open
// requests) and sheds the request's priority class (503). See [SelfProtection].
var ErrOverloaded = errors.New("middleware: gateway overloaded")

// OverloadHeader is set on a response shed by self-protection, beside
// [RejectedHeader] "overload", to say which resource is over its limit: "heap",
// "goroutines" or "open-requests".
const OverloadHeader = "X-Autoscale-Overload"

// SelfProtection sets the gateway's own limits ([WithSelfProtection]), the way
// Envoy's overload manager does: when the heap, the goroutines or the requests open
// in the admission pass their limit, admission sheds whole priority classes, the
// lowest first. Every Refresh it reads the resources (off the fast path: one request
// does it by TryLock while the others read the verdict): while one is over its limit
// the shed level rises by one class, and once all are under Recover of their limits
// it falls by one. At level k, requests whose priority is at most Priorities[k-1]
// are rejected with [ErrOverloaded]; priorities above the last listed are never shed
// by it. Zero limits are not checked.
type SelfProtection struct {
	// MaxHeap is the live heap's limit in bytes (runtime/metrics
	// /memory/classes/heap/objects:bytes).
	MaxHeap uint64
	// MaxGoroutines is the limit on goroutines.
	MaxGoroutines int
	// MaxOpen is the limit on requests admitted and not yet done, queued ones
	// included.
	MaxOpen int64
	// Priorities are the classes to shed, lowest first; nil means one class of every
	// priority.
	Priorities []int
	// Refresh is how often the resources are read; 0 means 100 ms.
	Refresh time.Duration
	// Recover is the fraction of each limit under which the level falls, in (0, 1];
	// 0 means 0.9.
	Recover float64
}

// WithSelfProtection turns on self-protection (see [SelfProtection]).
func WithSelfProtection(p SelfProtection) AdmissionOption {
	return func(a *Admission) error {
		var errs []error
		if p.MaxGoroutines < 0 || p.MaxOpen < 0 || p.Refresh < 0 {
			errs = append(errs, configError("self-protection: negative goroutines, open requests or refresh"))
		}
		if p.Recover < 0 || p.Recover > 1 || p.Recover != p.Recover {
			errs = append(errs, configError("self-protection: recover %v out of (0, 1]", p.Recover))
		}
		if p.MaxHeap == 0 && p.MaxGoroutines == 0 && p.MaxOpen == 0 {
			errs = append(errs, configError("self-protection: no limit set"))
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		p.Refresh = cmp.Or(p.Refresh, 100*time.Millisecond)
		p.Recover = cmp.Or(p.Recover, 0.9)
		p.Priorities = slices.Clone(p.Priorities)
		slices.Sort(p.Priorities)
		if len(p.Priorities) == 0 {
			p.Priorities = []int{int(^uint(0) >> 1)}
		}
		o := &overload{cfg: p}
		o.sample = []runmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		a.overload = o
		return nil
	}
}

// Overload reasons, in [OverloadHeader].
const (
	overHeap       = "heap"
	overGoroutines = "goroutines"
	overOpen       = "open-requests"
)

type overload struct {
	cfg    SelfProtection
	next   atomic.Int64 // clock nanoseconds of the next read
	level  atomic.Int32 // classes shed
	reason atomic.Pointer[string]
	mu     sync.Mutex // the read, by TryLock; guards sample
	sample []runmetrics.Sample

	shed atomic.Uint64
}

// check returns the reason to shed a request of priority prio at now, or "".
func (o *overload) check(a *Admission, prio int, now time.Time) string {
	if ns := now.UnixNano(); ns >= o.next.Load() && o.mu.TryLock() {
		if ns >= o.next.Load() {
			o.next.Store(ns + int64(o.cfg.Refresh))
			o.read(a)
		}
		o.mu.Unlock()
	}
	lv := int(o.level.Load())
	if lv == 0 || prio > o.cfg.Priorities[lv-1] {
		return ""
	}
	o.shed.Add(1)
	if r := o.reason.Load(); r != nil {
		return *r
	}
	return overOpen
}

// read reads the resources and moves the level; o.mu is held.
func (o *overload) read(a *Admission) {
	c := &o.cfg
	var heap uint64
	if c.MaxHeap > 0 {
		runmetrics.Read(o.sample)
		if o.sample[0].Value.Kind() == runmetrics.KindUint64 {
			heap = o.sample[0].Value.Uint64()
		}
	}
	var g int
	if c.MaxGoroutines > 0 {
		g = runtime.NumGoroutine()
	}
	open := a.inFlight.Load() + a.waiting.Load()
	reason := ""
	switch {
	case c.MaxHeap > 0 && heap > c.MaxHeap:
		reason = overHeap
	case c.MaxGoroutines > 0 && g > c.MaxGoroutines:
		reason = overGoroutines
	case c.MaxOpen > 0 && open > c.MaxOpen:
		reason = overOpen
	}
	lv := o.level.Load()
	if reason != "" {
		o.reason.Store(&reason)
		if int(lv) < len(c.Priorities) {
			o.level.Store(lv + 1)
		}
		return
	}
	under := (c.MaxHeap == 0 || float64(heap) < c.Recover*float64(c.MaxHeap)) &&
		(c.MaxGoroutines == 0 || float64(g) < c.Recover*float64(c.MaxGoroutines)) &&
		(c.MaxOpen == 0 || float64(open) < c.Recover*float64(c.MaxOpen))
	if under && lv > 0 {
		o.level.Store(lv - 1)
	}
}

// overloadError is [ErrOverloaded] with the resource that is over its limit.
type overloadError struct{ reason string }

func (e *overloadError) Error() string { return ErrOverloaded.Error() + ": " + e.reason }
func (e *overloadError) Unwrap() error { return ErrOverloaded }

// The reasons' errors, made once so that a rejection allocates nothing.
var overloadErrors = map[string]error{
	overHeap: &overloadError{overHeap}, overGoroutines: &overloadError{overGoroutines}, overOpen: &overloadError{overOpen},
}

// OverloadReason returns the resource an [ErrOverloaded] names ("heap",
// "goroutines", "open-requests"), or "".
func OverloadReason(err error) string {
	var oe *overloadError
	if errors.As(err, &oe) {
		return oe.reason
	}
	return ""
}

func (a *Admission) overloadCount() uint64 {
	if a.overload == nil {
		return 0
	}
	return a.overload.shed.Load()
}
