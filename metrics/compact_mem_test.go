package metrics

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// fillBusy makes n busy keys in r's tenant scope: each takes ten requests in every
// second of a minute, with latencies over ten octaves (0.5 ms to 0.5 s), bytes and a
// user value, one of them in flight as the middleware records it, and is then read,
// so that whatever a reader keeps counts too.
func fillBusy(r *Registry, clk *ManualClock, n int) {
	end := clk.Now().Add(59 * time.Second)
	for i := range n {
		w := r.Window(ScopeTenant, "tenant-"+strconv.Itoa(i))
		for s := range 60 {
			at := clk.Now().Add(time.Duration(s) * time.Second)
			w.StartAt(at)
			for j := range 10 {
				o := Observation{Latency: time.Duration(500+j*37) * time.Microsecond << j, Bytes: 800, Value: 120}
				if j == 0 {
					w.DoneAt(at, o)
				} else {
					w.RecordAt(at, o)
				}
			}
		}
		if s := w.SnapshotAt(end, 0); s.Count != 600 {
			panic("a busy key lost requests")
		}
	}
}

// bytesPerBusyKey measures the heap a registry holds per busy key of shape cfg.
func bytesPerBusyKey(t *testing.T, cfg WindowConfig, n int) float64 {
	t.Helper()
	before := heapInUse()
	clk := NewManualClock(t0)
	r, err := NewRegistry(WithClock(clk), WithScopeWindow(ScopeTenant, cfg), WithScopeCapacity(ScopeTenant, n))
	if err != nil {
		t.Fatal(err)
	}
	fillBusy(r, clk, n)
	after := heapInUse()
	runtime.KeepAlive(r)
	return float64(after-before) / float64(n)
}

// TestCompactMemory measures what a busy key costs in a registry, default and compact,
// and the heap of a registry of 100,000 busy compact tenants (2,000 under the race
// detector, which slows the filling tenfold).
func TestCompactMemory(t *testing.T) {
	def := bytesPerBusyKey(t, WindowConfig{}, 200)
	compact := bytesPerBusyKey(t, WindowConfig{Compact: true}, 2000)
	t.Logf("bytes per busy key: default %.0f, compact %.0f", def, compact)
	if compact > 8<<10 {
		t.Errorf("a busy compact key costs %.0f bytes, more than 8 KiB", compact)
	}

	tenants := 100_000
	if raceEnabled {
		tenants = 2_000
	}
	before := heapInUse()
	clk := NewManualClock(t0)
	r, err := NewRegistry(WithClock(clk), WithScopeWindow(ScopeTenant, WindowConfig{Compact: true}), WithScopeCapacity(ScopeTenant, tenants))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fillBusy(r, clk, tenants)
	heap := heapInUse() - before
	runtime.KeepAlive(r)
	t.Logf("%d busy compact tenants: heap %.1f MiB (%.0f bytes each), filled in %v", tenants, float64(heap)/(1<<20), float64(heap)/float64(tenants), time.Since(start).Round(time.Millisecond))
	if limit := uint64(tenants) * (1 << 30) / 100_000; heap > limit {
		t.Errorf("%d busy tenants hold %d MiB, more than %d MiB", tenants, heap>>20, limit>>20)
	}
}

// TestCompactDistinctKeysBounded sends 10,000,000 distinct keys (200,000 under the
// race detector) through a compact scope of capacity 1,000: the heap stays that of
// its capacity.
func TestCompactDistinctKeysBounded(t *testing.T) {
	const capacity = 1_000
	keys := 10_000_000
	if raceEnabled {
		keys = 200_000
	}
	before := heapInUse()
	clk := NewManualClock(t0)
	r, err := NewRegistry(WithClock(clk), WithScopeWindow(ScopeTenant, WindowConfig{Compact: true}), WithScopeCapacity(ScopeTenant, capacity))
	if err != nil {
		t.Fatal(err)
	}
	// Distinct keys arrive concurrently, as requests do.
	start := time.Now()
	var wg sync.WaitGroup
	procs := runtime.GOMAXPROCS(0)
	for g := range procs {
		wg.Go(func() {
			buf := make([]byte, 0, 32)
			now := clk.Now()
			for i := g; i < keys; i += procs {
				buf = strconv.AppendInt(append(buf[:0], "key-"...), int64(i), 10)
				r.Window(ScopeTenant, string(buf)).RecordAt(now, Observation{Latency: time.Millisecond})
			}
		})
	}
	wg.Wait()
	took := time.Since(start) // about 3 µs a key, most of it the LRU, sync.Map and GC
	heap := heapInUse() - before
	st := r.Stats()
	runtime.KeepAlive(r)
	t.Logf("%d distinct keys in %v: %d windows held, %d evicted, heap %.1f MiB", keys, took.Round(time.Millisecond), st.Windows[ScopeTenant], st.Evictions[ScopeTenant], float64(heap)/(1<<20))
	// A window evicted before its first record comes back with it (see Registry.Window)
	// and evicts another, so there are a few more evictions than keys beyond capacity.
	if st.Windows[ScopeTenant] != capacity || st.Evictions[ScopeTenant] < uint64(keys-capacity) {
		t.Errorf("windows %d evictions %d, want %d and at least %d", st.Windows[ScopeTenant], st.Evictions[ScopeTenant], capacity, keys-capacity)
	}
	if limit := uint64(capacity * 8 << 10); heap > limit {
		t.Errorf("heap %d MiB after %d keys, more than %d MiB for %d windows", heap>>20, keys, limit>>20, capacity)
	}
}

// BenchmarkRegistryNewKey is the cost of a key the registry has not seen, which evicts
// another: what a flood of distinct keys costs per request.
func BenchmarkRegistryNewKey(b *testing.B) {
	for _, tt := range []struct {
		name string
		cfg  WindowConfig
	}{{"default", WindowConfig{}}, {"compact", WindowConfig{Compact: true}}} {
		b.Run(tt.name, func(b *testing.B) {
			clk := NewManualClock(t0)
			r, err := NewRegistry(WithClock(clk), WithScopeWindow(ScopeTenant, tt.cfg), WithScopeCapacity(ScopeTenant, 10_000))
			if err != nil {
				b.Fatal(err)
			}
			now := clk.Now()
			buf := make([]byte, 0, 32)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				buf = strconv.AppendInt(append(buf[:0], "key-"...), int64(i), 10)
				r.Window(ScopeTenant, string(buf)).RecordAt(now, Observation{Latency: time.Millisecond})
			}
		})
	}
}
