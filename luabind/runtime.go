package luabind

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// MaxScriptLen is the longest script accepted, in bytes.
const MaxScriptLen = 4 << 20

// Source is a script: its name (used in error messages, "name:line:") and its code.
type Source struct {
	Name string
	Code string
}

// FromString returns a source named name.
func FromString(name, code string) Source { return Source{Name: name, Code: code} }

// FromFile reads a source from a file; its name is the path.
func FromFile(path string) (Source, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Source{}, fmt.Errorf("luabind: read script: %w", err)
	}
	return Source{Name: path, Code: string(b)}, nil
}

// FromFS reads a source from a file system; its name is the path.
func FromFS(fsys fs.FS, path string) (Source, error) {
	b, err := fs.ReadFile(fsys, path)
	if err != nil {
		return Source{}, fmt.Errorf("luabind: read script: %w", err)
	}
	return Source{Name: path, Code: string(b)}, nil
}

// program is a compiled script: immutable, shared by every VM that runs it.
type program struct {
	name  string
	proto *lua.FunctionProto
	has   [hTick + 1]bool
	gen   uint64
	// tests, for a test suite's program, is the test file and its helpers.
	tests *suiteTests
}

type chunk struct {
	name  string
	proto *lua.FunctionProto
}

// chunks returns the chunks a VM runs at load: the script, then a suite's test file.
func (p *program) chunks() []chunk {
	cs := []chunk{{p.name, p.proto}}
	if p.tests != nil {
		cs = append(cs, p.tests.chunk)
	}
	return cs
}

// parseChunk parses and compiles one source.
func parseChunk(src Source) (chunk, error) {
	name := src.Name
	if name == "" {
		name = "script"
	}
	if len(src.Code) > MaxScriptLen {
		return chunk{}, &ScriptError{Hook: HookLoad, Script: name, Message: fmt.Sprintf("script is %d bytes, more than %d", len(src.Code), MaxScriptLen), Err: ErrCompile}
	}
	ast, err := parse.Parse(strings.NewReader(src.Code), name)
	if err != nil {
		return chunk{}, scriptError(HookLoad, name, err, ErrCompile)
	}
	proto, err := lua.Compile(ast, name)
	if err != nil {
		return chunk{}, scriptError(HookLoad, name, err, ErrCompile)
	}
	return chunk{name, proto}, nil
}

// Runtime runs one script's hooks in a bounded pool of sandboxed Lua VMs. It is safe
// for concurrent use. [Runtime.Reload] swaps the script atomically; calls in flight
// finish on the script they started with.
//
// A Runtime implements [autoscale.Policy] with the script's on_tick.
type Runtime struct {
	cfg config

	prog atomic.Pointer[program]
	gen  atomic.Uint64
	idle chan *vm // PoolSize slots: a nil is a free slot without a VM yet
	// hot holds VMs just released, taken first (see release): a channel hands its
	// VMs out first in, first out, so a pool cycles every request through all its
	// VMs and their memory through the caches; these few slots keep reusing the VMs
	// that are warm. A VM here is one of the PoolSize slots, out of idle.
	hot     []atomic.Pointer[vm]
	waiting atomic.Int32 // callers in wait: release then hands its VM to idle

	reloadMu sync.Mutex

	tickMu sync.Mutex
	tickVM *vm
	state  *lua.LTable

	closed    atomic.Bool
	closeOnce sync.Once

	failures  [numHooks][numReasons]atomic.Uint64
	suppress  [numHooks][numReasons]atomic.Uint64
	lastLog   [numHooks][numReasons]atomic.Int64
	attrs     [numHooks][numReasons]metric.AddOption
	counter   metric.Int64Counter
	created   atomic.Uint64
	discarded atomic.Uint64
	fallbacks atomic.Uint64
	reloads   atomic.Uint64
	reloadBad atomic.Uint64
	// stateResets counts on_tick states reset for passing Limits.MaxStateBytes.
	stateResets atomic.Uint64

	scopesMu     sync.Mutex
	scriptScopes map[metrics.Scope]struct{} // scopes observe made, at most MaxScriptScopes
}

