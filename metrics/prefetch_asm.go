//go:build amd64 || arm64

package metrics

import "unsafe"

// prefetch asks the processor to bring the cache line holding p into its caches, without
// waiting for it and without reading it (so it is no access in the memory model, and
// never faults). It is one instruction: PREFETCHT0 on amd64, PRFM PLDL1KEEP on arm64.
//
//go:noescape
func prefetch(p unsafe.Pointer)
