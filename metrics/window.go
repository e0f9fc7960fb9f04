package metrics

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome says how a request ended.
type Outcome uint8

const (
	// OutcomeOK is a request that succeeded.
	OutcomeOK Outcome = iota
	// OutcomeError is a request that failed on the server's side (a 5xx, a timeout, or
	// whatever the caller's predicate calls a failure). It counts in the error rate.
	OutcomeError
	// OutcomeCanceled is a request whose client went away before it finished. It is
	// counted, and not as an error.
	OutcomeCanceled
	// OutcomeRejected is a request that admission control turned away (shed,
	// throttled, queue full) without serving it. It counts in Count and Rate, which
	// therefore measure demand, but not in the latency statistics.
	OutcomeRejected
)

// String returns "ok", "error" or "canceled".
func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeError:
		return "error"
	case OutcomeCanceled:
		return "canceled"
	case OutcomeRejected:
		return "rejected"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Observation is what one finished request adds to a window.
type Observation struct {
	// Latency is the request's duration; it goes into the latency histogram.
	Latency time.Duration
	// Outcome classifies the request.
	Outcome Outcome
	// Bytes is the size of the response (or whatever byte count the caller tracks).
	Bytes int64
	// Value is an optional user quantity, summed per bucket: tokens, cost.
	Value float64
}

// WindowConfig shapes a [Window]: Buckets buckets of Width each, so the window spans
// Width × Buckets. The zero value means the defaults, 60 buckets of one second.
type WindowConfig struct {
	// Width is the width of one bucket, the resolution of the window in time.
	// Zero means 1 s; at least 1 ms, at most [MaxWidth].
	Width time.Duration
	// Buckets is the number of buckets. Zero means 60; at most [MaxBuckets].
	Buckets int
	// Compact selects the compact layout, for scopes with many keys (tenants, models):
	// about 7.3 KB for a busy window of the default shape, where the default layout
	// takes about 115 KB (TestCompactMemory). Each bucket keeps all its counters, so
	// counts, rates, errors, bytes, user values and concurrency are as exact as in the
	// default layout; latencies go into coarser histograms, shared by HistogramBuckets
	// consecutive buckets, with 10 sub-buckets an octave instead of 32. Quantiles and
	// the mean are then within [CompactRelativeError] (4.4%) instead of
	// [HistogramRelativeError] (1.6%), and they, and the maximum latency, cover every
	// group of HistogramBuckets buckets the span overlaps: up to HistogramBuckets − 1
	// buckets more than the span, the oldest part, so a latency leaves the window up to
	// that much later. The package doc says when to use it.
	Compact bool
	// HistogramBuckets is, in a compact window, how many consecutive buckets share a
	// latency histogram: the resolution in time of its latency statistics. Zero means a
	// quarter of Buckets rounded up (15 s for the default shape), at most MaxWidth /
	// Width. It must be at most Buckets, and Width × HistogramBuckets at most
	// [MaxWidth] (a histogram's counters have 32 bits, as a bucket's counts do). A
	// histogram slot costs 40 bytes per octave of latency it sees, and a window has
	// ceil(Buckets / HistogramBuckets) + 1 of them. Zero without Compact.
	HistogramBuckets int
}

// Defaults of [WindowConfig].
const (
	DefaultWidth   = time.Second
	DefaultBuckets = 60
)

// ErrInvalidConfig is returned (wrapped) for settings out of range.
var ErrInvalidConfig = errors.New("metrics: invalid config")

// MaxBuckets is the most buckets a window has: an hour of one-second buckets.
const MaxBuckets = 3600

// MaxWidth is the widest bucket. It bounds what a bucket counts: its requests and its
// errors share one 64-bit word (32 bits each, so that recording one is one atomic
// add), and a count past 2^32 would carry into the errors. All the writers of a
// window add to that one word, a contended cache line that takes at most some tens of
// millions of adds a second (one uncontended add costs about 10 ns here; see
// BenchmarkDoneParts in package balancer), so a minute's bucket stays below 2^32
// (4.3 billion) with room to spare: 60 s at 50 million a second is 3 billion.
const MaxWidth = time.Minute

