package balancer

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFastmod(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []uint32{1, 2, 3, 7, 1000, 65536, 1<<31 - 1, math.MaxUint32} {
		m := fastmodM(n)
		for _, a := range []uint32{0, 1, n - 1, n, n + 1, math.MaxUint32, r.Uint32(), r.Uint32()} {
			if got, want := fastmod(a, m, uint64(n)), a%n; got != want {
				t.Fatalf("fastmod(%d, %d) = %d, want %d", a, n, got, want)
			}
		}
	}
}
