package metrics

import (
	"math"
	"math/bits"
	"time"
)

// Snapshot is an immutable summary of a window over a span of time. Quantiles and the
// mean come from the log-linear histogram and are within [HistogramRelativeError] of the
// exact figures; Max is exact. In a compact window ([WindowConfig.Compact]) they are
// within [CompactRelativeError] and, with Max, cover the span rounded out to whole
// histograms.
type Snapshot struct {
	// Span is the time the figures cover: the span asked for, or less when the window
	// is younger than that.
	Span time.Duration
	// Count is the number of requests that ended in the span; Errors, Canceled and
	// Rejected are those among them with [OutcomeError], [OutcomeCanceled] and
	// [OutcomeRejected].
	Count, Errors, Canceled, Rejected uint64
	// Rate is Count per second of Span: the rate of demand, rejected requests included.
	Rate float64
	// ErrorRate is Errors over the requests not rejected, or 0 without any.
	ErrorRate float64
	// Latency statistics of the requests that ended in the span, rejected ones excepted.
	Mean, P50, P90, P99, Max time.Duration
	// Bytes is the sum of the observations' bytes.
	Bytes uint64
	// Value is the sum of the observations' user values.
	Value float64
	// InFlight is the number of requests in flight now.
	InFlight int64
	// MaxInFlight is the largest number of requests in flight at once in the span.
	MaxInFlight int64
	// Concurrency is the time-weighted average of requests in flight over the span: the
	// quantity Knative's autoscaler scales on.
	Concurrency float64
}

// Snapshot summarizes the last span of the window at the clock's current time. A span
// of zero or longer than the window means the whole window. See [Window.SnapshotAt].
func (w *Window) Snapshot(span time.Duration) Snapshot {
	return w.SnapshotAt(w.clock.Now(), span)
}

// SnapshotAt summarizes the span of the window ending at now. The span is rounded up to
// whole buckets: it covers the ceil(span/Width) completed buckets before the one holding
// now, and that one up to now, so between span and span+Width of time ([Snapshot.Span]
// says how much), and a read on a bucket boundary still covers the whole span.
//
// A whole-window read of a window of three or more buckets costs about as much as
// reading three buckets, whatever the window's length: the reader keeps running totals
// of the buckets older than the last completed one (see readCache).
func (w *Window) SnapshotAt(now time.Time, span time.Duration) Snapshot {
	return w.snapshot(now, span, true)
}

// snapshot is SnapshotAt; without cached, a whole-window read walks the ring.
func (w *Window) snapshot(now time.Time, span time.Duration, cached bool) Snapshot {
	ns := now.UnixNano()
	n := w.epochOf(ns)
	k := w.n
	if span > 0 {
		k = min(max((int64(span)+w.width-1)/w.width, 1), w.n)
	}
	elapsed := ns - n*w.width
	dur := k*w.width + elapsed
	if age := ns - w.created; dur > age {
		dur = max(age, 0)
	}

	var s Snapshot
	s.Span = time.Duration(dur)
	s.InFlight = w.inFlight.Load()
	if w.c != nil {
		area := w.c.snapshot(w, n-k, n, elapsed, &s)
		s.MaxInFlight = max(s.MaxInFlight, s.InFlight)
		rates(&s, dur, area)
		return s
	}
	var t totals
	var area int64
	w.mu.Lock()
	if k != w.n || !cached || !w.wholeLocked(n, elapsed, s.InFlight, &t, &area, &s) {
		if w.scratch == nil {
			w.scratch = new(walkHist)
		}
		h := w.scratch
		h.reset()
		for m := n - k; m <= n; m++ {
			if b := w.bucketFor(m); b != nil {
				t.add(b)
				h.add(b, nil)
			}
		}
		area, _ = w.area(n, n-k, elapsed, s.InFlight)
		latency(&s, h, nil, t.maxLat)
	}
	w.mu.Unlock()

	s.Count, s.Errors, s.Canceled, s.Rejected = t.count, t.errors, t.canceled, t.rejected
	s.Bytes, s.Value, s.Max = t.bytes, t.value, time.Duration(t.maxLat)
	s.MaxInFlight = max(t.maxInFlight, s.InFlight)
	rates(&s, dur, area)
	return s
}

// rates fills s's rates from its counts, the span's dur nanoseconds and the integral
// of requests in flight over it.
func rates(s *Snapshot, dur, area int64) {
	if dur > 0 {
		s.Rate = float64(s.Count) / (float64(dur) / float64(time.Second))
		s.Concurrency = float64(area) / float64(dur)
	}
	if served := s.Count - s.Rejected; served > 0 {
		s.ErrorRate = float64(s.Errors) / float64(served)
	}
}

// wholeLocked fills t, area and s's latency statistics for a whole-window read from the
// running totals of the completed buckets before epoch n-1, and from buckets n-1 and n
// read now. It returns false when the totals could not be brought up to date (writers
// keep overwriting the ring faster than the read), and the caller reads the ring.
func (w *Window) wholeLocked(n, elapsed, inFlightNow int64, t *totals, area *int64, s *Snapshot) bool {
	if w.n < 3 {
		return false
	}
	c := w.readCacheLocked()
	if !c.sync(w, n) {
		return false
	}
	*t = c.totals(w)
	var live liveBuckets
	for m := n - 1; m <= n; m++ {
		if b := w.bucketFor(m); b != nil {
			t.add(b)
			live.add(b)
		}
	}
	a, cur := w.area(n, n-1, elapsed, inFlightNow)
	*area = a + c.fixedArea + c.trailing*w.width*cur
	latency(s, &c.hist, &live, t.maxLat)
	return true
}