// New compiles the script, runs its self_test() if it defines one, and returns a
// runtime ready to run its hooks. It reports every bad option at once.
func New(src Source, opts ...Option) (*Runtime, error) {
	c := config{limits: Limits{}.withDefaults(), logEvery: 10 * time.Second}
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, configError("nil option"))
			continue
		}
		if err := o(&c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.clock == nil {
		c.clock = metrics.NewSystemClock()
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.meter == nil {
		c.meter = noop.NewMeterProvider()
	}
	r := &Runtime{cfg: c, idle: make(chan *vm, c.limits.PoolSize),
		hot: make([]atomic.Pointer[vm], min(runtime.GOMAXPROCS(0), c.limits.PoolSize))}
	for range c.limits.PoolSize {
		r.idle <- nil
	}
	counter, err := c.meter.Meter("github.com/autoscalelua/autoscalelua/luabind").Int64Counter(
		"luabind.hook.failures",
		metric.WithDescription("Lua hook calls that failed, by hook and reason."),
		metric.WithUnit("{failure}"))
	if err != nil {
		return nil, fmt.Errorf("luabind: failure counter: %w", err)
	}
	r.counter = counter
	for h := range numHooks {
		for re := range numReasons {
			r.attrs[h][re] = metric.WithAttributeSet(attribute.NewSet(
				attribute.String("hook", string(allHooksArray[h])),
				attribute.String("reason", string(allReasons[re]))))
		}
	}
	p, err := r.compile(src)
	if err != nil {
		return nil, err
	}
	r.prog.Store(p)
	return r, nil
}

// compile parses, compiles and self-tests a source.
func (r *Runtime) compile(src Source) (*program, error) {
	c, err := parseChunk(src)
	if err != nil {
		return nil, err
	}
	name := c.name
	p := &program{name: c.name, proto: c.proto, gen: r.gen.Add(1)}
	v, err := r.newVM(p, r.cfg.limits.budget(hSelfTest))
	if err != nil {
		return nil, err
	}
	defer v.close()
	for i := range p.has {
		p.has[i] = v.fns[i] != nil
	}
	if f, ok := v.data.RawGetString(string(HookSelfTest)).(*lua.LFunction); ok {
		v.hook = hSelfTest
		v.L.Push(f)
		if err := v.pcall(0, 1, r.cfg.limits.budget(hSelfTest)); err != nil {
			return nil, scriptError(HookSelfTest, name, err, sentinelOf(err, ErrSelfTest))
		}
		ret := v.L.Get(-1)
		v.L.Pop(1)
		if ret == lua.LFalse {
			return nil, &ScriptError{Hook: HookSelfTest, Script: name, Message: "self_test returned false", Err: ErrSelfTest}
		}
	}
	return p, nil
}

// Reload compiles src and runs its self_test(); only if both succeed does it swap the
// script in, atomically. On failure the old script keeps running and the error (a
// [*ScriptError] with the Lua line) says why. The on_tick state table survives a
// reload.
func (r *Runtime) Reload(src Source) error {
	if r.closed.Load() {
		return ErrClosed
	}
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	p, err := r.compile(src)
	if err != nil {
		r.reloadBad.Add(1)
		return err
	}
	r.prog.Store(p)
	r.reloads.Add(1)
	// Close the idle VMs of older scripts now rather than when next used.
	for range cap(r.idle) {
		select {
		case v := <-r.idle:
			if v != nil && v.prog != p {
				r.discard(v)
				v = nil
			}
			r.idle <- v
		default:
		}
	}
	return nil
}

// Script returns the name of the running script and its generation, which starts at 1
// and grows with every successful reload.
func (r *Runtime) Script() (name string, generation uint64) {
	p := r.prog.Load()
	return p.name, p.gen
}

// Has reports whether the running script defines the hook.
func (r *Runtime) Has(h Hook) bool {
	i := hookOf(h)
	return i >= 0 && i <= hTick && r.prog.Load().has[i]
}

// Close releases the idle VMs; VMs in use are released when their calls end. Calls
// after Close return [ErrClosed]. Close is idempotent and always returns nil.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		for i := range r.hot {
			if v := r.hot[i].Swap(nil); v != nil {
				r.discard(v)
				r.idle <- nil
			}
		}
		for range cap(r.idle) {
			select {
			case v := <-r.idle:
				if v != nil {
					r.discard(v)
				}
				r.idle <- nil
			default:
			}
		}
		r.tickMu.Lock()
		if r.tickVM != nil {
			r.discard(r.tickVM)
			r.tickVM = nil
		}
		r.tickMu.Unlock()
	})
	return nil
}

