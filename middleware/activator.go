package middleware

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Errors an [Activator] rejects held requests with (503 both).
var (
	// ErrHoldFull: the target's hold queue is full (count or bytes).
	ErrHoldFull = errors.New("middleware: hold queue full")
	// ErrHoldTimeout: the request waited for a ready replica past MaxWait.
	ErrHoldTimeout = errors.New("middleware: hold wait timed out")
	// ErrUnknownTarget: the activator has no such target.
	ErrUnknownTarget = errors.New("middleware: unknown activator target")
)

// Response headers of an [Activator].
const (
	// ColdStartHeader is set on a forwarded response whose request waited for a
	// ready replica: the wait, e.g. "1873ms".
	ColdStartHeader = "X-Autoscale-Cold-Start-Wait"
	// HoldHeader is set on a 503 (or fallback) response the activator sent instead of
	// forwarding: "queue-full" or "timeout".
	HoldHeader = "X-Autoscale-Hold"
)

// Defaults of [HoldConfig].
const (
	DefaultHoldQueue = 100
	DefaultHoldWait  = 30 * time.Second
)

// Scaler is what an [Activator] wakes when requests wait for a target without ready
// capacity: autoscale.Loop satisfies it. Wake asks for at least replicas replicas
// (0 when none are held any more); it must not block. A Scaler may also be a
// [ColdStarter] and a [ReadySetter].
type Scaler interface {
	Wake(target string, replicas int) error
}

// ColdStarter predicts a target's cold start (autoscale.Loop: from the cold starts it
// observed, else its configuration); false when it does not know.
type ColdStarter interface {
	ColdStart(target string) (time.Duration, bool)
}

// ReadySetter is told the ready replicas the activator learns of ([Activator.SetReady]);
// autoscale.Loop satisfies it, to count pending replicas and measure cold starts.
type ReadySetter interface {
	SetReady(target string, ready int) error
}

// HoldConfig is one target's hold settings.
type HoldConfig struct {
	// Concurrency is the number of requests one ready replica serves at once, at least
	// 1. Held requests are released no faster than ready replicas × Concurrency, and
	// the demand a wake asks for is the held and forwarded requests over it until a
	// forwarded request has ended; then the held requests' arrival rate and their
	// drain within a second, by the forwarded requests' mean service time, over it.
	Concurrency int
	// MaxQueue bounds the held requests, 0..1,000,000; 0 means [DefaultHoldQueue].
	MaxQueue int
	// MaxQueueBytes bounds the sum of the held requests' Content-Length; 0 means no
	// bound.
	MaxQueueBytes int64
	// MaxWait is the longest a request is held, 0..1h; 0 means [DefaultHoldWait]. A
	// request's own context deadline, if earlier, applies too.
	MaxWait time.Duration
	// ColdStart predicts the cold start when the [Scaler] is no [ColdStarter] or does
	// not know, 0..1h. Zero means unknown: Retry-After is then the drain time alone.
	ColdStart time.Duration
	// Fallback, when not nil, serves the requests the activator would reject (queue
	// full, timeout) — a placeholder page or another route — instead of a 503.
	Fallback http.Handler
	// Priority, when not nil, gives a request's priority (higher is released first,
	// arrival order among equals); nil means 0 for all.
	Priority func(r *http.Request) int
}

// Validate reports every problem with the settings at once.
func (c HoldConfig) Validate() error {
	var errs []error
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d is below 1", c.Concurrency))
	}
	if c.MaxQueue < 0 || c.MaxQueue > 1_000_000 {
		errs = append(errs, fmt.Errorf("max queue %d out of [0, 1000000]", c.MaxQueue))
	}
	if c.MaxQueueBytes < 0 {
		errs = append(errs, fmt.Errorf("max queue bytes %d is negative", c.MaxQueueBytes))
	}
	if c.MaxWait < 0 || c.MaxWait > time.Hour {
		errs = append(errs, fmt.Errorf("max wait %v out of [0, 1h]", c.MaxWait))
	}
	if c.ColdStart < 0 || c.ColdStart > time.Hour {
		errs = append(errs, fmt.Errorf("cold start %v out of [0, 1h]", c.ColdStart))
	}
	return errors.Join(errs...)
}

