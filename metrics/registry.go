package metrics

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Scope names a family of windows: one window per key in the scope. Any string works;
// the library uses these.
type Scope string

// Scopes the library records into.
const (
	ScopeRoute   Scope = "route"
	ScopeTenant  Scope = "tenant"
	ScopeBackend Scope = "backend"
	ScopeModel   Scope = "model"
	ScopeTarget  Scope = "target"
	// ScopeTTFB holds, per route, the time to first byte of streamed responses (those
	// that flushed before they ended).
	ScopeTTFB Scope = "ttfb"
)

// OverlongKey is the key that stands in for every key longer than the registry's
// maximum key length, so that traffic with absurd keys is still counted, in one window,
// without growing the registry.
const OverlongKey = "(overlong)"

// OverflowScope is the scope that stands in for every new scope once a registry holds
// its maximum number of scopes: windows of further scopes are made there, under their
// own keys (bounded by its LRU like any scope), so that what they record is still
// counted without growing the registry. It is counted in [RegistryStats.ScopeOverflows].
const OverflowScope Scope = "(overflow)"

// Registry defaults.
const (
	DefaultCapacity  = 1024
	DefaultMaxKeyLen = 256
	// DefaultMaxScopes is the default bound on a registry's scopes (see
	// [WithMaxScopes]).
	DefaultMaxScopes = 256
)

// Registry holds windows by (scope, key). Each scope is bounded by an LRU
// (github.com/hashicorp/golang-lru/v2): adding a key to a full scope evicts the least
// recently used window, and evictions are counted.
//
// # Why a map in front of the LRU
//
// An LRU must be told about every use to keep its order, and golang-lru's is one mutex:
// on the request path every goroutine would take the same lock. So each scope keeps a
// [sync.Map] of its windows in front of the LRU. A lookup of a known key is a lock-free
// map read (Go's sync.Map is a concurrent hash-trie since 1.24) and touches nothing else.
// The LRU is told about a use when a window moves to a new bucket, which is at most once
// per bucket width (one second by default) per busy window, and a new key takes the
// scope's mutex once. The LRU's order is therefore exact to one bucket width, which is
// all eviction needs. The benchmarks in registry_test.go compare this with taking the
// LRU lock on every lookup.
//
// Keys are bytes: any string is accepted. The empty key is a key like any other (the
// middleware does not record into a scope whose key is empty). A key longer than the
// maximum key length is replaced by [OverlongKey] and counted in [RegistryStats.Overlong].
// Keys that are not valid UTF-8 are kept as they are for lookup; [Window.Key] and
// [Registry.Keys] report them with invalid bytes replaced by U+FFFD, so exporters never
// see invalid UTF-8.
//
// A Registry is safe for concurrent use.
type Registry struct {
	clock     Clock
	def       WindowConfig
	configs   map[Scope]WindowConfig
	caps      map[Scope]int
	capacity  int
	maxKeyLen int
	maxScopes int

	mu     sync.Mutex                       // guards writes of scopes
	scopes atomic.Pointer[map[Scope]*table] // copy on write

	overlong       atomic.Uint64
	scopeOverflows atomic.Uint64
}

type table struct {
	r     *Registry
	scope Scope
	cfg   WindowConfig
	fast  sync.Map // string -> *Window

	mu        sync.Mutex
	lru       *simplelru.LRU[string, *Window]
	evictions atomic.Uint64

	// gen counts changes of membership (under mu); keys is the sorted key list, and the
	// windows in that order, as of a generation, so that Keys and Windows sort only
	// after a change (which drops it).
	gen  atomic.Uint64
	keys atomic.Pointer[keyList]
}

type keyList struct {
	gen     uint64
	keys    []string
	windows []*Window
}

// Option configures a [Registry].
type Option func(*Registry) error

// WithClock sets the clock the registry's windows read. The default is a new
// [SystemClock].
func WithClock(c Clock) Option {
	return func(r *Registry) error {
		if c == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidConfig)
		}
		r.clock = c
		return nil
	}
}

// WithWindow sets the shape of the windows of every scope without its own.
func WithWindow(cfg WindowConfig) Option {
	return func(r *Registry) error {
		if err := cfg.Validate(); err != nil {
			return err
		}
		r.def = cfg
		return nil
	}
}

// WithScopeWindow sets the shape of one scope's windows.
func WithScopeWindow(s Scope, cfg WindowConfig) Option {
	return func(r *Registry) error {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("scope %q: %w", s, err)
		}
		r.configs[s] = cfg
		return nil
	}
}