// acquire takes a VM running p, waiting for a free slot no longer than the hook's
// pool wait (Limits.PoolWait, at most its budget) and ctx allow.
func (r *Runtime) acquire(ctx context.Context, p *program, hook int) (*vm, error) {
	v, ok := r.takeHot()
	if !ok {
		select {
		case v = <-r.idle:
		default:
			var err error
			if v, err = r.wait(ctx, hook); err != nil {
				return nil, err
			}
		}
	}
	if r.closed.Load() {
		if v != nil {
			r.discard(v)
		}
		r.idle <- nil
		return nil, ErrClosed
	}
	if v != nil && v.prog != p {
		r.discard(v)
		v = nil
	}
	if v == nil {
		var err error
		v, err = r.newVM(p, r.cfg.limits.budget(hRequest))
		if err != nil {
			r.idle <- nil
			return nil, err
		}
		r.created.Add(1)
	}
	v.hook = hook
	return v, nil
}

// takeHot takes a VM from the hot slots, if one is there.
func (r *Runtime) takeHot() (*vm, bool) {
	for i := range r.hot {
		if r.hot[i].Load() != nil {
			if v := r.hot[i].Swap(nil); v != nil {
				return v, true
			}
		}
	}
	return nil, false
}

// wait waits for a free slot, off the fast path (it allocates a timer). It counts
// itself in r.waiting before it looks at the hot slots a last time, and release
// stores into a hot slot before it reads r.waiting, so that one of the two sees the
// other: a VM released meanwhile is either taken here or handed on to idle.
func (r *Runtime) wait(ctx context.Context, hook int) (*vm, error) {
	r.waiting.Add(1)
	defer r.waiting.Add(-1)
	if v, ok := r.takeHot(); ok {
		return v, nil
	}
	d := r.cfg.limits.poolWait(hook)
	if d <= 0 {
		select {
		case v := <-r.idle:
			return v, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrBusy, context.Cause(ctx))
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case v := <-r.idle:
		return v, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrBusy, context.Cause(ctx))
	case <-t.C:
		return nil, fmt.Errorf("%w: no VM free within %v", ErrBusy, d)
	}
}

// release returns a VM to the pool, or closes it when it failed.
func (r *Runtime) release(v *vm, ok bool) {
	if !ok || r.closed.Load() {
		r.discard(v)
		r.idle <- nil
		return
	}
	if r.waiting.Load() == 0 {
		for i := range r.hot {
			if r.hot[i].CompareAndSwap(nil, v) {
				switch {
				case r.closed.Load(): // Close may have emptied the slots already
					if x := r.hot[i].Swap(nil); x != nil {
						r.discard(x)
						r.idle <- nil
					}
				case r.waiting.Load() > 0:
					r.flushHot() // a caller began waiting: it waits on idle
				}
				return
			}
		}
	}
	r.idle <- v
}

// flushHot moves the hot slots' VMs to idle.
func (r *Runtime) flushHot() {
	for i := range r.hot {
		if v := r.hot[i].Swap(nil); v != nil {
			r.idle <- v
		}
	}
}

func (r *Runtime) discard(v *vm) {
	v.close()
	r.discarded.Add(1)
}

// Reason classifies a hook failure.
type Reason string

// Failure reasons.
const (
	// ReasonError: the script raised an error.
	ReasonError Reason = "error"
	// ReasonTimeout: the call overran its time budget.
	ReasonTimeout Reason = "timeout"
	// ReasonLimit: the call broke a limit (call stack, value stack, string length).
	ReasonLimit Reason = "limit"
	// ReasonBadReturn: the hook returned something the contract does not allow (for
	// pick: an index out of range, an unknown id, an unhealthy backend).
	ReasonBadReturn Reason = "bad_return"
	// ReasonBusy: no VM was free within the pool wait or before the call's context ended.
	ReasonBusy Reason = "busy"
	// ReasonLoad: a new VM could not run the script's main chunk.
	ReasonLoad Reason = "load"
)

