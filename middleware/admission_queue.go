package middleware

import (
	"container/heap"
	"context"
	"errors"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// The concurrency limit: a slot taken with one compare-and-swap while one is free,
// else a place in a priority queue that releases hand slots to.

// acquire takes a concurrency slot, waiting in the queue if need be.
func (a *Admission) acquire(ctx context.Context, in Info) error {
	for {
		v := a.inFlight.Load()
		lim := a.limit.Load()
		if lim > 0 && v >= lim || a.waiting.Load() > 0 {
			break
		}
		if a.inFlight.CompareAndSwap(v, v+1) {
			return nil
		}
	}
	return a.acquireSlow(ctx, in)
}

// acquireSlow is acquire when no slot is free at once: take one under the queue lock,
// or wait in the queue. It is a function of its own so that acquire's fast path has
// no defer to run (BenchmarkAdmit).
func (a *Admission) acquireSlow(ctx context.Context, in Info) (err error) {
	if a.cfg.QueueSize == 0 {
		if a.tryTake() {
			return nil
		}
		a.stats.queueFull.Add(1)
		return ErrQueueFull
	}

	w := &waiter{prio: in.Priority, ready: make(chan error, 1)}
	a.qmu.Lock()
	if a.queue.Len() >= a.cfg.QueueSize {
		low := a.queue.lowest()
		if low == nil || low.prio >= in.Priority {
			a.qmu.Unlock()
			if a.tryTake() {
				return nil
			}
			a.stats.queueFull.Add(1)
			return ErrQueueFull
		}
		heap.Remove(&a.queue, low.index)
		a.waiting.Add(-1)
		a.stats.queueFull.Add(1)
		low.ready <- ErrQueueFull
	}
	a.seq++
	w.seq = a.seq
	heap.Push(&a.queue, w)
	a.waiting.Add(1)
	a.qmu.Unlock()
	if a.reg != nil {
		// The wait is a window (metrics.ScopeQueue): depth in flight, wait as latency.
		qw, since := a.reg.Window(metrics.ScopeQueue, metrics.ClassKey(in.Route, in.Priority, "")), a.clock.Now()
		qw.StartAt(since)
		defer func() {
			end := a.clock.Now()
			o := metrics.Observation{Latency: end.Sub(since)}
			if err != nil {
				o.Outcome = metrics.OutcomeRejected
			}
			qw.DoneAt(end, o)
		}()
	}
	// A slot may have freed between the fast path and the push; releasers check
	// waiting after freeing, we check slots after waiting: one of us hands it over.
	a.handOff()

	// MaxWait runs on the admission's clock. A context deadline runs on the wall
	// clock, as contexts do: reaching it while queued is a queue timeout too.
	timer := a.clock.NewTimer(a.cfg.MaxWait)
	defer timer.Stop()
	select {
	case err := <-w.ready:
		return err
	case <-timer.C():
		if a.leave(w) {
			a.stats.queueTimeout.Add(1)
			return ErrQueueTimeout
		}
	case <-ctx.Done():
		if a.leave(w) {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				a.stats.queueTimeout.Add(1)
				return ErrQueueTimeout
			}
			a.stats.canceled.Add(1)
			return ctx.Err()
		}
	}
	// We were handed a slot (or pushed out) just as we gave up: take the verdict.
	return <-w.ready
}

// tryTake takes a slot under the queue lock if one is free and nobody waits.
func (a *Admission) tryTake() bool {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	lim := a.limit.Load()
	if a.queue.Len() == 0 && (lim == 0 || a.inFlight.Load() < lim) {
		a.inFlight.Add(1)
		return true
	}
	return false
}

// leave takes w out of the queue; false if it was already handed a verdict.
func (a *Admission) leave(w *waiter) bool {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	if w.index < 0 {
		return false
	}
	heap.Remove(&a.queue, w.index)
	a.waiting.Add(-1)
	return true
}

func (a *Admission) release() {
	a.inFlight.Add(-1)
	if a.waiting.Load() > 0 {
		a.handOff()
	}
}

// handOff gives free slots to the most important waiters.
func (a *Admission) handOff() {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	for a.queue.Len() > 0 {
		lim := a.limit.Load()
		if lim > 0 && a.inFlight.Load() >= lim {
			return
		}
		w := heap.Pop(&a.queue).(*waiter)
		a.waiting.Add(-1)
		a.inFlight.Add(1)
		w.ready <- nil
	}
}

// waiter is a queued request. index is its place in the heap, -1 once out of it.
type waiter struct {
	prio  int
	bytes int64 // the request's body size (Activator)
	// notify, set for a request held by Activator.TryAcquire, is told its verdict;
	// since is when it was held.
	notify func(Hold, error)
	since  time.Time
	seq    uint64
	index  int
	ready  chan error
}

// waitHeap orders waiters by priority (higher first), then arrival.
type waitHeap []*waiter

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	if h[i].prio != h[j].prio {
		return h[i].prio > h[j].prio
	}
	return h[i].seq < h[j].seq
}
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waitHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*h = old[:len(old)-1]
	return w
}

// lowest returns the least important waiter (lowest priority, latest arrival).
func (h waitHeap) lowest() *waiter {
	var low *waiter
	for _, w := range h {
		if low == nil || w.prio < low.prio || w.prio == low.prio && w.seq > low.seq {
			low = w
		}
	}
	return low
}
