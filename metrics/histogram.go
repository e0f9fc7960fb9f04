package metrics

import (
	"math"
	"math/bits"
	"time"
)

// The latency histogram is log-linear, as HdrHistogram's: every power of two (an octave)
// is cut into 32 equal sub-buckets. A value v in octave o (2^o <= v < 2^(o+1)) falls into
// a sub-bucket 2^(o-5) wide, so the midpoint of its sub-bucket, which a quantile reports,
// is within 2^(o-6) of v: a relative error of at most 1/64 (1.6%). Values below 32 ns
// are exact. Values at or above 2^43 ns (about 2.4 hours) land in the last sub-bucket;
// a window's maximum is still exact.
//
// The buckets are grouped in pages of one octave each, allocated when first used, so a
// histogram costs memory only for the octaves its values occupy.
const (
	subBits  = 5
	subCount = 1 << subBits
	numPages = 43 - subBits + 1 // page 0 holds [0, 32); page p >= 1 holds octave p+4
	// HistogramRelativeError is the largest relative error of a quantile or mean read
	// from a histogram: half a sub-bucket over the sub-bucket's lower bound.
	HistogramRelativeError = 1.0 / (2 * subCount)
)

// bucketOf returns the page and sub-bucket of v nanoseconds.
func bucketOf(v int64) (page, sub int) {
	if v < subCount {
		if v < 0 {
			return 0, 0
		}
		return 0, int(v)
	}
	o := bits.Len64(uint64(v)) - 1
	page = o - subBits + 1
	if page >= numPages {
		return numPages - 1, subCount - 1
	}
	return page, int(v>>(o-subBits)) & (subCount - 1)
}

// bucketMid returns the value a bucket reports: the midpoint of its range.
func bucketMid(page, sub int) int64 {
	if page <= 1 {
		if page == 0 {
			return int64(sub)
		}
		return int64(subCount + sub)
	}
	width := int64(1) << (page - 1)
	return (int64(subCount+sub) << (page - 1)) + width/2
}

// Histogram is a mergeable log-linear histogram of durations with a relative error of at
// most [HistogramRelativeError]. The zero value is empty and ready to use. A Histogram is
// not safe for concurrent use; windows keep their own lock-free histograms and fill a
// Histogram on request.
type Histogram struct {
	pages [numPages]*[subCount]uint64
	count uint64
	max   int64
}

// Record adds one observation of d. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds n observations of d.
func (h *Histogram) RecordN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	v := max(int64(d), 0)
	p, s := bucketOf(v)
	h.page(p)[s] += n
	h.count += n
	h.max = max(h.max, v)
}

func (h *Histogram) page(p int) *[subCount]uint64 {
	pg := h.pages[p]
	if pg == nil {
		pg = new([subCount]uint64)
		h.pages[p] = pg
	}
	return pg
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for p, op := range o.pages {
		if op == nil {
			continue
		}
		hp := h.page(p)
		for s, c := range op {
			hp[s] += c
		}
	}
	h.count += o.count
	h.max = max(h.max, o.max)
}

// Reset empties h, keeping its pages for reuse.
func (h *Histogram) Reset() {
	for _, pg := range h.pages {
		if pg != nil {
			*pg = [subCount]uint64{}
		}
	}
	h.count, h.max = 0, 0
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.count }

// Max returns the largest observation, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the observations, within [HistogramRelativeError], or 0 when
// the histogram is empty.
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	var sum float64
	for p, pg := range h.pages {
		if pg == nil {
			continue
		}
		for s, c := range pg {
			if c != 0 {
				sum += float64(c) * float64(bucketMid(p, s))
			}
		}
	}
	return min(time.Duration(math.Round(sum/float64(h.count))), time.Duration(h.max))
}

// Quantile returns the q-quantile (0 <= q <= 1) by nearest rank, within
// [HistogramRelativeError] and never above the maximum; 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	var out [1]time.Duration
	h.Quantiles([]float64{q}, out[:])
	return out[0]
}

// Quantiles fills out[i] with the qs[i]-quantile in one pass; qs must be ascending and
// out at least as long as qs.
func (h *Histogram) Quantiles(qs []float64, out []time.Duration) {
	for i := range qs {
		out[i] = 0
	}
	if h.count == 0 {
		return
	}
	i := 0
	rank := nearestRank(qs[0], h.count)
	var cum uint64
	for p, pg := range h.pages {
		if pg == nil {
			continue
		}
		for s, c := range pg {
			if c == 0 {
				continue
			}
			cum += c
			for cum >= rank {
				out[i] = time.Duration(min(bucketMid(p, s), h.max))
				if i++; i == len(qs) {
					return
				}
				rank = nearestRank(qs[i], h.count)
			}
		}
	}
	for ; i < len(qs); i++ {
		out[i] = time.Duration(h.max)
	}
}

// nearestRank returns the 1-based rank of the q-quantile among n observations.
func nearestRank(q float64, n uint64) uint64 {
	q = min(max(q, 0), 1)
	return max(uint64(math.Ceil(q*float64(n))), 1)
}
