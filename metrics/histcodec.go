package metrics

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// HistogramAt adds to h the latency histogram of the span of the window ending at now:
// the observations [Window.SnapshotAt] reads its mean and quantiles from, over the same
// buckets, and their exact maximum (a compact window's histograms, each sub-bucket
// added into the full sub-bucket whose midpoint it reports, so the result reads as the
// snapshot does). With [Histogram.AppendBinary] it is how a window's
// latencies travel to another process to be merged there (package metrics/redisshare).
func (w *Window) HistogramAt(now time.Time, span time.Duration, h *Histogram) {
	n := w.epochOf(now.UnixNano())
	k := w.n
	if span > 0 {
		k = min(max((int64(span)+w.width-1)/w.width, 1), w.n)
	}
	if w.c != nil {
		var ch compactHist
		w.c.gather(n-k, n, &ch)
		ch.addTo(h)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if k == w.n && w.n >= 3 {
		// A whole window: the running histogram of the read cache and the two
		// newest buckets, as a whole-window snapshot reads them.
		if c := w.readCacheLocked(); c.sync(w, n) {
			h.Merge(&c.hist.Histogram)
			h.max = max(h.max, c.maxLat.max())
			for m := n - 1; m <= n; m++ {
				if b := w.bucketFor(m); b != nil {
					h.addFrom(b)
				}
			}
			return
		}
	}
	for m := n - k; m <= n; m++ {
		if b := w.bucketFor(m); b != nil {
			h.addFrom(b)
		}
	}
}

// addFrom adds a bucket's latency histogram and maximum to h.
func (h *Histogram) addFrom(b *bucket) {
	for u := b.used.Load(); u != 0; u &= u - 1 {
		p := bits.TrailingZeros64(u)
		pg := b.pages[p].Load()
		var hp *[subCount]uint64
		for s := range pg {
			if c := uint64(pg[s].Load()); c != 0 {
				if hp == nil {
					hp = h.page(p)
				}
				hp[s] += c
				h.count += c
			}
		}
	}
	h.max = max(h.max, b.maxLatency.Load())
}

// histFormat is the version of the binary form of a Histogram.
const histFormat = 1

// ErrHistogramFormat reports a binary histogram that does not decode: corrupt, or in a
// newer format than this package reads.
var ErrHistogramFormat = errors.New("metrics: bad binary histogram")

// AppendBinary appends h's binary form to b (encoding.BinaryAppender): a format byte,
// the maximum, and each non-empty sub-bucket as the distance from the previous one and
// its count, all as varints; about two bytes per non-empty sub-bucket.
func (h *Histogram) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, histFormat)
	b = binary.AppendUvarint(b, uint64(h.max))
	var n uint64
	for _, pg := range h.pages {
		if pg != nil {
			for _, c := range pg {
				if c != 0 {
					n++
				}
			}
		}
	}
	b = binary.AppendUvarint(b, n)
	last := -1
	for p, pg := range h.pages {
		if pg == nil {
			continue
		}
		for s, c := range pg {
			if c != 0 {
				i := p<<subBits | s
				b = binary.AppendUvarint(b, uint64(i-last))
				b = binary.AppendUvarint(b, c)
				last = i
			}
		}
	}
	return b, nil
}

// MarshalBinary returns h's binary form; see [Histogram.AppendBinary].
func (h *Histogram) MarshalBinary() ([]byte, error) { return h.AppendBinary(nil) }

// UnmarshalBinary replaces h with the histogram of data, the form
// [Histogram.AppendBinary] writes. It returns an error wrapping [ErrHistogramFormat]
// when data does not decode, and leaves h empty then.
func (h *Histogram) UnmarshalBinary(data []byte) error {
	h.Reset()
	_, err := h.decode(data)
	if err != nil {
		h.Reset()
	}
	return err
}

// MergeBinary adds the histogram of the front of data to h and returns the rest of
// data: how a reader merges histograms straight from a payload. On an error (wrapping
// [ErrHistogramFormat]) h may hold part of the histogram.
func (h *Histogram) MergeBinary(data []byte) ([]byte, error) { return h.decode(data) }

func (h *Histogram) decode(data []byte) ([]byte, error) {
	bad := func(what string) ([]byte, error) { return nil, fmt.Errorf("%w: %s", ErrHistogramFormat, what) }
	if len(data) == 0 {
		return bad("empty")
	}
	if data[0] != histFormat {
		return bad(fmt.Sprintf("format %d, this version reads %d", data[0], histFormat))
	}
	data = data[1:]
	mx, k := binary.Uvarint(data)
	if k <= 0 || mx > 1<<62 {
		return bad("maximum")
	}
	data = data[k:]
	n, k := binary.Uvarint(data)
	if k <= 0 || n > numPages*subCount {
		return bad("bucket count")
	}
	data = data[k:]
	last := -1
	for range n {
		d, k := binary.Uvarint(data)
		if k <= 0 || d == 0 || d > numPages*subCount {
			return bad("bucket index")
		}
		data = data[k:]
		c, k := binary.Uvarint(data)
		if k <= 0 || c == 0 {
			return bad("bucket count")
		}
		data = data[k:]
		i := last + int(d)
		if i >= numPages*subCount {
			return bad("bucket index")
		}
		h.page(i >> subBits)[i&(subCount-1)] += c
		h.count += c
		last = i
	}
	h.max = max(h.max, int64(mx))
	return data, nil
}
