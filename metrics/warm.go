package metrics

import (
	"math/bits"
	"unsafe"
)

// A whole-window read of a window that moved a bucket since the last read touches some
// twenty cache lines in a chain of dependent loads: the window, its ring and its read
// cache, the three newest buckets, their histogram pages. Past a few thousand windows
// none of them is in the caches when a tick reads the window again, and each link of
// the chain waits on memory in turn (BenchmarkScopeReadScale, luabind's
// BenchmarkOnTickScale). A pass over many windows (Registry.Windows) therefore walks
// the chain ahead of the reads, one link per window per step, with prefetches that
// neither wait nor read: when the pass reaches a window, its lines are on their way or
// in the caches, and a window's misses overlap those of the windows after it. With keys
// made in no order of their addresses it takes 18% off a read's CPU time at 10,000 and
// 100,000 windows (1.48 → 1.21 and 1.57 → 1.29 µs, benchstat of 6 interleaved runs on
// a loaded VM, BenchmarkScopeReadScale cpu-ns/key) and nothing at 1,000, whose lines the
// caches mostly hold.

// warmMin is the fewest windows a pass warms ahead for: below it the windows' lines
// mostly stay in the caches between ticks, and warming costs about 5% of a read's CPU
// where it saves nothing (1,000 windows made in key order, BenchmarkScopeReadScale).
// A variable so that a test can warm small passes.
var warmMin = 4096

// warmStages is how many windows ahead of the one being read a pass starts warming: one
// step per link of the chain warm follows.
const warmStages = 5

// warmPass warms the windows after ws[i] for a pass that is about to read ws[i]: it
// moves each of ws[i+1] to ws[i+warmStages] one link further along its chain. It does
// nothing for a pass over fewer than warmMin windows.
func warmPass(ws []*Window, i int) {
	if len(ws) < warmMin {
		return
	}
	for k := 1; k <= warmStages && i+k < len(ws); k++ {
		ws[i+k].warm(warmStages - k)
	}
}

// warm prefetches the lines of link stage (0 to warmStages-1) of the chain a
// whole-window read of w follows, for a read at the newest epoch a writer moved a
// bucket to; a stage reads only what earlier stages prefetched. It reads only atomic
// or immutable fields, so it may race with writers and readers, and it only prefetches:
// a wrong guess costs a few wasted loads, never a wrong result.
func (w *Window) warm(stage int) {
	if w.c != nil {
		if stage == 0 {
			w.warmHeader()
		}
		return
	}
	h := w.head.Load()
	switch stage {
	case 0:
		w.warmHeader()
	case 1:
		prefetch(unsafe.Pointer(&w.ring[(h-2)&w.mask]))
		prefetch(unsafe.Pointer(&w.ring[h&w.mask]))
		if c := w.cache.Load(); c != nil {
			c.warm(w, h)
		}
	case 2:
		for m := h - 2; m <= h; m++ {
			if b := w.ring[m&w.mask].Load(); b != nil {
				prefetch(unsafe.Pointer(b))
				prefetch(unsafe.Pointer(&b.inFlight0))
			}
		}
	case 3, 4:
		c := w.cache.Load()
		for m := h - 2; m <= h; m++ {
			b := w.ring[m&w.mask].Load()
			if b == nil {
				continue
			}
			u := b.used.Load()
			if u == 0 {
				continue
			}
			p := bits.TrailingZeros64(u)
			if stage == 3 {
				prefetch(unsafe.Pointer(&b.pages[p]))
				if c != nil && m == h-2 {
					prefetch(unsafe.Pointer(&c.hist.pages[p]))
					prefetch(unsafe.Pointer(&c.hist.stat[p]))
				}
				continue
			}
			if pg := b.pages[p].Load(); pg != nil {
				prefetch(unsafe.Pointer(pg))
				prefetch(unsafe.Pointer(&pg[subCount/2]))
			}
		}
	}
}

// warmHeader prefetches the window's own lines.
func (w *Window) warmHeader() {
	p := unsafe.Pointer(w)
	for off := uintptr(0); off < unsafe.Sizeof(*w); off += 64 {
		prefetch(unsafe.Add(p, off))
	}
}

// warm prefetches the lines of c a read at epoch h of w touches, but for the running
// histogram's pages and the maxima's deques, whose places only the reader knows: the
// header, the records of the bucket the read adds and of the one it gives back.
func (c *readCache) warm(w *Window, h int64) {
	p := unsafe.Pointer(c)
	for off := uintptr(0); off < unsafe.Offsetof(c.hist); off += 64 {
		prefetch(unsafe.Add(p, off))
	}
	prefetch(unsafe.Pointer(&c.hist.used))
	add := &c.rec[(h-2)&w.mask]
	prefetch(unsafe.Pointer(add))
	prefetch(unsafe.Add(unsafe.Pointer(add), 64))
	prefetch(unsafe.Pointer(&c.rec[(h-1-w.n)&w.mask]))
}