// WithCapacity sets how many windows a scope holds before it evicts, for every scope
// without its own. The default is [DefaultCapacity]; it must be at least 1.
func WithCapacity(n int) Option {
	return func(r *Registry) error {
		if n < 1 {
			return fmt.Errorf("%w: capacity %d is below 1", ErrInvalidConfig, n)
		}
		r.capacity = n
		return nil
	}
}

// WithScopeCapacity sets one scope's capacity.
func WithScopeCapacity(s Scope, n int) Option {
	return func(r *Registry) error {
		if n < 1 {
			return fmt.Errorf("%w: scope %q capacity %d is below 1", ErrInvalidConfig, s, n)
		}
		r.caps[s] = n
		return nil
	}
}

// WithMaxKeyLen sets the longest key kept as it is, in bytes; longer keys become
// [OverlongKey]. The default is [DefaultMaxKeyLen]; it must be at least
// len(OverlongKey).
func WithMaxKeyLen(n int) Option {
	return func(r *Registry) error {
		if n < len(OverlongKey) {
			return fmt.Errorf("%w: max key length %d is below %d", ErrInvalidConfig, n, len(OverlongKey))
		}
		r.maxKeyLen = n
		return nil
	}
}

// WithMaxScopes bounds how many scopes the registry holds (the scope map is copied
// when a scope is added, and each scope holds up to its capacity of windows); a
// window of a scope beyond it is made in [OverflowScope]. The default is
// [DefaultMaxScopes]; it must be at least 1.
func WithMaxScopes(n int) Option {
	return func(r *Registry) error {
		if n < 1 {
			return fmt.Errorf("%w: max scopes %d is below 1", ErrInvalidConfig, n)
		}
		r.maxScopes = n
		return nil
	}
}

// NewRegistry returns an empty registry. It reports every bad option at once.
func NewRegistry(opts ...Option) (*Registry, error) {
	r := &Registry{
		configs:   make(map[Scope]WindowConfig),
		caps:      make(map[Scope]int),
		capacity:  DefaultCapacity,
		maxKeyLen: DefaultMaxKeyLen,
		maxScopes: DefaultMaxScopes,
	}
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, fmt.Errorf("%w: nil option", ErrInvalidConfig))
			continue
		}
		if err := o(r); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if r.clock == nil {
		r.clock = NewSystemClock()
	}
	empty := map[Scope]*table{}
	r.scopes.Store(&empty)
	return r, nil
}

// Clock returns the registry's clock.
func (r *Registry) Clock() Clock { return r.clock }

// Window returns the window of (scope, key), making it if needed. The returned window
// may be held and recorded into; if the registry evicts it meanwhile, the next record
// that starts a bucket puts it back, unless another window has taken its key.
func (r *Registry) Window(scope Scope, key string) *Window {
	if len(key) > r.maxKeyLen {
		r.overlong.Add(1)
		key = OverlongKey
	}
	t := r.table(scope)
	if w, ok := t.fast.Load(key); ok {
		return w.(*Window)
	}
	return t.add(key)
}

// HasScope reports whether the registry holds the scope (it has made a window in it).
// It takes no lock.
func (r *Registry) HasScope(scope Scope) bool {
	_, ok := (*r.scopes.Load())[scope]
	return ok
}

// Lookup returns the window of (scope, key) if there is one.
func (r *Registry) Lookup(scope Scope, key string) (*Window, bool) {
	if len(key) > r.maxKeyLen {
		key = OverlongKey
	}
	m := *r.scopes.Load()
	t, ok := m[scope]
	if !ok {
		return nil, false
	}
	w, ok := t.fast.Load(key)
	if !ok {
		return nil, false
	}
	return w.(*Window), true
}

