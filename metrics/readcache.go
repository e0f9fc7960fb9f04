package metrics

import (
	"math"
	"math/bits"
)

// Why it stays, now that a tick's autoscale.Snapshot reads each window once a tick: the
// loop reads every window again each tick, one bucket later, and a whole-window read
// without these totals merges every bucket's histogram (BenchmarkSnapshotNaive: 18 µs
// for 60 buckets, so 18 ms for 1,000 windows, against the 1 ms a loop's on_tick over
// 1,000 windows must stay under; BenchmarkOnTick1000Windows/.../reader=registry/moving
// and BenchmarkSnapshotWholeWindow measure it with the totals). The invariant it guards:
// the totals equal the sum of the buckets they cover. Its cost on the write path is
// one atomic load per record (checkSealed reads Window.sealed, on the cache line the
// writer already reads for the ring), which BenchmarkRecordAt includes.
//
// readCache is a reader's running totals of a window's completed buckets older than the
// last one: epochs n-Buckets to n-2 for a read at epoch n. With it a whole-window read
// sums those totals with the two newest buckets, read as they are, rather than walking
// the ring; moving it forward by a bucket adds the bucket that completed and subtracts
// the one that left, from a record of what was added (see slotRec), so that the bucket,
// cold by then, is not read again.
//
// The totals stay exact (the user values' sum up to rounding: see addValue): before it
// sums an epoch the reader seals it ([Window.sealed]), and a writer that then writes to
// a sealed epoch counts a late write ([Window.checkSealed]), which makes the next read
// rebuild the totals from the ring. Writers reach a sealed epoch only when they record
// more than a bucket's width in the past. Counts are subtracted exactly; the latency
// sums kept for the mean are float and drift by rounding only, well inside the
// histogram's own error.
type readCache struct {
	ok     bool
	lo, hi int64  // epochs covered, inclusive
	late   uint64 // the window's late writes when the totals were checked

	// Per ring slot: the epoch summed from it and what was added.
	rec []slotRec

	count, errors, canceled, rejected, bytes uint64
	maxLat, maxInFlight                      maxDeque

	// The covered user values' sum, compensated (see addValue), and the number of
	// covered slots whose value is not finite: while there are some, the sum is taken
	// by a walk, as a NaN or an infinity once subtracted would stay.
	valSum, valComp float64
	nonFinite       int

	// The integral of requests in flight over the covered buckets is fixedArea plus
	// trailing × Width × (the number in flight when bucket hi+1 began): the trailing
	// buckets are the newest covered ones without a bucket in the ring, whose
	// in-flight count is that of the next bucket with events.
	fixedArea, trailing int64

	hist walkHist // the covered buckets
}

func newReadCache(ringLen int64) *readCache {
	c := &readCache{
		rec:         make([]slotRec, ringLen),
		maxLat:      newMaxDeque(ringLen),
		maxInFlight: newMaxDeque(ringLen),
	}
	c.clear()
	return c
}

func (c *readCache) clear() {
	for i := range c.rec {
		c.rec[i].epoch = -1
	}
	c.count, c.errors, c.canceled, c.rejected, c.bytes = 0, 0, 0, 0, 0
	c.valSum, c.valComp, c.nonFinite = 0, 0, 0
	c.maxLat.clear()
	c.maxInFlight.clear()
	c.fixedArea, c.trailing = 0, 0
	c.hist.Histogram.Reset()
	c.hist.stat = [numPages]pageStat{}
	c.hist.used = 0
}

// sync moves the totals to cover epochs n-Buckets to n-2, and reports whether they do.
func (c *readCache) sync(w *Window, n int64) bool {
	lo, hi := n-w.n, n-2
	late := w.lateWrites.Load()
	if c.ok && late == c.late && c.lo == lo && c.hi == hi {
		return true
	}
	if c.ok && late == c.late && c.lo <= lo && c.hi <= hi && c.hi >= lo-1 {
		for m := c.lo; m < lo; m++ {
			if !c.sub(w, m) {
				c.ok = false
				break
			}
		}
	} else {
		c.ok = false
	}
	if w.sealed.Load() < hi {
		w.sealed.Store(hi) // only readers store, and they hold w.mu
	}
	start := max(c.hi+1, lo)
	if !c.ok {
		c.clear()
		start = lo
	}
	c.lo, c.hi, c.late = lo, start-1, late
	for m := start; m <= hi; m++ {
		if !c.add(w, m) {
			c.ok = false
			return false
		}
	}
	c.ok = true
	c.maxLat.expire(lo)
	c.maxInFlight.expire(lo)
	return true
}

