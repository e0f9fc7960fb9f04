package metrics

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	lru "github.com/hashicorp/golang-lru/v2"
)

func newTestRegistry(t testing.TB, opts ...Option) (*Registry, *ManualClock) {
	t.Helper()
	clk := NewManualClock(t0)
	r, err := NewRegistry(append([]Option{WithClock(clk)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r, clk
}

func TestNewRegistryErrors(t *testing.T) {
	_, err := NewRegistry(WithCapacity(0), WithMaxKeyLen(2), WithClock(nil),
		WithScopeWindow(ScopeTenant, WindowConfig{Buckets: -3}), WithScopeCapacity(ScopeRoute, -1))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"capacity 0", "max key length 2", "nil clock", `scope "tenant"`, `scope "route" capacity -1`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}

func TestRegistryWindows(t *testing.T) {
	r, clk := newTestRegistry(t, WithScopeWindow(ScopeTenant, WindowConfig{Buckets: 10}))
	a := r.Window(ScopeRoute, "/a")
	if r.Window(ScopeRoute, "/a") != a {
		t.Fatal("second lookup made a new window")
	}
	if a.Scope() != ScopeRoute || a.Key() != "/a" || a.Config().Length() != time.Minute {
		t.Errorf("window %s/%s %v", a.Scope(), a.Key(), a.Config())
	}
	if got := r.Window(ScopeTenant, "acme").Config().Length(); got != 10*time.Second {
		t.Errorf("tenant window length %v, want 10s", got)
	}
	r.Window(ScopeRoute, "/b")
	if got := r.Keys(ScopeRoute); fmt.Sprint(got) != "[/a /b]" {
		t.Errorf("keys %v", got)
	}
	// The list is the caller's, and follows membership though the registry keeps it.
	r.Keys(ScopeRoute)[0] = "scribbled"
	r.Window(ScopeRoute, "/0")
	if got := r.Keys(ScopeRoute); fmt.Sprint(got) != "[/0 /a /b]" {
		t.Errorf("keys after an add %v", got)
	}
	if got := windowKeys(t, r, ScopeRoute); fmt.Sprint(got) != "[/0 /a /b]" {
		t.Errorf("windows after an add %v", got)
	}
	if got := windowKeys(t, r, ScopeModel); got != nil {
		t.Errorf("windows of an unknown scope %v", got)
	}
	if got := r.Keys(ScopeModel); got != nil {
		t.Errorf("keys of an unknown scope %v", got)
	}
	if got := r.Scopes(); fmt.Sprint(got) != "[route tenant]" {
		t.Errorf("scopes %v", got)
	}
	if _, ok := r.Lookup(ScopeRoute, "/c"); ok {
		t.Error("lookup of an unknown key found one")
	}
	if _, ok := r.Lookup(ScopeModel, "x"); ok {
		t.Error("lookup in an unknown scope found one")
	}
	a.RecordAt(clk.Now(), Observation{Latency: time.Millisecond})
	if w, ok := r.Lookup(ScopeRoute, "/a"); !ok || w.SnapshotAt(clk.Now(), 0).Count != 1 {
		t.Error("lookup did not return the recorded window")
	}
}

func TestRegistryBadKeys(t *testing.T) {
	r, _ := newTestRegistry(t, WithCapacity(100))
	huge := strings.Repeat("x", 1<<20)
	tests := []struct {
		name, key, display string
	}{
		{"empty", "", ""},
		{"1 MiB", huge, OverlongKey},
		{"just over", strings.Repeat("y", DefaultMaxKeyLen+1), OverlongKey},
		{"at the limit", strings.Repeat("z", DefaultMaxKeyLen), strings.Repeat("z", DefaultMaxKeyLen)},
		{"invalid UTF-8", "acme\xff\xfe", "acme\uFFFD\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := r.Window(ScopeTenant, tt.key)
			if w.Key() != tt.display {
				t.Errorf("key %q, want %q", w.Key(), tt.display)
			}
			if !utf8.ValidString(w.Key()) {
				t.Errorf("key %q is not valid UTF-8", w.Key())
			}
		})
	}
	if got := r.Stats().Overlong; got != 2 {
		t.Errorf("overlong %d, want 2", got)
	}
}

func TestRegistryBounded(t *testing.T) {
	const capacity = 1000
	r, clk := newTestRegistry(t, WithScopeCapacity(ScopeTenant, capacity))
	hot := r.Window(ScopeTenant, "hot")
	for i := range 200_000 {
		if i%500 == 0 {
			// The hot tenant records into a new bucket every second, which keeps it
			// recent in the LRU while 200,000 one-off tenants stream past.
			clk.Advance(time.Second)
			hot.RecordAt(clk.Now(), Observation{})
		}
		r.Window(ScopeTenant, fmt.Sprintf("tenant-%d", i)).RecordAt(clk.Now(), Observation{})
	}
	st := r.Stats()
	if st.Windows[ScopeTenant] != capacity {
		t.Errorf("%d windows, want %d", st.Windows[ScopeTenant], capacity)
	}
	if want := uint64(200_001 - capacity); st.Evictions[ScopeTenant] != want {
		t.Errorf("%d evictions, want %d", st.Evictions[ScopeTenant], want)
	}
	if n := len(r.Keys(ScopeTenant)); n != capacity {
		t.Errorf("%d keys listed, want %d", n, capacity)
	}
	if w, ok := r.Lookup(ScopeTenant, "hot"); !ok || w != hot {
		t.Error("the hot tenant was evicted")
	}
}

// TestRegistryScopesBounded: 20,000 scopes made one request at a time (a script's
// observe("lat:"..path, ...)) stop growing the registry at its bound; the rest land
// in OverflowScope, bounded by its LRU, and are counted.
func TestRegistryScopesBounded(t *testing.T) {
	const maxScopes, capacity = 64, 100
	r, clk := newTestRegistry(t, WithMaxScopes(maxScopes), WithCapacity(capacity))
	for i := range 20_000 {
		r.Window(Scope(fmt.Sprintf("lat:/p%d", i)), "k").RecordAt(clk.Now(), Observation{Value: 1})
	}
	st := r.Stats()
	if got := len(r.Scopes()); got != maxScopes+1 {
		t.Errorf("%d scopes, want %d and the overflow scope", got, maxScopes)
	}
	if got := st.ScopeOverflows; got != 20_000-maxScopes {
		t.Errorf("%d overflows, want %d", got, 20_000-maxScopes)
	}
	if got := st.Windows[OverflowScope]; got != 1 {
		t.Errorf("overflow scope holds %d windows, want 1 (key k)", got)
	}
	// A scope made before the bound was reached keeps working.
	if !r.HasScope("lat:/p0") || r.HasScope("lat:/p19999") {
		t.Error("HasScope disagrees with the bound")
	}
	if _, err := NewRegistry(WithMaxScopes(0)); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("WithMaxScopes(0): %v", err)
	}
}

func TestRegistryEvictedHandleComesBack(t *testing.T) {
	r, clk := newTestRegistry(t, WithCapacity(1))
	a := r.Window(ScopeBackend, "a")
	if got := r.Keys(ScopeBackend); fmt.Sprint(got) != "[a]" {
		t.Errorf("keys %v", got)
	}
	r.Window(ScopeBackend, "b") // evicts a
	if _, ok := r.Lookup(ScopeBackend, "a"); ok {
		t.Fatal("a was not evicted")
	}
	if kl := (*r.scopes.Load())[ScopeBackend].keys.Load(); kl != nil {
		t.Errorf("the sorted list still holds %v after a change", kl.keys)
	}
	if got := r.Keys(ScopeBackend); fmt.Sprint(got) != "[b]" {
		t.Errorf("keys after an eviction %v", got)
	}
	if got := windowKeys(t, r, ScopeBackend); fmt.Sprint(got) != "[b]" {
		t.Errorf("windows after an eviction %v", got)
	}
	r.Lookup(ScopeBackend, "b")
	clk.Advance(time.Second)
	a.RecordAt(clk.Now(), Observation{}) // a new bucket: a comes back, b goes
	if w, ok := r.Lookup(ScopeBackend, "a"); !ok || w != a {
		t.Error("a held window recording again did not come back")
	}
	if _, ok := r.Lookup(ScopeBackend, "b"); ok {
		t.Error("b is still there past capacity")
	}
	if got := r.Keys(ScopeBackend); fmt.Sprint(got) != "[a]" {
		t.Errorf("keys after a came back %v", got)
	}
	if got := windowKeys(t, r, ScopeBackend); fmt.Sprint(got) != "[a]" {
		t.Errorf("windows after a came back %v", got)
	}
}

// windowKeys returns the keys of the windows Registry.Windows yields, checking that
// each is the window Lookup finds under its key.
func windowKeys(t *testing.T, r *Registry, scope Scope) []string {
	t.Helper()
	var keys []string
	for w := range r.Windows(scope) {
		if l, ok := r.Lookup(scope, w.Key()); !ok || l != w {
			t.Errorf("Windows yielded %s/%s, which Lookup does not find", scope, w.Key())
		}
		keys = append(keys, w.Key())
	}
	return keys
}

func TestRegistryConcurrent(t *testing.T) {
	r, clk := newTestRegistry(t, WithCapacity(50))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				w := r.Window(ScopeRoute, fmt.Sprintf("/r%d", (i*7+g)%80))
				w.StartAt(clk.Now())
				w.DoneAt(clk.Now(), Observation{Latency: time.Millisecond})
				if i%100 == 0 {
					clk.Advance(time.Second)
					r.Keys(ScopeRoute)
					r.Stats()
				}
			}
		})
	}
	wg.Wait()
	if n := r.Stats().Windows[ScopeRoute]; n > 50 {
		t.Errorf("%d windows over capacity 50", n)
	}
}

// Lookup of a known key: ours (sync.Map in front of the LRU) against golang-lru's locked
// cache, which takes its mutex on every Get.
func BenchmarkRegistryLookup(b *testing.B) {
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("/route/%d", i)
	}
	b.Run("registry", func(b *testing.B) {
		r, _ := newTestRegistry(b)
		for _, k := range keys {
			r.Window(ScopeRoute, k)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				r.Window(ScopeRoute, keys[i%len(keys)])
				i++
			}
		})
	})
	b.Run("lru-locked", func(b *testing.B) {
		c, _ := lru.New[string, *Window](1024)
		for _, k := range keys {
			c.Add(k, &Window{})
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c.Get(keys[i%len(keys)])
				i++
			}
		})
	})
}
