package metrics

import (
	"math"
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"
)

// A compact window ([WindowConfig.Compact]) keeps each bucket's counters as a default
// window does, in a ring of one-line buckets allocated four at a time (so that a key
// seen once costs one chunk, not the ring), and its latencies in histograms that are
// coarser in value and in time:
//
//   - in value, an octave has compactSubs sub-buckets instead of 32, each a run of two to
//     five of the full histogram's sub-buckets (narrower at the bottom of the octave,
//     where a sub-bucket is widest relative to its values), and it reports the midpoint
//     of one of them, chosen to make the worst relative error [CompactRelativeError];
//   - in time, one histogram serves [WindowConfig.HistogramBuckets] consecutive buckets
//     (a group), so quantiles, the mean and the maximum latency cover every group the
//     span overlaps: up to one group's width more than the span, the oldest part.
//
// Because a compact sub-bucket reports a full sub-bucket's midpoint, a compact
// histogram adds into a [Histogram] without further error ([Window.HistogramAt]), and
// replicas' compact windows merge exactly (package metrics/redisshare).
const compactSubs = 10

// CompactRelativeError is the largest relative error of a quantile, the mean or
// a merged [Histogram] read from a compact window's latencies of 32 ns or more (below,
// within 3 ns): 3/68, reached by a value at the bottom of an octave.
const CompactRelativeError = 3.0 / 68

// compactOf maps a full sub-bucket to the compact sub-bucket holding it; compactRep
// maps a compact sub-bucket to the full sub-bucket whose midpoint it reports. The runs
// are the partition of the octave into compactSubs runs that minimizes the worst
// relative error (found by dynamic programming; TestCompactBuckets checks the bound).
var (
	compactOf  = [subCount]uint8{0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 8, 9, 9, 9, 9, 9}
	compactRep = [compactSubs]uint8{0, 3, 6, 9, 12, 15, 18, 21, 24, 29}
)

// compactGroupBits is how many low bits of compactRing.head hold a group's slot:
// enough for MaxBuckets+1 slots.
const compactGroupBits = 12

// compactRing is the storage of a compact window.
type compactRing struct {
	g int64 // buckets per group (per histogram)
	h int64 // histogram slots: enough for a whole-window read, ceil(Buckets/g)+1
	// head is the newest group a writer claimed << compactGroupBits | its slot, so that
	// a write in it finds its slot without a division.
	head   atomic.Uint64
	chunks []atomic.Pointer[cchunk] // the window's ring, chunkLen buckets a chunk
	groups []cgroup                 // h slots
	pages  [numPages]atomic.Pointer[cpage]
}

// chunkLen is how many buckets a chunk of a compact window's ring holds.
const chunkLen = 4

type cchunk [chunkLen]cbucket

// cbucket is a compact window's bucket: the counters of a default bucket, without the
// latency histogram and maximum, which its group holds. Eight words, one cache line.
type cbucket struct {
	epoch       atomic.Uint64 // as bucket.epoch
	countErr    atomic.Uint64 // as bucket.countErr
	canRej      atomic.Uint64 // canceled in the low 32 bits, rejected in the high 32: both among countErr's requests, so below 2^32 (see MaxWidth) and the low half never carries
	bytes       atomic.Uint64
	value       atomic.Uint64 // float64 bits
	area        atomic.Int64  // as bucket.area
	inFlight0   atomic.Int64
	maxInFlight atomic.Int64
}

// cgroup is the header of one histogram slot.
type cgroup struct {
	epoch  atomic.Uint64 // group number + 1; resetting while being cleared
	used   atomic.Uint64 // bit p set: the page p of this slot holds observations
	maxLat atomic.Int64
}

// cpage is one octave of every histogram slot: h × compactSubs counters, slot-major.
// A counter counts at most what a group's buckets count: below 2^32, as Validate keeps
// a group within MaxWidth.
type cpage struct{ c []atomic.Uint32 }

// defaultHistogramBuckets is the default group: a quarter of the window, so a compact
// window has five histogram slots, and at most MaxWidth wide.
func defaultHistogramBuckets(c WindowConfig) int {
	return max(1, min((c.Buckets+3)/4, int(MaxWidth/c.Width)))
}

// compactInline is room, in a compact window's own allocation, for the chunk pointers
// and histogram slots of a window of the default shape (64 ring slots, 5 slots), so
// that a new key makes three allocations fewer; larger windows make their own.
type compactInline struct {
	chunks [64 / chunkLen]atomic.Pointer[cchunk]
	groups [5]cgroup
}

func (c *compactRing) init(cfg WindowConfig, ringLen int64, in *compactInline) {
	c.g = int64(cfg.HistogramBuckets)
	c.h = (int64(cfg.Buckets)+c.g-1)/c.g + 1
	if nc := (ringLen + chunkLen - 1) / chunkLen; nc <= int64(len(in.chunks)) {
		c.chunks = in.chunks[:nc]
	} else {
		c.chunks = make([]atomic.Pointer[cchunk], nc)
	}
	if c.h <= int64(len(in.groups)) {
		c.groups = in.groups[:c.h]
	} else {
		c.groups = make([]cgroup, c.h)
	}
}

