package balancer

import (
	"math/bits"
	"sync/atomic"
)

type atomicInt64 = atomic.Int64

func mul64(a, b uint64) (hi, lo uint64) { return bits.Mul64(a, b) }

// mix64 is the SplitMix64 finalizer (Steele, Lea, Flood, "Fast splittable pseudorandom
// number generators", OOPSLA 2014): a bijection with full avalanche.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashString is 64-bit FNV-1a finished with mix64: stable across processes and
// versions (so gateway replicas agree on a key's place on the ring) and allocation-free.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

// fastmodM returns the multiplier with which fastmod computes a remainder by n > 0.
func fastmodM(n uint32) uint64 { return ^uint64(0)/uint64(n) + 1 }

// fastmod returns a % n for 32-bit a and n with two multiplications instead of a
// division (Lemire, Kaser, Kurz, "Faster Remainder by Direct Computation", 2019).
func fastmod(a uint32, m, n uint64) uint32 {
	hi, _ := bits.Mul64(m*uint64(a), n)
	return uint32(hi)
}
