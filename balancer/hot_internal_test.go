package balancer

import (
	"testing"
	"unsafe"
)

// TestHotIsOneLine checks that a backend's hot state is 64 bytes, so that Go allocates
// it from the 64-byte size class, whose slots are whole, aligned cache lines.
func TestHotIsOneLine(t *testing.T) {
	if got := unsafe.Sizeof(hot{}); got != 64 {
		t.Fatalf("hot is %d bytes, want 64", got)
	}
}

// TestHotAligned checks that the pool's backends' hot states sit each at the start of
// a cache line, and that a set's hot array matches its backends.
func TestHotAligned(t *testing.T) {
	p, err := New(WithAlgorithm(&P2C{}))
	if err != nil {
		t.Fatal(err)
	}
	var eps []Endpoint
	for i := range 100 {
		eps = append(eps, Endpoint{ID: string(rune('a'+i/26)) + string(rune('a'+i%26)), URL: "http://127.0.0.1:1"})
	}
	if err := p.Update(eps); err != nil {
		t.Fatal(err)
	}
	set := p.snap.Load().set
	if len(set.hot) != len(set.backends) {
		t.Fatalf("%d hot states for %d backends", len(set.hot), len(set.backends))
	}
	for i, b := range set.backends {
		if set.hot[i] != b.h {
			t.Fatalf("hot[%d] is not backend %s's", i, b.id)
		}
		if a := uintptr(unsafe.Pointer(b.h)); a%64 != 0 {
			t.Fatalf("backend %s's hot state at %#x, not on a 64-byte boundary", b.id, a)
		}
	}
}