// readCacheLocked returns the window's read cache, making it on the first read; the
// caller holds w.mu.
func (w *Window) readCacheLocked() *readCache {
	c := w.cache.Load()
	if c == nil {
		c = newReadCache(w.ringLen)
		w.cache.Store(c)
	}
	return c
}

// totals are the scalar sums and maxima of a run of buckets.
type totals struct {
	count, errors, canceled, rejected, bytes uint64
	value                                    float64
	maxLat, maxInFlight                      int64
}

func (t *totals) add(b *bucket) {
	ce := b.countErr.Load()
	t.count += ce & math.MaxUint32
	t.errors += ce >> 32
	t.canceled += b.canceled.Load()
	t.rejected += b.rejected.Load()
	t.bytes += b.bytes.Load()
	t.value += math.Float64frombits(b.value.Load())
	t.maxLat = max(t.maxLat, b.maxLatency.Load())
	t.maxInFlight = max(t.maxInFlight, b.maxInFlight.Load())
}

// area returns the integral of in-flight requests, in request-nanoseconds, over the
// buckets from epoch n, covered for elapsed nanoseconds, back to epoch lo, and the
// number in flight at the start of bucket lo.
//
// Over a whole bucket that began with f requests in flight, every start at offset t adds
// (W - t) request-nanoseconds and every end subtracts as much, so the integral is
// f·W + area. A bucket without events had a constant number in flight: the number the
// next bucket with events began with, or the current number when none did; hence the
// walk from the newest bucket back.
func (w *Window) area(n, lo, elapsed, inFlightNow int64) (total, cur int64) {
	cur = inFlightNow
	for m := n; m >= lo; m-- {
		length := w.width
		if m == n {
			length = elapsed
		}
		f, ba, ok := w.flightAt(m)
		if !ok {
			total += cur * length
			continue
		}
		a := f*length + ba
		if m == n {
			// Starts and ends so far were counted up to the bucket's end; take back
			// the part after now.
			a -= (inFlightNow - f) * (w.width - elapsed)
		}
		total += max(a, 0)
		cur = f
	}
	return total, cur
}

// flightAt returns the requests in flight when epoch m's bucket began and its area,
// or false when no bucket holds m.
func (w *Window) flightAt(m int64) (f, area int64, ok bool) {
	if w.c != nil {
		if b := w.c.bucketFor(w, m); b != nil {
			return b.inFlight0.Load(), b.area.Load(), true
		}
		return 0, 0, false
	}
	if b := w.bucketFor(m); b != nil {
		return b.inFlight0.Load(), b.area.Load(), true
	}
	return 0, 0, false
}

// latency fills s's mean and quantiles from the sum of base and live (nil: none),
// capped at maxLat; it skips the pages the quantiles do not fall in. A page it descends
// into is first summed into one plain array (base's page copied, the live buckets'
// added), so that the walk is a branch-free run of additions rather than three
// nil-checked reads per sub-bucket (the walk was a fifth of
// BenchmarkSnapshot1000Windows/moving).
func latency(s *Snapshot, base *walkHist, live *liveBuckets, maxLat int64) {
	if live == nil {
		live = &liveBuckets{}
	}
	total := base.count + live.count
	if total == 0 {
		return
	}
	qs := [...]float64{0.5, 0.9, 0.99}
	var ranks [len(qs)]uint64
	for i, q := range qs {
		ranks[i] = nearestRank(q, total)
	}
	var out [len(qs)]time.Duration
	i := 0
	var cum uint64
	var sum float64
	var pg [subCount]uint64
	for u := base.used | live.used; u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		pc := base.stat[p].n + live.stat[p].n
		sum += base.stat[p].sum + live.stat[p].sum
		end := cum + pc
		if i == len(qs) || end < ranks[i] {
			cum = end
			continue
		}
		if bp := base.pages[p]; bp != nil && base.used&(1<<p) != 0 {
			pg = *bp
		} else {
			pg = [subCount]uint64{}
		}
		if live.used&(1<<p) != 0 {
			live.addPage(p, &pg)
		}
		next := ranks[i]
		for g := 0; g < subCount && i < len(qs); g += pageGroup {
			if gc := pg[g] + pg[g+1] + pg[g+2] + pg[g+3]; cum+gc < next {
				cum += gc
				continue
			}
			for j := g; j < g+pageGroup; j++ {
				cum += pg[j]
				for cum >= next {
					out[i] = time.Duration(min(bucketMid(p, j), maxLat))
					if i++; i == len(qs) {
						break
					}
					next = ranks[i]
				}
				if i == len(qs) {
					break
				}
			}
		}
		// Writers racing the read can make the page's sub-buckets differ from its
		// count; the pages after it start from the count, as the skipped ones do.
		cum = end
	}
	for ; i < len(qs); i++ {
		out[i] = time.Duration(maxLat)
	}
	s.P50, s.P90, s.P99 = out[0], out[1], out[2]
	s.Mean = min(time.Duration(math.Round(max(sum, 0)/float64(total))), time.Duration(maxLat))
}