func (r *Registry) table(scope Scope) *table {
	if t, ok := (*r.scopes.Load())[scope]; ok {
		return t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.scopes.Load()
	if t, ok := old[scope]; ok {
		return t
	}
	if len(old) >= r.maxScopes && scope != OverflowScope {
		r.scopeOverflows.Add(1)
		if t, ok := old[OverflowScope]; ok {
			return t
		}
		scope = OverflowScope // held beyond the bound: one more table at most
	}
	capacity := r.capacity
	if c, ok := r.caps[scope]; ok {
		capacity = c
	}
	cfg := r.def
	if c, ok := r.configs[scope]; ok {
		cfg = c
	}
	t := &table{r: r, scope: scope, cfg: cfg}
	// The capacity was validated, so NewLRU cannot fail.
	t.lru, _ = simplelru.NewLRU(capacity, func(key string, _ *Window) {
		t.fast.Delete(key)
		t.evictions.Add(1)
		t.changed()
	})
	m := make(map[Scope]*table, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[scope] = t
	r.scopes.Store(&m)
	return t
}

func (t *table) add(key string) *Window {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w, ok := t.fast.Load(key); ok {
		return w.(*Window)
	}
	display := key
	if !utf8.ValidString(key) {
		display = string([]rune(key)) // invalid bytes become U+FFFD
	}
	w := newWindow(t.scope, display, t.cfg, t.r.clock)
	w.touch = func() { t.touch(key, w) }
	t.lru.Add(key, w)
	t.fast.Store(key, w)
	t.changed()
	return w
}

// changed notes a change of membership, under t.mu: the sorted list is out of date, and
// is dropped at once so that it holds no evicted window.
func (t *table) changed() {
	t.gen.Add(1)
	t.keys.Store(nil)
}

// touch marks key as used; if its window was evicted and its key is free, it comes back.
func (t *table) touch(key string, w *Window) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.lru.Get(key); ok {
		return
	}
	if _, taken := t.fast.LoadOrStore(key, w); !taken {
		t.lru.Add(key, w)
		t.changed()
	}
}

// Scopes returns the scopes that hold windows, sorted.
func (r *Registry) Scopes() []Scope {
	m := *r.scopes.Load()
	out := make([]Scope, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Keys returns the keys of a scope, sorted, in a slice the caller owns. The registry
// keeps the sorted list until the scope's membership changes, so listing a stable scope
// costs a copy, not a sort.
func (r *Registry) Keys(scope Scope) []string {
	if kl := r.sorted(scope); kl != nil {
		return slices.Clone(kl.keys)
	}
	return nil
}

// Windows yields the windows of a scope in the order of their keys, as of the call: a
// window registered or evicted meanwhile does not change what it yields. Like Keys, it
// sorts only after the scope's membership changed. It prefetches the lines a
// whole-window read of the next few windows will touch, so that a pass reading each
// window it yields waits on memory less (see warmPass).
func (r *Registry) Windows(scope Scope) iter.Seq[*Window] {
	kl := r.sorted(scope)
	return func(yield func(*Window) bool) {
		if kl == nil {
			return
		}
		for i, w := range kl.windows {
			warmPass(kl.windows, i)
			if !yield(w) {
				return
			}
		}
	}
}

// sorted returns the scope's sorted key list, or nil for a scope without windows.
func (r *Registry) sorted(scope Scope) *keyList {
	t, ok := (*r.scopes.Load())[scope]
	if !ok {
		return nil
	}
	gen := t.gen.Load()
	if kl := t.keys.Load(); kl != nil && kl.gen == gen {
		return kl
	}
	var ws []*Window
	t.fast.Range(func(_, v any) bool {
		ws = append(ws, v.(*Window))
		return true
	})
	slices.SortFunc(ws, func(a, b *Window) int { return strings.Compare(a.Key(), b.Key()) })
	kl := &keyList{gen: gen, keys: make([]string, len(ws)), windows: ws}
	for i, w := range ws {
		kl.keys[i] = w.Key()
	}
	t.keys.Store(kl)
	return kl
}

// Range calls f for each window of a scope, in no particular order, until f returns
// false. f runs outside the registry's locks and may record into windows.
func (r *Registry) Range(scope Scope, f func(w *Window) bool) {
	t, ok := (*r.scopes.Load())[scope]
	if !ok {
		return
	}
	t.fast.Range(func(_, v any) bool { return f(v.(*Window)) })
}

// RegistryStats counts what a registry did.
type RegistryStats struct {
	// Windows is the number of windows held, per scope.
	Windows map[Scope]int
	// Evictions is the number of windows evicted to make room, per scope.
	Evictions map[Scope]uint64
	// Overlong is the number of lookups whose key was longer than the maximum.
	Overlong uint64
	// ScopeOverflows is the number of lookups of a scope beyond the registry's
	// maximum number of scopes, answered from [OverflowScope].
	ScopeOverflows uint64
}

// Stats returns the registry's counts.
func (r *Registry) Stats() RegistryStats {
	st := RegistryStats{
		Windows:   map[Scope]int{},
		Evictions: map[Scope]uint64{},
		Overlong:  r.overlong.Load(),

		ScopeOverflows: r.scopeOverflows.Load(),
	}
	for s, t := range *r.scopes.Load() {
		t.mu.Lock()
		st.Windows[s] = t.lru.Len()
		t.mu.Unlock()
		st.Evictions[s] = t.evictions.Load()
	}
	return st
}