// add sums epoch m = c.hi+1 into the totals; false when its bucket changed epoch while
// being read.
func (c *readCache) add(w *Window, m int64) bool {
	c.hi = m
	r := &c.rec[m&w.mask]
	b := w.bucketFor(m)
	if b == nil {
		r.epoch = -1
		c.trailing++
		return true
	}
	ce := b.countErr.Load()
	// A bucket's requests fit in 32 bits (see bucket.countErr), and those canceled
	// or rejected are among them.
	r.count, r.errors = uint32(ce), uint32(ce>>32)
	r.canceled, r.rejected, r.bytes = uint32(b.canceled.Load()), uint32(b.rejected.Load()), b.bytes.Load()
	c.count += uint64(r.count)
	c.errors += uint64(r.errors)
	c.canceled += uint64(r.canceled)
	c.rejected += uint64(r.rejected)
	c.bytes += r.bytes
	r.value = math.Float64frombits(b.value.Load())
	c.addValue(r.value, 1)
	c.maxLat.push(m, b.maxLatency.Load())
	c.maxInFlight.push(m, b.maxInFlight.Load())
	r.histN = uint32(c.hist.add(b, r))

	f := b.inFlight0.Load()
	for j := m - c.trailing; j < m; j++ {
		c.rec[j&w.mask].contrib = f * w.width
	}
	r.contrib = max(f*w.width+b.area.Load(), 0)
	c.fixedArea += c.trailing*f*w.width + r.contrib
	c.trailing = 0
	r.epoch = m
	return b.epoch.Load() == uint64(m)+1
}

// sub takes epoch m = c.lo out of the totals, as its record says it was added (a
// write since would have made the totals rebuild); false when its histogram was too
// varied to record and its bucket, read again, can no longer be (it was reused, or
// differs from what was added): the totals must then be rebuilt.
func (c *readCache) sub(w *Window, m int64) bool {
	c.lo = m + 1
	r := &c.rec[m&w.mask]
	if r.epoch != m {
		if c.trailing == c.hi-m+1 { // every covered bucket is trailing
			c.trailing--
		} else {
			c.fixedArea -= r.contrib
		}
		return true
	}
	r.epoch = -1
	if r.nent >= 0 {
		c.hist.subRec(r)
	} else if b := w.bucketFor(m); b == nil || c.hist.sub(b) != uint64(r.histN) || b.epoch.Load() != uint64(m)+1 {
		return false
	}
	c.count -= uint64(r.count)
	c.errors -= uint64(r.errors)
	c.canceled -= uint64(r.canceled)
	c.rejected -= uint64(r.rejected)
	c.bytes -= r.bytes
	c.addValue(-r.value, -1)
	c.fixedArea -= r.contrib
	return true
}

// slotRec records what the totals took from one ring slot, so that they can give it
// back without reading the bucket again: the epoch summed from the slot (-1: none), its
// counts, user value and share of the concurrency integral, and its histogram as up to
// slotEntries non-empty sub-buckets (a bucket whose latencies are more varied than that
// is read again). It is two cache lines, the first holding all a give-back reads of a
// bucket with one latency sub-bucket.
type slotRec struct {
	epoch                             int64
	nent                              int32  // entries in ent; -1: too many
	histN                             uint32 // observations added to the histogram
	count, errors, canceled, rejected uint32
	bytes                             uint64
	contrib                           int64
	value                             float64
	ent                               [slotEntries]uint64
	_                                 [8]byte
}

// slotEntries makes a slotRec two cache lines. An entry is a sub-bucket's index
// (page<<subBits | sub) in the high 32 bits and its observations in the low 32.
const slotEntries = 8

// totals returns the covered buckets' sums and maxima.
func (c *readCache) totals(w *Window) totals {
	t := totals{
		count: c.count, errors: c.errors, canceled: c.canceled, rejected: c.rejected, bytes: c.bytes,
		maxLat: c.maxLat.max(), maxInFlight: c.maxInFlight.max(),
	}
	if c.nonFinite == 0 {
		t.value = c.valSum + c.valComp
		return t
	}
	for m := c.lo; m <= c.hi; m++ {
		if r := &c.rec[m&w.mask]; r.epoch == m {
			t.value += r.value
		}
	}
	return t
}

