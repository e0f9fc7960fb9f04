package simulate

import (
	"context"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// This file is the simulator's engine: a manual clock, a heap of timed events and the
// loop that interleaves them with arrivals, the timeline's seconds and the scaling
// loop's ticks. It knows nothing of replicas or requests: it hands each instant to a
// [driver] — the service model (model.go) for events and arrivals, the run (sim.go)
// for seconds and ticks. The FIFO ring the model queues requests in is here too.

// eventKind names what a timed event does to the service model.
type eventKind uint8

const (
	// evDone: a request's service time is over.
	evDone eventKind = iota
	// evTimeout: a waiting request's client gives up.
	evTimeout
	// evReady: a starting replica finished its cold start.
	evReady
	// evCrash: a ready replica crashes.
	evCrash
	// evDrained: a draining replica's scale-down delay is over.
	evDrained
	// evChange: the scenario's capacity change idx applies.
	evChange
	// evExpire: a request held in the hold queue reaches its MaxWait.
	evExpire
	// evStep: an LLM replica's batch step ends (llm.go).
	evStep
)

// event is a timed event for the request or replica at idx, of generation gen: an
// event whose generation is stale (the request or replica moved on) is ignored. Ties
// in time are broken by insertion order.
type event struct {
	t    int64
	seq  uint64
	idx  int32
	gen  uint32
	kind eventKind
}

// occurrence names what happens next at an instant of the engine's loop. Their order
// is the order of things at one instant: events first, then an arrival, then the
// second's close, then the tick, so the loop steps after the events of its instant.
type occurrence uint8

const (
	occEvent occurrence = iota
	occArrival
	occSecond
	occTick
	occEnd
)

// A driver is told, in time order, what happens at each instant the engine reaches.
type driver interface {
	// event applies a timed event at t.
	event(ctx context.Context, e event, t int64)
	// arrive admits and routes a request of tenant (an index into the scenario's
	// tenants; 0 without a Mix) arriving at t.
	arrive(ctx context.Context, t int64, tenant int)
	// second closes the timeline's second that ends at t.
	second(t int64)
	// tick steps the scaling loop at t; an error ends the run.
	tick(ctx context.Context, t int64) error
}

// engine runs simulated time from 0 to end (nanoseconds since the run's start).
type engine struct {
	clock   *metrics.ManualClock
	startNS int64 // the run's start, wall time in Unix nanoseconds
	end     int64
	tick    int64 // the loop's tick
	events  eventHeap
}

func newEngine(start time.Time, end, tick time.Duration) *engine {
	return &engine{clock: metrics.NewManualClock(start), startNS: start.UnixNano(), end: int64(end), tick: int64(tick)}
}

// at returns the wall time of simulated time t.
func (e *engine) at(t int64) time.Time { return time.Unix(0, e.startNS+t) }

// now returns the clock's simulated time.
func (e *engine) now() int64 { return e.clock.Now().UnixNano() - e.startNS }

// schedule adds a timed event.
func (e *engine) schedule(ev event) { e.events.push(ev) }

// run advances the clock through every instant up to the end, telling d of each in
// order, and returns the first tick error.
func (e *engine) run(ctx context.Context, arr *merged, d driver) error {
	const sec = int64(time.Second)
	nextArr, tenant, more := arr.next()
	nextSec := sec
	// The loop steps on whole ticks, after the events of the same instant. (A window's
	// span covers its completed buckets plus the current one up to now, so a read on a
	// bucket boundary is not empty.)
	nextTick := e.tick
	for {
		t, what := e.end, occEnd
		if e.events.len() > 0 && e.events.top().t < t {
			t, what = e.events.top().t, occEvent
		}
		if more && nextArr < t {
			t, what = nextArr, occArrival
		}
		if nextSec < t || (nextSec == t && what == occEnd) {
			t, what = nextSec, occSecond
		}
		if nextTick < t || (nextTick == t && what == occEnd) {
			t, what = nextTick, occTick
		}
		if what == occEnd {
			return nil
		}
		e.clock.Set(e.at(t))
		switch what {
		case occEvent:
			d.event(ctx, e.events.pop(), t)
		case occArrival:
			d.arrive(ctx, t, tenant)
			nextArr, tenant, more = arr.next()
		case occSecond:
			d.second(t)
			nextSec += sec
		case occTick:
			if err := d.tick(ctx, t); err != nil {
				return err
			}
			nextTick += e.tick
		}
	}
}

// eventHeap is a binary min-heap of events by time, then insertion order.
type eventHeap struct {
	h   []event
	seq uint64
}

func (h *eventHeap) len() int    { return len(h.h) }
func (h *eventHeap) top() *event { return &h.h[0] }

func less(a, b *event) bool { return a.t < b.t || (a.t == b.t && a.seq < b.seq) }

func (h *eventHeap) push(e event) {
	h.seq++
	e.seq = h.seq
	h.h = append(h.h, e)
	i := len(h.h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !less(&h.h[i], &h.h[p]) {
			break
		}
		h.h[i], h.h[p] = h.h[p], h.h[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	top := h.h[0]
	n := len(h.h) - 1
	h.h[0] = h.h[n]
	h.h = h.h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && less(&h.h[r], &h.h[l]) {
			m = r
		}
		if !less(&h.h[m], &h.h[i]) {
			break
		}
		h.h[i], h.h[m] = h.h[m], h.h[i]
		i = m
	}
	return top
}

// fifo is a growable ring of queue entries.
type fifo struct {
	buf  []qent
	head int
	n    int
}

type qent struct {
	idx int32
	gen uint32
}

func (q *fifo) len() int { return q.n }

func (q *fifo) push(e qent) {
	if q.n == len(q.buf) {
		nb := make([]qent, max(16, 2*len(q.buf)))
		for i := range q.n {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
}

func (q *fifo) peek() qent { return q.buf[q.head] }

func (q *fifo) pop() qent {
	e := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return e
}

func (q *fifo) reset() { q.head, q.n = 0, 0 }