func (c WindowConfig) withDefaults() WindowConfig {
	if c.Width == 0 {
		c.Width = DefaultWidth
	}
	if c.Buckets == 0 {
		c.Buckets = DefaultBuckets
	}
	if c.Compact && c.HistogramBuckets == 0 && c.Width > 0 && c.Buckets > 0 {
		c.HistogramBuckets = defaultHistogramBuckets(c)
	}
	return c
}

// Validate reports every setting out of range.
func (c WindowConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Width < time.Millisecond || c.Width > MaxWidth {
		errs = append(errs, fmt.Errorf("%w: window width %v out of [1ms, %v]", ErrInvalidConfig, c.Width, MaxWidth))
	}
	if c.Buckets < 1 || c.Buckets > MaxBuckets {
		errs = append(errs, fmt.Errorf("%w: window buckets %d out of [1, %d]", ErrInvalidConfig, c.Buckets, MaxBuckets))
	}
	switch g := c.HistogramBuckets; {
	case !c.Compact && g != 0:
		errs = append(errs, fmt.Errorf("%w: histogram buckets %d without a compact window", ErrInvalidConfig, g))
	case !c.Compact:
	case g < 1 || g > c.Buckets:
		errs = append(errs, fmt.Errorf("%w: histogram buckets %d out of [1, %d]", ErrInvalidConfig, g, c.Buckets))
	case c.Width > 0 && time.Duration(g) > MaxWidth/c.Width:
		errs = append(errs, fmt.Errorf("%w: histogram buckets %d of %v span more than %v", ErrInvalidConfig, g, c.Width, MaxWidth))
	}
	return errors.Join(errs...)
}

// Length returns the span the window covers, Width × Buckets.
func (c WindowConfig) Length() time.Duration {
	c = c.withDefaults()
	return c.Width * time.Duration(c.Buckets)
}

// ringSlack is how many buckets, at least, the ring keeps beyond the window's length
// (it has a power-of-two length, so a slot is an AND, not a division), so a reader
// that skips a few buckets between reads can still update its running histogram
// incrementally (see readCache).
const ringSlack = 4

// resetting marks a bucket whose epoch is being changed; writers wait for it.
const resetting = 1 << 63

type atomicPage [subCount]atomic.Uint32

// bucket holds one Width of observations. epoch is the bucket's number (time / Width)
// plus one, so that zero means "never used".
type bucket struct {
	epoch       atomic.Uint64
	countErr    atomic.Uint64 // requests in the low 32 bits, errors in the high 32 (bounded by MaxWidth)
	used        atomic.Uint64 // bit p set: pages[p] holds observations
	canceled    atomic.Uint64
	rejected    atomic.Uint64
	bytes       atomic.Uint64
	value       atomic.Uint64 // float64 bits
	maxLatency  atomic.Int64
	maxInFlight atomic.Int64
	inFlight0   atomic.Int64 // requests in flight when the bucket began
	// area accumulates, for every start in this bucket, the time from it to the
	// bucket's end, and subtracts the same for every end: with inFlight0 it gives the
	// integral of in-flight requests over the bucket (see Window.concurrency).
	area  atomic.Int64
	pages [numPages]atomic.Pointer[atomicPage]
}

func (b *bucket) clear() {
	b.countErr.Store(0)
	b.canceled.Store(0)
	b.rejected.Store(0)
	b.bytes.Store(0)
	b.value.Store(0)
	b.maxLatency.Store(0)
	b.maxInFlight.Store(0)
	b.area.Store(0)
	for u := b.used.Load(); u != 0; u &= u - 1 {
		pg := b.pages[bits.TrailingZeros64(u)].Load()
		for j := range pg {
			pg[j].Store(0)
		}
	}
	b.used.Store(0)
}

func (b *bucket) page(p int) *atomicPage {
	if pg := b.pages[p].Load(); pg != nil {
		return pg
	}
	pg := new(atomicPage)
	if b.pages[p].CompareAndSwap(nil, pg) {
		return pg
	}
	return b.pages[p].Load()
}