// addValue adds v, a slot's user value given (dir 1) or taken back (dir -1), to the
// running sum, with Neumaier's compensation: what each addition rounds away is kept
// in valComp, so that taking back a large value does not lose the small ones added
// after it. A value that is not finite is counted instead.
func (c *readCache) addValue(v float64, dir int) {
	switch {
	case v == 0:
	case math.IsNaN(v) || math.IsInf(v, 0):
		c.nonFinite += dir
	default:
		t := c.valSum + v
		if math.Abs(c.valSum) >= math.Abs(v) {
			c.valComp += (c.valSum - t) + v
		} else {
			c.valComp += (v - t) + c.valSum
		}
		c.valSum = t
	}
}

// maxDeque is the maximum of a sliding run of epochs' values: a monotonic deque (values
// decreasing from the front), so that moving the run costs O(1) amortized and touches a
// line or two, where rescanning it would touch every slot. Its length is the ring's, a
// power of two, so that a position is an AND rather than a division.
type maxDeque struct {
	ent     []epochVal
	head, n int
}

type epochVal struct{ epoch, val int64 }

// newMaxDeque returns a deque of size entries, a power of two.
func newMaxDeque(size int64) maxDeque { return maxDeque{ent: make([]epochVal, size)} }

func (d *maxDeque) clear() { d.head, d.n = 0, 0 }

// push adds epoch m's value v; m is newer than every epoch in d.
func (d *maxDeque) push(m, v int64) {
	mask := len(d.ent) - 1
	for d.n > 0 && d.ent[(d.head+d.n-1)&mask].val <= v {
		d.n--
	}
	d.ent[(d.head+d.n)&mask] = epochVal{m, v}
	d.n++
}

// expire drops the epochs before lo.
func (d *maxDeque) expire(lo int64) {
	mask := len(d.ent) - 1
	for d.n > 0 && d.ent[d.head].epoch < lo {
		d.head = (d.head + 1) & mask
		d.n--
	}
}

func (d *maxDeque) max() int64 {
	if d.n == 0 {
		return 0
	}
	return d.ent[d.head].val
}

// walkHist is a Histogram with each page's count and sum of midpoints, so that a
// quantile walk skips the pages the quantile does not fall in and the mean needs no walk,
// and a mask of the pages in use, so that nothing reads the others.
type walkHist struct {
	Histogram
	stat [numPages]pageStat
	used uint64 // bit p set: stat[p].n > 0
}

// pageStat is a histogram page's observations and the sum of their midpoints.
type pageStat struct {
	n   uint64
	sum float64
}

// reset empties h, zeroing only the pages in use.
func (h *walkHist) reset() {
	for u := h.used; u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		*h.pages[p] = [subCount]uint64{}
		h.stat[p] = pageStat{}
	}
	h.count, h.used = 0, 0
}

// add adds b's latency histogram to h and returns how many observations it added; with
// a record r, it also notes b's non-empty sub-buckets there (see slotRec).
func (h *walkHist) add(b *bucket, r *slotRec) uint64 {
	if r != nil {
		r.nent = 0
	}
	var total uint64
	for u := b.used.Load(); u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		pg := b.pages[p].Load()
		hp := h.page(p)  // used: it holds observations (but for a racing clear)
		var n, ns uint64 // observations, and their sub-bucket indexes summed
		for g := 0; g < subCount; g += pageGroup {
			if pg.groupEmpty(g) {
				continue
			}
			for s := g; s < g+pageGroup; s++ {
				c := uint64(pg[s].Load())
				if c == 0 {
					continue
				}
				hp[s] += c
				n += c
				ns += c * uint64(s)
				switch {
				case r == nil:
				case r.nent == slotEntries:
					r.nent = -1
				case r.nent >= 0:
					r.ent[r.nent] = uint64(p<<subBits|s)<<32 | c
					r.nent++
				}
			}
		}
		if n != 0 {
			h.stat[p].n += n
			h.stat[p].sum += midSum(p, n, ns)
			h.used |= 1 << p
			total += n
		}
	}
	h.count += total
	return total
}