// newPage returns an empty page; for five slots, the default shape's, in one
// allocation with its counters.
func (c *compactRing) newPage() *cpage {
	if c.h == 5 {
		pg := new(struct {
			cpage
			a [5 * compactSubs]atomic.Uint32
		})
		pg.c = pg.a[:]
		return &pg.cpage
	}
	return &cpage{c: make([]atomic.Uint32, c.h*compactSubs)}
}

// group returns the slot of epoch n's group, claiming it if needed, or -1 when the
// slot already serves a later group.
func (c *compactRing) group(n int64) int {
	hd := c.head.Load()
	g, slot := int64(hd>>compactGroupBits), int(hd&(1<<compactGroupBits-1))
	if d := n - g*c.g; d < 0 || d >= c.g {
		g = n / c.g
		slot = int(g % c.h)
	}
	want := uint64(g) + 1
	gr := &c.groups[slot]
	for {
		e := gr.epoch.Load()
		switch {
		case e == want:
			return slot
		case e&resetting != 0:
			runtime.Gosched() // the claimer clears a few pages
		case e > want:
			return -1
		case gr.epoch.CompareAndSwap(e, want|resetting):
			for u := gr.used.Load(); u != 0; u &= u - 1 {
				pg := c.pages[bits.TrailingZeros64(u)].Load()
				for i := range compactSubs {
					pg.c[slot*compactSubs+i].Store(0)
				}
			}
			gr.used.Store(0)
			gr.maxLat.Store(0)
			gr.epoch.Store(want)
			for nh := uint64(g)<<compactGroupBits | uint64(slot); ; {
				old := c.head.Load()
				if nh <= old || c.head.CompareAndSwap(old, nh) {
					break
				}
			}
			return slot
		}
	}
}

// bucketAt is Window.bucketAt for a compact window.
func (c *compactRing) bucketAt(w *Window, n int64) *cbucket {
	i := uint64(n & w.mask)
	ch := c.chunks[i/chunkLen].Load()
	if ch == nil {
		ch = new(cchunk)
		if !c.chunks[i/chunkLen].CompareAndSwap(nil, ch) {
			ch = c.chunks[i/chunkLen].Load()
		}
	}
	b := &ch[i%chunkLen]
	want := uint64(n) + 1
	for {
		e := b.epoch.Load()
		switch {
		case e == want:
			return b
		case e&resetting != 0:
			runtime.Gosched()
		case e > want:
			return nil
		case b.epoch.CompareAndSwap(e, want|resetting):
			b.countErr.Store(0)
			b.canRej.Store(0)
			b.bytes.Store(0)
			b.value.Store(0)
			b.area.Store(0)
			b.maxInFlight.Store(0)
			b.inFlight0.Store(w.inFlight.Load())
			b.epoch.Store(want)
			storeMax(&w.head, int64(want)-1)
			if w.touch != nil {
				w.touch()
			}
			return b
		}
	}
}

// bucketFor is Window.bucketFor for a compact window.
func (c *compactRing) bucketFor(w *Window, n int64) *cbucket {
	if n < 0 {
		return nil
	}
	i := uint64(n & w.mask)
	ch := c.chunks[i/chunkLen].Load()
	if ch == nil {
		return nil
	}
	b := &ch[i%chunkLen]
	if b.epoch.Load() != uint64(n)+1 {
		return nil
	}
	return b
}

// at returns epoch n's bucket and group slot for a write, or nil when either already
// serves a later epoch.
func (c *compactRing) at(w *Window, n int64) (*cbucket, int) {
	slot := c.group(n)
	if slot < 0 {
		return nil, 0
	}
	return c.bucketAt(w, n), slot
}

func (c *compactRing) page(p int) *cpage {
	if pg := c.pages[p].Load(); pg != nil {
		return pg
	}
	pg := c.newPage()
	if c.pages[p].CompareAndSwap(nil, pg) {
		return pg
	}
	return c.pages[p].Load()
}

func (c *compactRing) record(b *cbucket, slot int, o Observation) {
	inc := uint64(1)
	switch o.Outcome {
	case OutcomeError:
		inc |= 1 << 32
	case OutcomeCanceled:
		b.canRej.Add(1)
	case OutcomeRejected:
		b.canRej.Add(1 << 32)
		b.countErr.Add(inc)
		return
	}
	b.countErr.Add(inc)
	lat := max(int64(o.Latency), 0)
	p, s := bucketOf(lat)
	c.page(p).c[slot*compactSubs+int(compactOf[s])].Add(1)
	gr := &c.groups[slot]
	if bit := uint64(1) << p; gr.used.Load()&bit == 0 {
		gr.used.Or(bit)
	}
	if lat > gr.maxLat.Load() {
		storeMax(&gr.maxLat, lat)
	}
	if o.Bytes > 0 {
		b.bytes.Add(uint64(o.Bytes))
	}
	if o.Value != 0 {
		addFloat(&b.value, o.Value)
	}
}