// Window is a rolling time window of fixed-width buckets holding request counts, errors,
// a latency histogram, bytes, a user value, and in-flight requests. Recording is
// lock-free and allocation-free (a bucket allocates a histogram page the first time it
// sees an octave of latency, and keeps it): a request touches two atomic counters, plus
// one for bytes and one for the user value when those are non-zero, plus two for
// [Window.Start] and [Window.Done].
//
// Buckets are reused in a ring: a writer that finds a bucket from an older epoch claims
// it with a compare-and-swap, clears it and moves it to its epoch; writers racing it wait
// the few hundred nanoseconds that takes. An observation recorded more than a ring's
// length after its time is dropped and counted by [Window.Late].
//
// Reads ([Window.Snapshot]) lock a mutex that only readers take, so they never delay
// writers; reads of a compact window ([WindowConfig.Compact]) take no lock. A Window is
// safe for concurrent use.
type Window struct {
	scope   Scope
	key     string
	clock   Clock
	width   int64 // ns
	n       int64 // buckets in the window
	ringLen int64 // a power of two, at least n + ringSlack
	mask    int64 // ringLen - 1
	// c holds a compact window's buckets and histograms (nil: the default layout,
	// whose buckets are in ring). Every write reads it, so it sits beside ring.
	c    *compactRing
	ring []atomic.Pointer[bucket]
	// sealed is the newest epoch a reader's running totals hold (see readCache); a
	// write to a bucket at or before it counts in lateWrites, which makes the next
	// whole-window read rebuild its totals. It sits beside ring, on the cache line
	// every write reads anyway.
	sealed atomic.Int64
	// head is the newest epoch a writer moved a bucket to: the epoch of most writes,
	// which they recognize with a multiplication instead of a division.
	head atomic.Int64

	inFlight atomic.Int64
	late     atomic.Uint64

	// touch, when set, is called after a writer moves a bucket to a new epoch: at most
	// once per bucket width. The registry uses it to keep busy windows recent in its LRU.
	touch func()

	lateWrites atomic.Uint64 // see sealed

	created int64 // ns

	mu sync.Mutex // readers only
	// cache is written under mu and read without it only by warm.
	cache   atomic.Pointer[readCache]
	scratch *walkHist // made by the first read that walks the ring
}

// NewWindow returns a window shaped by cfg that reads time from clock (nil means a new
// [SystemClock]).
func NewWindow(cfg WindowConfig, clock Clock) (*Window, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = NewSystemClock()
	}
	return newWindow("", "", cfg, clock), nil
}

func newWindow(scope Scope, key string, cfg WindowConfig, clock Clock) *Window {
	cfg = cfg.withDefaults()
	n := int64(cfg.Buckets)
	ringLen := int64(1) << bits.Len64(uint64(n+ringSlack-1))
	var w *Window
	if cfg.Compact {
		// One allocation for the window and its compact ring, as a flood of new keys
		// makes many (see compactInline).
		cw := new(struct {
			Window
			c compactRing
			compactInline
		})
		w = &cw.Window
		w.c = &cw.c
		w.c.init(cfg, ringLen, &cw.compactInline)
	} else {
		w = &Window{ring: make([]atomic.Pointer[bucket], ringLen)}
	}
	w.scope, w.key, w.clock = scope, key, clock
	w.width, w.n, w.ringLen, w.mask = int64(cfg.Width), n, ringLen, ringLen-1
	w.created = clock.Now().UnixNano()
	w.sealed.Store(-1)
	return w
}

// Scope returns the scope the window was registered under ("" outside a registry).
func (w *Window) Scope() Scope { return w.scope }

// Key returns the key the window was registered under ("" outside a registry).
func (w *Window) Key() string { return w.key }

// Config returns the window's shape.
func (w *Window) Config() WindowConfig {
	c := WindowConfig{Width: time.Duration(w.width), Buckets: int(w.n)}
	if w.c != nil {
		c.Compact, c.HistogramBuckets = true, int(w.c.g)
	}
	return c
}

// Clock returns the clock the window reads when no time is given.
func (w *Window) Clock() Clock { return w.clock }

// epochAt is epochOf for a write: most fall in the head epoch.
func (w *Window) epochAt(ns int64) int64 {
	h := w.head.Load()
	if d := ns - h*w.width; d >= 0 && d < w.width {
		return h
	}
	return w.epochOf(ns)
}

func (w *Window) epochOf(ns int64) int64 {
	if ns < 0 {
		return 0
	}
	return ns / w.width
}

// bucketAt returns the bucket for epoch n, moving it to n if needed, or nil when the
// bucket already serves a later epoch (n is older than the ring).
func (w *Window) bucketAt(n int64) *bucket {
	i := n & w.mask
	b := w.ring[i].Load()
	if b == nil {
		b = new(bucket)
		if !w.ring[i].CompareAndSwap(nil, b) {
			b = w.ring[i].Load()
		}
	}
	want := uint64(n) + 1
	if e := b.epoch.Load(); e == want {
		return b
	}
	return w.claim(b, want)
}