// sub takes b's latency histogram out of h and returns how many observations it took.
func (h *walkHist) sub(b *bucket) uint64 {
	var total uint64
	for u := b.used.Load(); u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		pg := b.pages[p].Load()
		hp := h.pages[p]
		if hp == nil {
			return math.MaxUint64 // never added
		}
		var n, ns uint64
		for s := range pg {
			c := uint64(pg[s].Load())
			hp[s] -= c
			n += c
			ns += c * uint64(s)
		}
		st := &h.stat[p]
		st.n -= n
		st.sum -= midSum(p, n, ns)
		if st.n == 0 {
			h.used &^= 1 << p
			st.sum = 0
		}
		total += n
	}
	h.count -= total
	return total
}

// subRec takes out of h the sub-buckets r recorded.
func (h *walkHist) subRec(r *slotRec) {
	for _, e := range r.ent[:r.nent] {
		idx, c := int(e>>32), e&math.MaxUint32
		p, s := idx>>subBits, idx&(subCount-1)
		h.pages[p][s] -= c
		st := &h.stat[p]
		st.n -= c
		st.sum -= float64(c) * float64(bucketMid(p, s))
		if st.n == 0 {
			h.used &^= 1 << p
			st.sum = 0
		}
		h.count -= c
	}
}

// liveBuckets are the buckets a read takes as they are, not through running totals:
// their pages' counts and midpoint sums, and the buckets themselves, whose sub-buckets a
// quantile walk reads in place for the pages it descends into. Writers racing the read
// can make those differ from the counts by the writes they add meanwhile.
type liveBuckets struct {
	b     [2]*bucket
	nb    int
	stat  [numPages]pageStat
	used  uint64
	count uint64
}

func (l *liveBuckets) add(b *bucket) {
	for u := b.used.Load(); u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		n, ns := b.pages[p].Load().sums()
		if n != 0 {
			l.stat[p].n += n
			l.stat[p].sum += midSum(p, n, ns)
			l.used |= 1 << p
			l.count += n
		}
	}
	l.b[l.nb] = b
	l.nb++
}

// addPage adds the live buckets' sub-buckets of page p to pg.
func (l *liveBuckets) addPage(p int, pg *[subCount]uint64) {
	for _, b := range l.b[:l.nb] {
		if b.used.Load()&(1<<p) == 0 {
			continue
		}
		lp := b.pages[p].Load()
		for g := 0; g < subCount; g += pageGroup {
			if lp.groupEmpty(g) {
				continue
			}
			for s := g; s < g+pageGroup; s++ {
				pg[s] += uint64(lp[s].Load())
			}
		}
	}
}

// pageGroup is how many sub-buckets a scan of a page tests for zero at once: a
// bucket's page mostly holds a few non-empty sub-buckets, and testing them four at a
// time takes the scans (walkHist.add, liveBuckets.add) from 32 branches a page to 8
// (BenchmarkSnapshot1000Windows/moving, where they were a third of a read). groupEmpty
// and sums are unrolled for four; a page's 32 sub-buckets are whole groups.
const pageGroup = 4

// groupEmpty reports whether sub-buckets g to g+pageGroup-1 of pg are all zero.
func (pg *atomicPage) groupEmpty(g int) bool {
	return pg[g].Load()|pg[g+1].Load()|pg[g+2].Load()|pg[g+3].Load() == 0
}

// sums returns pg's observations and their sub-bucket indexes summed.
func (pg *atomicPage) sums() (n, ns uint64) {
	for g := 0; g < subCount; g += pageGroup {
		c0, c1, c2, c3 := uint64(pg[g].Load()), uint64(pg[g+1].Load()), uint64(pg[g+2].Load()), uint64(pg[g+3].Load())
		if c := c0 + c1 + c2 + c3; c != 0 {
			n += c
			ns += c*uint64(g) + c1 + 2*c2 + 3*c3
		}
	}
	return n, ns
}

// midSum returns the sum of the midpoints of n observations in page p whose sub-bucket
// indexes sum to ns: within a page the midpoint is linear in the index (see bucketMid).
func midSum(p int, n, ns uint64) float64 {
	base := bucketMid(p, 0)
	step := bucketMid(p, 1) - base
	return float64(n)*float64(base) + float64(ns)*float64(step)
}
