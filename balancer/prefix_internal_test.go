package balancer

import (
	"hash/maphash"
	"strings"
	"testing"
)

func TestBlockHashes(t *testing.T) {
	seed := maphash.MakeSeed()
	var a, b [MaxPrefixBlocks]uint64
	p := strings.Repeat("0123456789abcdef", 16) // 256 bytes
	if n := blockHashes(seed, p, 64, 128, &a); n != 4 {
		t.Fatalf("%d blocks of 256 bytes by 64, want 4", n)
	}
	// A partial block is not hashed.
	if n := blockHashes(seed, p[:100], 64, 128, &a); n != 1 {
		t.Fatalf("%d blocks of 100 bytes by 64, want 1", n)
	}
	if n := blockHashes(seed, "", 64, 128, &a); n != 0 {
		t.Fatalf("empty prompt: %d blocks", n)
	}
	// A huge prompt is cut at maxBlocks, and at MaxPrefixBlocks whatever maxBlocks.
	huge := strings.Repeat("x", 4<<20)
	if n := blockHashes(seed, huge, 64, 100, &a); n != 100 {
		t.Fatalf("huge prompt: %d blocks, want 100", n)
	}
	if n := blockHashes(seed, huge, 1, 1<<30, &a); n != MaxPrefixBlocks {
		t.Fatalf("huge prompt, no cap: %d blocks, want %d", n, MaxPrefixBlocks)
	}
	// Chained: equal blocks at different places hash differently, and prompts that
	// differ in block 1 share block 0's hash only.
	blockHashes(seed, huge[:256], 64, 4, &a)
	if a[0] == a[1] || a[1] == a[2] {
		t.Fatal("equal blocks at different places hash alike")
	}
	q := p[:64] + strings.Repeat("z", 64) + p[128:]
	blockHashes(seed, p, 64, 4, &a)
	blockHashes(seed, q, 64, 4, &b)
	if a[0] != b[0] || a[1] == b[1] || a[2] == b[2] || a[3] == b[3] {
		t.Fatalf("chain: %x vs %x", a[:4], b[:4])
	}
}

func TestPrefixSetMatch(t *testing.T) {
	s := newPrefixSet(1000)
	if len(s.slots) != 1024 {
		t.Fatalf("%d slots, want 1024", len(s.slots))
	}
	hs := []uint64{11, 12, 13, 14, 15, 16, 17, 18}
	if s.match(hs) != 0 || s.match(nil) != 0 {
		t.Fatal("empty set matches")
	}
	s.add(hs[:5])
	for n := 1; n <= len(hs); n++ {
		if got, want := s.match(hs[:n]), min(n, 5); got != want {
			t.Fatalf("match of %d blocks = %d, want %d", n, got, want)
		}
	}
	if s.match([]uint64{99, 11}) != 0 {
		t.Fatal("a prompt whose first block is unknown matched")
	}
	// Of two blocks of one prompt in one slot, the leading one keeps it.
	s.add([]uint64{21, 21 + 1024})
	if !s.has(21) || s.has(21+1024) {
		t.Fatal("a later block of a prompt took its first block's slot")
	}
	// A newer hash in the same slot evicts the older one.
	s.add([]uint64{11 + 1024})
	if s.has(11) || !s.has(11+1024) {
		t.Fatal("slot not replaced")
	}
}