// ActivatorOption configures an [Activator]. A nil argument is an error of
// [NewActivator].
type ActivatorOption func(*Activator) error

// WithActivatorClock sets the clock that times holds and predicts Retry-After; the
// default is a [metrics.SystemClock].
func WithActivatorClock(c metrics.Clock) ActivatorOption {
	return func(a *Activator) error {
		if c == nil {
			return configError("nil clock")
		}
		a.clock = c
		return nil
	}
}

// Activator holds requests for targets without ready capacity — scaled to zero, or
// with every ready replica busy — and releases them as replicas become ready, as
// Knative's activator does. The first request held for a target wakes its [Scaler]
// at once (the scaling loop steps then, not at its next tick) with the replicas the
// held demand needs. Requests wait on their own goroutine (no other is started); a
// client that goes away leaves the queue at once. Beyond the queue's bounds or its
// MaxWait a request gets 503 with Retry-After: the predicted remaining cold start
// (from the Scaler's observed cold starts, else HoldConfig.ColdStart) plus the time to
// drain the queue ahead of it (held requests over the capacity the wake asked for,
// times the mean service time observed through the activator).
//
// A target is cold (0 ready) until [Activator.SetReady] says otherwise; feed it from
// EndpointSlices or the pool ([Activator.Discovered]) or from the actuator. While a
// target has free capacity and nobody waits, a request costs two atomic operations and
// allocates nothing (BenchmarkActivatorWarm).
//
// An Activator is safe for concurrent use.
type Activator struct {
	scaler  Scaler
	cold    ColdStarter
	readyTo ReadySetter
	clock   metrics.Clock
	targets map[string]*holdTarget
}

// NewActivator returns an activator that wakes scaler for the given targets. It
// reports every problem at once.
func NewActivator(scaler Scaler, targets map[string]HoldConfig, opts ...ActivatorOption) (*Activator, error) {
	a := &Activator{scaler: scaler, targets: make(map[string]*holdTarget, len(targets))}
	var errs []error
	if scaler == nil {
		errs = append(errs, errors.New("nil scaler"))
	}
	if len(targets) == 0 {
		errs = append(errs, errors.New("no targets"))
	}
	for name, cfg := range targets {
		if name == "" {
			errs = append(errs, errors.New("empty target name"))
		}
		if err := cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("target %q: %w", name, err))
			continue
		}
		if cfg.MaxQueue == 0 {
			cfg.MaxQueue = DefaultHoldQueue
		}
		if cfg.MaxWait == 0 {
			cfg.MaxWait = DefaultHoldWait
		}
		a.targets[name] = &holdTarget{a: a, name: name, cfg: cfg}
	}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("nil option"))
			continue
		}
		if err := o(a); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("middleware: activator: %w", err)
	}
	a.cold, _ = scaler.(ColdStarter)
	a.readyTo, _ = scaler.(ReadySetter)
	if a.clock == nil {
		a.clock = metrics.NewSystemClock()
	}
	return a, nil
}

// holdTarget is one target's hold queue.
type holdTarget struct {
	a    *Activator
	name string
	cfg  HoldConfig

	ready    atomic.Int64 // ready replicas
	inFlight atomic.Int64 // forwarded, not done
	waiting  atomic.Int64 // held
	service  atomic.Int64 // EWMA of forwarded requests' service time, ns

	mu      sync.Mutex // guards the fields below
	queue   waitHeap
	bytes   int64
	seq     uint64
	wokeAt  time.Time // when a request was first held with no replica ready
	heldAt  time.Time // when the queue last went from empty to holding one
	heldSeq uint64    // seq then: the arrivals held since are seq - heldSeq

	wakeMu   sync.Mutex   // serializes calls to the scaler
	sent     int          // the demand last sent to the scaler; guarded by wakeMu
	sentCopy atomic.Int64 // sent, for lock-free reads

	stats struct {
		held, forwarded, full, timedOut, canceled atomic.Uint64
	}
}

