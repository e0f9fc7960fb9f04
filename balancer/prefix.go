package balancer

import (
	"hash/maphash"
	"math/bits"
	"sync/atomic"
)

// Prefix affinity: a prompt's leading blocks are hashed in a chain, and each backend
// keeps a bounded set of the block hashes it was recently sent, so that a picker can
// tell how long a prefix of a new prompt a backend has probably cached.
//
// The chain is vLLM's automatic prefix caching scheme (the hash of block i covers
// block i and the hash of block i-1, so equal hashes mean equal prefixes, not just
// equal blocks), over bytes of the prompt rather than tokens, as the Gateway API
// inference extension's prefix-cache scorer does (it hashes fixed-size character
// blocks and keeps, per server, an LRU of the hashes it routed there). Only whole
// blocks are hashed, as a model server caches only whole blocks.

const (
	// DefaultBlockSize is the prefix block size in bytes: about 16 tokens of English.
	DefaultBlockSize = 64
	// DefaultMaxBlocks is the number of a prompt's leading blocks hashed by default.
	DefaultMaxBlocks = 128
	// MaxPrefixBlocks is the largest MaxBlocks: a pick hashes at most this many
	// blocks of a prompt, into an array on its stack.
	MaxPrefixBlocks = 256
	// DefaultPrefixEntries is the size of each backend's set of recent block hashes.
	DefaultPrefixEntries = 2048
	// maxPrefixEntries bounds PrefixEntries: 8 MiB per backend.
	maxPrefixEntries = 1 << 20
)

// blockHashes hashes prompt's leading whole blocks of size bytes
// into out, and returns how many (at most maxBlocks). A hash is never 0, which marks an empty slot.
func blockHashes(seed maphash.Seed, prompt string, size, maxBlocks int, out *[MaxPrefixBlocks]uint64) int {
	n := min(len(prompt)/size, maxBlocks, MaxPrefixBlocks)
	var prev uint64
	for i := range n {
		h := maphash.String(seed, prompt[i*size:(i+1)*size])
		prev = mix64(h ^ (prev + 0x9e3779b97f4a7c15))
		if prev == 0 {
			prev = 1
		}
		out[i] = prev
	}
	return n
}

// prefixSet is a backend's set of recently served block hashes: a direct-mapped table
// of atomics, in which a hash lives in the slot its low bits name until a newer hash
// takes the slot. It approximates an LRU of the table's size (a hash added m additions
// ago survives with probability about (1-1/size)^m, and a prefix that keeps being
// served keeps being rewritten), with one atomic load per lookup and at most one
// atomic store per addition: no lock, no allocation, no pointer chasing. An LRU list
// (golang-lru/v2) would be exact but takes a lock on every lookup, which a pick makes
// for each candidate backend from every request's goroutine.
//
// A prefixSet is safe for concurrent use; racing additions to one slot keep one of
// them, which is all a cache of hints needs.
type prefixSet struct {
	slots []atomic.Uint64
	mask  uint64
}

// newPrefixSet returns a set of entries rounded up to a power of two.
func newPrefixSet(entries int) *prefixSet {
	n := 1 << bits.Len(uint(max(entries, 2)-1))
	return &prefixSet{slots: make([]atomic.Uint64, n), mask: uint64(n - 1)}
}

func (s *prefixSet) has(h uint64) bool { return s.slots[h&s.mask].Load() == h }

// add stores hs, last block first, so that when two of a prompt's blocks share a
// slot the leading one (shared by more prompts, and needed by every match) keeps it.
// It skips the slots that hold their hash already, so that a hot prefix served from
// many goroutines reads its cache lines rather than bouncing them between cores.
func (s *prefixSet) add(hs []uint64) {
	for i := len(hs) - 1; i >= 0; i-- {
		h := hs[i]
		if sl := &s.slots[h&s.mask]; sl.Load() != h {
			sl.Store(h)
		}
	}
}

// match returns how many of hs's leading blocks the set holds: the longest cached
// prefix, found by binary search on the assumption that a set holding block i holds
// the blocks before it (true of additions, which add whole prefixes; an eviction in
// the middle of a prefix can make the answer shorter or longer by the evicted part).
// A backend without the first block costs one load.
func (s *prefixSet) match(hs []uint64) int {
	if len(hs) == 0 || !s.has(hs[0]) {
		return 0
	}
	lo, hi := 1, len(hs) // hs[lo-1] is held; the answer is in [lo, hi]
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if s.has(hs[mid-1]) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}
