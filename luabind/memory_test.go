package luabind_test

import (
	"context"
	"runtime"
	"runtime/metrics"
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