func (a *Activator) target(name string) (*holdTarget, error) {
	t, ok := a.targets[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTarget, name)
	}
	return t, nil
}

// SetReady tells the activator that target has ready replicas, releases as many held
// requests as their concurrency allows, and passes the count on to the scaler when it
// is a [ReadySetter].
func (a *Activator) SetReady(target string, ready int) error {
	t, err := a.target(target)
	if err != nil {
		return err
	}
	if ready < 0 {
		return fmt.Errorf("middleware: activator: ready %q: negative count %d", target, ready)
	}
	t.ready.Store(int64(ready))
	if ready > 0 {
		t.mu.Lock()
		t.wokeAt = time.Time{}
		t.mu.Unlock()
	}
	t.handOff()
	if a.readyTo != nil {
		if err := a.readyTo.SetReady(target, ready); err != nil {
			return fmt.Errorf("middleware: activator: %w", err)
		}
	}
	return nil
}

// Discovered wraps a discovery's update function (such as [balancer.Pool.Update], for
// [balancer.Discovery.Watch]): it calls update, then, when update accepts the list,
// sets target's ready count to its length (discovery lists ready endpoints).
func (a *Activator) Discovered(target string, update func([]balancer.Endpoint) error) func([]balancer.Endpoint) error {
	return func(eps []balancer.Endpoint) error {
		if update != nil {
			if err := update(eps); err != nil {
				return err
			}
		}
		return a.SetReady(target, len(eps))
	}
}

// Hold is a forwarded request's slot; call Done once when it ends. A Hold is a value.
type Hold struct {
	t      *holdTarget
	start  time.Time
	waited time.Duration
	// retryAfter is set after a rejection.
	retryAfter time.Duration
}

// Waited is how long the request was held; zero when it went straight through.
func (h Hold) Waited() time.Duration { return h.waited }

// RetryAfter is, after a rejection, when the client should come back.
func (h Hold) RetryAfter() time.Duration { return h.retryAfter }

// Done frees the slot for the next held request.
func (h Hold) Done() {
	t := h.t
	if t == nil {
		return
	}
	if !h.start.IsZero() {
		d := int64(t.a.clock.Now().Sub(h.start))
		old := t.service.Load()
		if old > 0 {
			d = old - old/8 + d/8 // EWMA, weight 1/8; a lost update under a race is harmless
		}
		t.service.Store(max(d, 1))
	}
	t.inFlight.Add(-1)
	if t.waiting.Load() > 0 {
		t.handOff()
	}
	t.syncDemand()
}

// Acquire takes a slot on target for a request of the given priority and body size,
// holding it (on the caller's goroutine) while the target has no free capacity. It
// returns [ErrHoldFull] or [ErrHoldTimeout] (with the Hold's RetryAfter set), ctx's
// error when ctx ends first, or [ErrUnknownTarget].
func (a *Activator) Acquire(ctx context.Context, target string, priority int, bytes int64) (Hold, error) {
	t, err := a.target(target)
	if err != nil {
		return Hold{}, err
	}
	return t.acquire(ctx, priority, max(bytes, 0))
}

func (t *holdTarget) acquire(ctx context.Context, priority int, bytes int64) (Hold, error) {
	if h, ok := t.tryFast(); ok {
		return h, nil
	}
	now := t.a.clock.Now()
	t.mu.Lock()
	if t.fullLocked(bytes) {
		ra := t.retryAfterLocked(now, t.queue.Len())
		t.mu.Unlock()
		t.stats.full.Add(1)
		return Hold{retryAfter: ra}, ErrHoldFull
	}
	w := waiterPool.Get().(*waiter)
	w.prio, w.bytes = priority, bytes
	t.pushLocked(w, now)
	t.mu.Unlock()
	t.stats.held.Add(1)
	t.syncDemand()
	// A slot may have freed between the fast path and the push.
	t.handOff()

	timer := t.a.clock.NewTimer(t.cfg.MaxWait)
	var verr error
	select {
	case verr = <-w.ready:
	case <-timer.C():
		verr = ErrHoldTimeout
	case <-ctx.Done():
		verr = ctx.Err()
	}
	timer.Stop()
	if verr != nil {
		if !t.leave(w) {
			verr = <-w.ready // handed a slot just as we gave up: take it
		}
	}
	waiterPool.Put(w)
	end := t.a.clock.Now()
	switch {
	case verr == nil:
		t.stats.forwarded.Add(1)
		return Hold{t: t, start: end, waited: end.Sub(now)}, nil
	case errors.Is(verr, ErrHoldTimeout) || errors.Is(verr, context.DeadlineExceeded):
		t.stats.timedOut.Add(1)
		t.syncDemand()
		t.mu.Lock()
		ra := t.retryAfterLocked(end, t.queue.Len())
		t.mu.Unlock()
		return Hold{retryAfter: ra}, ErrHoldTimeout
	default:
		t.stats.canceled.Add(1)
		t.syncDemand()
		return Hold{}, verr
	}
}