const (
	rError = iota
	rTimeout
	rLimit
	rBadReturn
	rBusy
	rLoad
	numReasons
)

var allReasons = [numReasons]Reason{ReasonError, ReasonTimeout, ReasonLimit, ReasonBadReturn, ReasonBusy, ReasonLoad}

// classify returns the failure reason of an error from a call.
func classify(err error) int {
	var se *ScriptError
	switch {
	case errors.Is(err, ErrScriptTimeout):
		return rTimeout
	case errors.Is(err, ErrBusy):
		return rBusy
	case errors.Is(err, ErrBadReturn):
		return rBadReturn
	case errors.Is(err, ErrCompile):
		return rLoad
	case errors.As(err, &se) && isLimit(se.Message):
		return rLimit
	}
	return rError
}

func isLimit(msg string) bool {
	return strings.Contains(msg, "stack overflow") || strings.Contains(msg, "registry overflow") ||
		strings.Contains(msg, "callstack overflow") || strings.Contains(msg, "(limit)")
}

// failed counts, exports and (paced) logs a hook failure, and returns err wrapped with
// ErrFailClosed when the hook fails closed.
func (r *Runtime) failed(ctx context.Context, hook int, err error) error {
	re := classify(err)
	r.failures[hook][re].Add(1)
	r.counter.Add(context.WithoutCancel(ctx), 1, r.attrs[hook][re])
	now := r.cfg.clock.Now().UnixNano()
	last := r.lastLog[hook][re].Load()
	if (last == 0 || now-last >= int64(r.cfg.logEvery)) && r.lastLog[hook][re].CompareAndSwap(last, now) {
		r.cfg.logger.Warn("lua hook failed",
			"hook", string(allHooksArray[hook]), "reason", string(allReasons[re]),
			"script", r.prog.Load().name, "err", err,
			"suppressed", r.suppress[hook][re].Swap(0))
	} else {
		r.suppress[hook][re].Add(1)
	}
	if hook <= hTick && r.cfg.fail[hook] == FailClosed {
		return fmt.Errorf("%w: %w", ErrFailClosed, err)
	}
	return err
}

// FailureKey names a counted failure.
type FailureKey struct {
	Hook   Hook
	Reason Reason
}

// Stats is what a runtime has done since it was made.
type Stats struct {
	// Script and Generation identify the running script (see [Runtime.Script]).
	Script     string
	Generation uint64
	// Failures counts hook failures by hook and reason; absent keys are zero.
	Failures map[FailureKey]uint64
	// PickFallbacks counts pick calls that left the choice to the pool's algorithm:
	// the hook returned nil, failed, or gave a bad answer.
	PickFallbacks uint64
	// VMsCreated and VMsDiscarded count pooled VMs made and closed (a VM that failed
	// or overran its budget is discarded, never reused).
	VMsCreated, VMsDiscarded uint64
	// Reloads and ReloadFailures count calls of [Runtime.Reload].
	Reloads, ReloadFailures uint64
	// StateResets counts on_tick state tables reset to empty for growing past
	// Limits.MaxStateBytes.
	StateResets uint64
}

// Total returns the number of failures of a hook, over all reasons.
func (s Stats) Total(h Hook) uint64 {
	var n uint64
	for k, c := range s.Failures {
		if k.Hook == h {
			n += c
		}
	}
	return n
}

// Stats returns the runtime's counts.
func (r *Runtime) Stats() Stats {
	p := r.prog.Load()
	s := Stats{
		Script: p.name, Generation: p.gen, Failures: map[FailureKey]uint64{},
		PickFallbacks: r.fallbacks.Load(),
		VMsCreated:    r.created.Load(), VMsDiscarded: r.discarded.Load(),
		Reloads: r.reloads.Load(), ReloadFailures: r.reloadBad.Load(),
		StateResets: r.stateResets.Load(),
	}
	for h := range numHooks {
		for re := range numReasons {
			if n := r.failures[h][re].Load(); n > 0 {
				s.Failures[FailureKey{allHooksArray[h], allReasons[re]}] = n
			}
		}
	}
	return s
}

// callErr turns a pcall error into the call's error.
func (v *vm) callErr(hook int, err error) error {
	return scriptError(allHooksArray[hook], v.prog.name, err, sentinelOf(err, ErrScript))
}
