package middleware

import (
	"container/heap"
	"errors"
	"time"
)

// This file is the activator's non-blocking side: a request held without a goroutine
// to wait on, told its verdict by a callback. The rules are the blocking side's
// (activator.go): the same fast path, bounds, release order and pace, wakes and
// Retry-After.

// A Ticket is a request held by [Activator.TryAcquire] until its verdict. The zero
// Ticket stands for no held request (TryAcquire decided at once); its methods then do
// nothing. A Ticket is a value; its methods are safe for concurrent use and do nothing
// once the verdict was given.
type Ticket struct {
	t        *holdTarget
	w        *waiter
	deadline time.Time
}

// IsZero reports whether k is the zero Ticket: the request was not held.
func (k Ticket) IsZero() bool { return k.w == nil }

// Deadline is when the request's MaxWait ends, on the activator's clock: the time to
// call [Ticket.Expire].
func (k Ticket) Deadline() time.Time { return k.deadline }

// Expire rejects the held request with [ErrHoldTimeout] when its MaxWait has passed on
// the activator's clock: its notify gets a Hold whose RetryAfter is set, on this
// goroutine. It returns false, doing nothing, before [Ticket.Deadline] or once the
// request was released, expired or canceled.
func (k Ticket) Expire() bool {
	t := k.t
	if t == nil {
		return false
	}
	now := t.a.clock.Now()
	if now.Before(k.deadline) || !t.leave(k.w) {
		return false
	}
	notify := k.w.notify
	t.stats.timedOut.Add(1)
	t.syncDemand()
	t.mu.Lock()
	ra := t.retryAfterLocked(now, t.queue.Len())
	t.mu.Unlock()
	notify(Hold{retryAfter: ra}, ErrHoldTimeout)
	return true
}

// Cancel takes the held request out of the queue, as when its client goes away; its
// notify is not called. It returns false, doing nothing, once the request was
// released, expired or canceled.
func (k Ticket) Cancel() bool {
	t := k.t
	if t == nil || !t.leave(k.w) {
		return false
	}
	t.stats.canceled.Add(1)
	t.syncDemand()
	return true
}

// TryAcquire is [Activator.Acquire] for a caller that must not block: an event loop,
// or a simulator running every request on one goroutine (autoscale/simulate drives
// the activator this way on its simulated clock). The rules are Acquire's. When
// target has free capacity and nobody waits it returns a Hold at once (call its Done
// when the request ends); when the queue is full, [ErrHoldFull] with the Hold's
// RetryAfter set. Otherwise the request is held: TryAcquire returns a non-zero
// [Ticket] and a nil error, and notify is called once, later, with the verdict: a
// Hold (released to a ready replica), from the [Activator.SetReady] or [Hold.Done]
// that freed capacity, or [ErrHoldTimeout] (the Hold's RetryAfter set), from
// [Ticket.Expire]. notify runs on the goroutine of that call, outside the activator's
// locks, never before TryAcquire returns, and must not block. Nothing times a held
// request out by itself: call [Ticket.Expire] at [Ticket.Deadline] (a context's
// deadline is the caller's to apply, with [Ticket.Cancel]). It returns
// [ErrUnknownTarget] for an unknown target and an error for a nil notify.
func (a *Activator) TryAcquire(target string, priority int, bytes int64, notify func(Hold, error)) (Hold, Ticket, error) {
	t, err := a.target(target)
	if err != nil {
		return Hold{}, Ticket{}, err
	}
	if notify == nil {
		return Hold{}, Ticket{}, errors.New("middleware: activator: nil notify")
	}
	bytes = max(bytes, 0)
	if h, ok := t.tryFast(); ok {
		return h, Ticket{}, nil
	}
	now := t.a.clock.Now()
	t.mu.Lock()
	if t.fullLocked(bytes) {
		ra := t.retryAfterLocked(now, t.queue.Len())
		t.mu.Unlock()
		t.stats.full.Add(1)
		return Hold{retryAfter: ra}, Ticket{}, ErrHoldFull
	}
	// A fresh waiter, never pooled, so that a Ticket kept past its verdict cannot
	// reach another request. notify stays nil until the handOff below is over: a
	// slot freed meanwhile releases the waiter on its channel, and this call returns
	// the Hold itself.
	w := &waiter{prio: priority, bytes: bytes, since: now, ready: make(chan error, 1)}
	t.pushLocked(w, now)
	t.mu.Unlock()
	t.stats.held.Add(1)
	t.syncDemand()
	t.handOff()
	t.mu.Lock()
	if w.index < 0 {
		t.mu.Unlock()
		<-w.ready
		t.stats.forwarded.Add(1)
		end := t.a.clock.Now()
		return Hold{t: t, start: end, waited: end.Sub(now)}, Ticket{}, nil
	}
	w.notify = notify
	t.mu.Unlock()
	return Hold{}, Ticket{t: t, w: w, deadline: now.Add(t.cfg.MaxWait)}, nil
}

// tryFast takes a slot when the target has free capacity and nobody waits.
func (t *holdTarget) tryFast() (Hold, bool) {
	for {
		v := t.inFlight.Load()
		if v >= t.ready.Load()*int64(t.cfg.Concurrency) || t.waiting.Load() > 0 {
			return Hold{}, false
		}
		if t.inFlight.CompareAndSwap(v, v+1) {
			return Hold{t: t, start: t.a.clock.Now()}, true
		}
	}
}

// fullLocked reports whether a request of the given size finds the queue full.
func (t *holdTarget) fullLocked(bytes int64) bool {
	return t.queue.Len() >= t.cfg.MaxQueue || t.cfg.MaxQueueBytes > 0 && t.bytes+bytes > t.cfg.MaxQueueBytes
}

// pushLocked queues w, held at now.
func (t *holdTarget) pushLocked(w *waiter, now time.Time) {
	if t.ready.Load() == 0 && t.wokeAt.IsZero() {
		t.wokeAt = now
	}
	if t.waiting.Load() == 0 {
		t.heldAt, t.heldSeq = now, t.seq
	}
	t.seq++
	w.seq = t.seq
	heap.Push(&t.queue, w)
	t.bytes += w.bytes
	t.waiting.Add(1)
}

// forwardTicket tells a request held by TryAcquire, just handed a slot, its Hold.
func (t *holdTarget) forwardTicket(w *waiter) {
	now := t.a.clock.Now()
	t.stats.forwarded.Add(1)
	w.notify(Hold{t: t, start: now, waited: now.Sub(w.since)}, nil)
}