// waiterPool recycles held requests' waiters; a waiter is put back only after its
// verdict was received, so its channel is empty.
var waiterPool = sync.Pool{New: func() any { return &waiter{ready: make(chan error, 1)} }}

// leave takes w out of the queue; false if it was already handed a slot.
func (t *holdTarget) leave(w *waiter) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w.index < 0 {
		return false
	}
	heap.Remove(&t.queue, w.index)
	t.bytes -= w.bytes
	t.waiting.Add(-1)
	return true
}

// handOff releases held requests, most important first, while capacity is free. A
// request held by [Activator.TryAcquire] is told outside the lock.
func (t *holdTarget) handOff() {
	t.mu.Lock()
	for t.queue.Len() > 0 && t.inFlight.Load() < t.ready.Load()*int64(t.cfg.Concurrency) {
		w := heap.Pop(&t.queue).(*waiter)
		t.bytes -= w.bytes
		t.waiting.Add(-1)
		t.inFlight.Add(1)
		if w.notify == nil {
			w.ready <- nil
			continue
		}
		t.mu.Unlock()
		t.forwardTicket(w)
		t.mu.Lock()
	}
	t.mu.Unlock()
}

// syncDemand tells the scaler the replicas held and forwarded requests need, when the
// count changed and requests are held (0 once none are).
func (t *holdTarget) syncDemand() {
	if t.waiting.Load() == 0 && t.sentLoad() == 0 {
		return
	}
	t.wakeMu.Lock()
	defer t.wakeMu.Unlock()
	n := 0
	if w := t.waiting.Load(); w > 0 {
		n = t.wakeReplicas(w)
	}
	if n == t.sent {
		return
	}
	t.sent = n
	t.sentCopy.Store(int64(n))
	_ = t.a.scaler.Wake(t.name, n) // an unknown target is the host's wiring error; the holds still time out
}

// wakeDrain is the time a wake sizes the held requests to drain in, once the service
// time is known: short, since every request arriving meanwhile waits behind them.
const wakeDrain = time.Second

// wakeReplicas returns the replicas that w held requests and those forwarded need.
// Before any forwarded request has ended, the service time is unknown and the count
// is the held and forwarded requests over the concurrency: each gets a slot. Once it
// is known (s, the forwarded requests' mean), the count is the slots that serve the
// held requests' arrival rate (lambda, over the time since the queue was last empty)
// and drain the held ones within wakeDrain, by Little's law, (lambda + w / wakeDrain)
// * s, and no fewer than the forwarded requests hold: a queue that piles up for a
// cold start (150 rps for 3 s: 450 held) asks for the capacity that serves it (6
// replicas of 10 at 100 ms), not one slot per held request (45), which would cost
// far more than the second of queueing it saves.
func (t *holdTarget) wakeReplicas(w int64) int {
	c := float64(t.cfg.Concurrency)
	forwarded := float64(t.inFlight.Load())
	s := time.Duration(t.service.Load())
	if s <= 0 {
		return int(math.Ceil((float64(w) + forwarded) / c))
	}
	t.mu.Lock()
	arrivals, since := t.seq-t.heldSeq, t.a.clock.Now().Sub(t.heldAt)
	t.mu.Unlock()
	lambda := float64(arrivals) / max(since, s).Seconds()
	slots := (lambda + float64(w)/wakeDrain.Seconds()) * s.Seconds()
	return max(int(math.Ceil(max(slots, forwarded)/c)), 1)
}