func (w *Window) claim(b *bucket, want uint64) *bucket {
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
			b.clear()
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

// bucketFor returns the bucket holding epoch n for reading, or nil when none does.
func (w *Window) bucketFor(n int64) *bucket {
	if n < 0 {
		return nil
	}
	b := w.ring[n&w.mask].Load()
	if b == nil || b.epoch.Load() != uint64(n)+1 {
		return nil
	}
	return b
}

// Record adds o at the clock's current time, without in-flight accounting.
func (w *Window) Record(o Observation) { w.RecordAt(w.clock.Now(), o) }

// RecordAt adds o at time t, without in-flight accounting.
func (w *Window) RecordAt(t time.Time, o Observation) {
	if w.c != nil {
		w.c.recordAt(w, t.UnixNano(), o)
		return
	}
	n := w.epochAt(t.UnixNano())
	b := w.bucketAt(n)
	if b == nil {
		w.late.Add(1)
		return
	}
	record(b, o)
	w.checkSealed(n)
}

// checkSealed counts a write to epoch n, made before this call, as late when a reader
// has already summed n into its running totals. A reader seals an epoch before it reads
// the bucket, so a write either lands before the read or is counted here.
func (w *Window) checkSealed(n int64) {
	if n <= w.sealed.Load() {
		w.lateWrites.Add(1)
	}
}

func record(b *bucket, o Observation) {
	inc := uint64(1)
	switch o.Outcome {
	case OutcomeError:
		inc |= 1 << 32
	case OutcomeCanceled:
		b.canceled.Add(1)
	case OutcomeRejected:
		b.rejected.Add(1)
		b.countErr.Add(inc)
		return
	}
	b.countErr.Add(inc)
	lat := max(int64(o.Latency), 0)
	p, s := bucketOf(lat)
	b.page(p)[s].Add(1)
	if bit := uint64(1) << p; b.used.Load()&bit == 0 {
		b.used.Or(bit)
	}
	if lat > b.maxLatency.Load() {
		storeMax(&b.maxLatency, lat)
	}
	if o.Bytes > 0 {
		b.bytes.Add(uint64(o.Bytes))
	}
	if o.Value != 0 {
		addFloat(&b.value, o.Value)
	}
}

// Start counts one more request in flight from the clock's current time. Pair it with
// [Window.Done].
func (w *Window) Start() { w.StartAt(w.clock.Now()) }

// StartAt counts one more request in flight from time t.
func (w *Window) StartAt(t time.Time) {
	ns := t.UnixNano()
	if w.c != nil {
		w.c.startAt(w, ns)
		return
	}
	n := w.epochAt(ns)
	b := w.bucketAt(n)
	v := w.inFlight.Add(1)
	if b == nil {
		return
	}
	b.area.Add((n+1)*w.width - ns)
	if v > b.maxInFlight.Load() {
		storeMax(&b.maxInFlight, v)
	}
	w.checkSealed(n)
}

// Done ends a request begun with [Window.Start] at the clock's current time and records o.
func (w *Window) Done(o Observation) { w.DoneAt(w.clock.Now(), o) }

// DoneAt ends a request begun with [Window.StartAt] at time t and records o.
func (w *Window) DoneAt(t time.Time, o Observation) {
	ns := t.UnixNano()
	if w.c != nil {
		w.c.doneAt(w, ns, o)
		return
	}
	n := w.epochAt(ns)
	b := w.bucketAt(n)
	w.inFlight.Add(-1)
	if b == nil {
		w.late.Add(1)
		return
	}
	b.area.Add(ns - (n+1)*w.width)
	record(b, o)
	w.checkSealed(n)
}

// InFlight returns the requests started and not yet done.
func (w *Window) InFlight() int64 { return w.inFlight.Load() }

// Late returns how many observations were dropped because they arrived more than the
// ring's length after their time: the window's length plus at least four buckets,
// rounded up to a power of two (64 buckets for the default 60).
func (w *Window) Late() uint64 { return w.late.Load() }

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func addFloat(a *atomic.Uint64, v float64) {
	for {
		old := a.Load()
		if a.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}
