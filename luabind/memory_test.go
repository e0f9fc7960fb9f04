package luabind_test

import (
	"context"
	"math"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/luabind"
)

// peakHeap runs f while sampling the live heap every 200 µs and returns the
// highest sample above the heap before f (after a GC).
func peakHeap(f func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			if h := read(); h > peak {
				peak = h
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	if h := read(); h > peak {
		peak = h
	}
	if peak < base {
		return 0
	}
	return peak - base
}

// TestHeapPerCallIsBounded measures the heap one hostile call builds at the default
// limits (50 ms budget, MaxStringLen 1 MiB, MaxCallBytes 32 MiB). What the library
// functions build is bounded by MaxCallBytes whatever the budget; what .. and table
// stores build is bounded by the budget alone, and this test measures it: the
// figures are REFERENCE.md's worst-case heap per VM.
func TestHeapPerCallIsBounded(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		body string
		max  uint64 // bytes the call may leave live, at most
	}{
		// The library's strings, kept: MaxCallBytes (32 MiB), plus the garbage of
		// their builders' growth not yet collected (up to as much again) and inputs.
		{"rep kept in a table", `local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 1048576) end`, 80 * mib},
		{"gsub kept in a table", `local s, t = string.rep("x", 1048575), {} for i = 1, 1e9 do t[i] = s:gsub("x", "y") end`, 80 * mib},
		{"format kept in a table", `local s, t = string.rep("x", 1048575), {} for i = 1, 1e9 do t[i] = string.format("%s.", s) end`, 80 * mib},
		{"concat kept in a table", `local s, t = {string.rep("x", 524288), string.rep("y", 524288)}, {} for i = 1, 1e9 do t[i] = table.concat(s) end`, 80 * mib},
		// Bounded by the budget alone: what 50 ms of Lua can allocate.
		{"string doubling", `local s = "x" while true do s = s .. s end`, 1024 * mib},
		{"strings grown and kept", `local t, s = {}, string.rep("x", 1048576) for i = 1, 1e9 do t[i] = s .. i end`, 1024 * mib},
		{"table grown", `local t, i = {}, 0 while true do i = i + 1 t[i] = i end`, 1024 * mib},
		{"tables of tables", `local t, i = {}, 0 while true do i = i + 1 t[i] = {i, i, i, i} end`, 1024 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newRT(t, "function on_request(req)\n"+tt.body+"\nend")
			var err error
			peak := peakHeap(func() {
				_, err = rt.OnRequest(context.Background(), &luabind.Request{Path: "/"})
			})
			if err == nil {
				t.Fatal("the hostile call succeeded")
			}
			t.Logf("peak live heap %.1f MiB (%v)", float64(peak)/mib, err)
			if peak > tt.max {
				t.Errorf("peak live heap %.1f MiB, more than %.0f MiB", float64(peak)/mib, float64(tt.max)/mib)
			}
		})
	}
}

// TestOneLineCannotFillTheHeap: a store far past a table's end made gopher-lua fill
// the gap with nils inside one Go call (`t[67108863] = 1`: 5.9 GiB allocated, 3.5 s
// and more past a 30 ms budget), and print copied a whole string before truncating
// it. Each line below now costs about what it stores.
func TestOneLineCannotFillTheHeap(t *testing.T) {
	const budget = 30 * time.Millisecond
	tests := []struct {
		name, body string
		maxAlloc   uint64 // bytes allocated by the whole call
	}{
		{"store far past the end", `local t = {} t[67108863] = 1 t[2^40] = 1 t[65536] = 1`, 4 << 20},
		{"insert far past the end", `local t = {} table.insert(t, 67108863, 1)`, 4 << 20},
		{"store at the array part's limit", `local t = {} t[65535] = 1`, 8 << 20},
		// s is 16 MiB (built with .., 32 MiB allocated); print copies 4 KiB of it.
		{"print of a long string", `local s = "x" for i = 1, 24 do s = s .. s end print(s, s)`, 40 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := budget
			if strings.HasPrefix(tt.name, "print") || strings.HasPrefix(tt.name, "store at") {
				b = 5 * time.Second // building s is not what is measured
			}
			rt := newRT(t, "function on_request(req)\n"+tt.body+"\nend", luabind.WithLimits(luabind.Limits{RequestBudget: b}))
			best, bestAlloc := time.Hour, uint64(math.MaxUint64)
			for i := range 3 {
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				start := time.Now()
				_, err := rt.OnRequest(context.Background(), &luabind.Request{Path: "/"})
				took := time.Since(start)
				runtime.ReadMemStats(&m1)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				best, bestAlloc = min(best, took), min(bestAlloc, m1.TotalAlloc-m0.TotalAlloc)
			}
			if best > b+20*time.Millisecond {
				t.Errorf("the fastest of 3 calls took %v, more than the budget %v + 20ms", best, b)
			}
			if bestAlloc > tt.maxAlloc {
				t.Errorf("the call allocated %d MiB, want at most %d MiB", bestAlloc>>20, tt.maxAlloc>>20)
			}
			t.Logf("fastest %v, allocated %.1f MiB", best, float64(bestAlloc)/(1<<20))
		})
	}
}