func (t *holdTarget) sentLoad() int64 { return t.sentCopy.Load() }

// retryAfterLocked predicts when a request rejected at now could be served: the
// remaining cold start when no replica is ready, plus the time to drain the ahead
// requests held in front of it at the capacity asked for.
func (t *holdTarget) retryAfterLocked(now time.Time, ahead int) time.Duration {
	var wait time.Duration
	ready := t.ready.Load()
	if ready == 0 {
		cs, ok := time.Duration(0), false
		if t.a.cold != nil {
			cs, ok = t.a.cold.ColdStart(t.name)
		}
		if !ok {
			cs = t.cfg.ColdStart
		}
		start := t.wokeAt
		if start.IsZero() {
			start = now
		}
		wait = max(start.Add(cs).Sub(now), 0)
	}
	replicas := max(ready, t.sentCopy.Load(), 1)
	capacity := replicas * int64(t.cfg.Concurrency)
	if svc := t.service.Load(); svc > 0 && ahead > 0 {
		rounds := (int64(ahead) + capacity - 1) / capacity
		wait += time.Duration(rounds * svc)
	}
	return wait
}

// HoldStats counts an activator target's holds.
type HoldStats struct {
	// Held counts requests that waited; Forwarded, those of them released to a
	// replica; Full, TimedOut and Canceled the ones rejected or gone.
	Held, Forwarded, Full, TimedOut, Canceled uint64
	// Waiting, InFlight and Ready are now.
	Waiting, InFlight, Ready int64
}

// Stats returns target's counts; false for an unknown target.
func (a *Activator) Stats(target string) (HoldStats, bool) {
	t, ok := a.targets[target]
	if !ok {
		return HoldStats{}, false
	}
	return HoldStats{
		Held: t.stats.held.Load(), Forwarded: t.stats.forwarded.Load(),
		Full: t.stats.full.Load(), TimedOut: t.stats.timedOut.Load(), Canceled: t.stats.canceled.Load(),
		Waiting: t.waiting.Load(), InFlight: t.inFlight.Load(), Ready: t.ready.Load(),
	}, true
}

// Handler returns next behind target's hold queue. A request that waited gets
// [ColdStartHeader]; one rejected gets 503 (or HoldConfig.Fallback) with Retry-After
// and [HoldHeader]; one whose client left gets nothing (its connection is gone).
func (a *Activator) Handler(target string, next http.Handler) (http.Handler, error) {
	t, err := a.target(target)
	if err != nil {
		return nil, err
	}
	if next == nil {
		return nil, errors.New("middleware: activator: nil handler")
	}
	return &holdHandler{t: t, next: next}, nil
}

type holdHandler struct {
	t    *holdTarget
	next http.Handler
}

func (h *holdHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	prio := 0
	if h.t.cfg.Priority != nil {
		prio = h.t.cfg.Priority(r)
	}
	hold, err := h.t.acquire(r.Context(), prio, max(r.ContentLength, 0))
	if err != nil {
		var why string
		switch {
		case errors.Is(err, ErrHoldFull):
			why = "queue-full"
		case errors.Is(err, ErrHoldTimeout):
			why = "timeout"
		default:
			return // the client went away
		}
		hdr := w.Header()
		hdr.Set(HoldHeader, why)
		hdr.Set("Retry-After", strconv.FormatInt(retrySeconds(hold.retryAfter), 10))
		if f := h.t.cfg.Fallback; f != nil {
			f.ServeHTTP(w, r)
			return
		}
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	defer hold.Done()
	if hold.waited > 0 {
		w.Header().Set(ColdStartHeader, strconv.FormatInt(hold.waited.Milliseconds(), 10)+"ms")
	}
	h.next.ServeHTTP(w, r)
}

// retrySeconds rounds a Retry-After up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int64 {
	return max(int64(math.Ceil(d.Seconds())), 1)
}