func (c *compactRing) recordAt(w *Window, ns int64, o Observation) {
	b, slot := c.at(w, w.epochAt(ns))
	if b == nil {
		w.late.Add(1)
		return
	}
	c.record(b, slot, o)
}

func (c *compactRing) startAt(w *Window, ns int64) {
	n := w.epochAt(ns)
	b, _ := c.at(w, n)
	v := w.inFlight.Add(1)
	if b == nil {
		return
	}
	b.area.Add((n+1)*w.width - ns)
	if v > b.maxInFlight.Load() {
		storeMax(&b.maxInFlight, v)
	}
}

func (c *compactRing) doneAt(w *Window, ns int64, o Observation) {
	n := w.epochAt(ns)
	b, slot := c.at(w, n)
	w.inFlight.Add(-1)
	if b == nil {
		w.late.Add(1)
		return
	}
	b.area.Add(ns - (n+1)*w.width)
	c.record(b, slot, o)
}

func (t *totals) addCompact(b *cbucket) {
	ce, cr := b.countErr.Load(), b.canRej.Load()
	t.count += ce & math.MaxUint32
	t.errors += ce >> 32
	t.canceled += cr & math.MaxUint32
	t.rejected += cr >> 32
	t.bytes += b.bytes.Load()
	t.value += math.Float64frombits(b.value.Load())
	t.maxInFlight = max(t.maxInFlight, b.maxInFlight.Load())
}

// compactHist is the sum of a compact window's histograms over a run of groups.
type compactHist struct {
	cnt   [numPages][compactSubs]uint64
	used  uint64
	count uint64
	max   int64
}

// gather sums into ch the histograms of the groups that epochs lo to n overlap.
func (c *compactRing) gather(lo, n int64, ch *compactHist) {
	for g := max(lo, 0) / c.g; g <= n/c.g; g++ {
		slot := int(g % c.h)
		gr := &c.groups[slot]
		if gr.epoch.Load() != uint64(g)+1 {
			continue
		}
		u := gr.used.Load()
		ch.used |= u
		ch.max = max(ch.max, gr.maxLat.Load())
		for ; u != 0; u &= u - 1 {
			p := bits.TrailingZeros64(u)
			cs := c.pages[p].Load().c[slot*compactSubs : (slot+1)*compactSubs]
			for k := range cs {
				v := uint64(cs[k].Load())
				ch.cnt[p][k] += v
				ch.count += v
			}
		}
	}
}

// latency fills s's mean and quantiles from ch, as Histogram.Quantiles and
// Histogram.Mean would from the Histogram that ch adds to (see addTo).
func (ch *compactHist) latency(s *Snapshot) {
	if ch.count == 0 {
		return
	}
	qs := [...]float64{0.5, 0.9, 0.99}
	var out [len(qs)]time.Duration
	i := 0
	rank := nearestRank(qs[0], ch.count)
	var cum uint64
	var sum float64
	for u := ch.used; u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		for k, n := range ch.cnt[p] {
			if n == 0 {
				continue
			}
			mid := bucketMid(p, int(compactRep[k]))
			sum += float64(n) * float64(mid)
			cum += n
			for i < len(qs) && cum >= rank {
				out[i] = time.Duration(min(mid, ch.max))
				if i++; i < len(qs) {
					rank = nearestRank(qs[i], ch.count)
				}
			}
		}
	}
	for ; i < len(qs); i++ {
		out[i] = time.Duration(ch.max)
	}
	s.P50, s.P90, s.P99 = out[0], out[1], out[2]
	s.Mean = min(time.Duration(math.Round(sum/float64(ch.count))), time.Duration(ch.max))
	s.Max = time.Duration(ch.max)
}

// addTo adds ch to h, each compact sub-bucket into the full sub-bucket it reports.
func (ch *compactHist) addTo(h *Histogram) {
	for u := ch.used; u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		for k, n := range ch.cnt[p] {
			if n != 0 {
				h.page(p)[compactRep[k]] += n
				h.count += n
			}
		}
	}
	h.max = max(h.max, ch.max)
}

// snapshot fills s for a read of epochs lo to n of a compact window, the newest
// covered for elapsed nanoseconds, and returns the integral of requests in flight.
func (c *compactRing) snapshot(w *Window, lo, n, elapsed int64, s *Snapshot) int64 {
	var t totals
	for m := lo; m <= n; m++ {
		if b := c.bucketFor(w, m); b != nil {
			t.addCompact(b)
		}
	}
	var ch compactHist
	c.gather(lo, n, &ch)
	ch.latency(s)
	s.Count, s.Errors, s.Canceled, s.Rejected = t.count, t.errors, t.canceled, t.rejected
	s.Bytes, s.Value = t.bytes, t.value
	s.MaxInFlight = t.maxInFlight
	area, _ := w.area(n, lo, elapsed, s.InFlight)
	return area
}
