package simulate

import (
	"context"
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// This file is the gateway-side hold queue ([Scenario.Hold]): the real
// middleware.Activator between admission and the balancer, driven without blocking
// (Activator.TryAcquire) on the run's clock and goroutine. A request that finds no
// free slot among the ready replicas waits in it and goes, when a slot frees or a
// replica becomes ready, to the balancer's pick among the ready replicas, instead of
// being pinned to one replica's queue; the activator wakes the loop, which then steps
// at once, as autoscale.Loop.Run does.

// HoldQueue configures the gateway-side hold queue, the real middleware.Activator
// with the service's concurrency per replica ([middleware.HoldConfig]). The zero
// value is the activator's defaults.
type HoldQueue struct {
	// MaxQueue bounds the held requests, 0..1,000,000; one more is answered 503 (a
	// failure). Zero means middleware.DefaultHoldQueue (100).
	MaxQueue int
	// MaxWait is the longest a request is held before a 503, 0..1h; zero means
	// middleware.DefaultHoldWait (30 s). The client's own Timeout applies too.
	MaxWait time.Duration
}

// Validate reports every problem with the settings at once.
func (h HoldQueue) Validate() error {
	return h.config(1).Validate()
}

func (h HoldQueue) config(concurrency int) middleware.HoldConfig {
	return middleware.HoldConfig{Concurrency: concurrency, MaxQueue: h.MaxQueue, MaxWait: h.MaxWait}
}

// holdModel is the model's hold queue state; act is nil without one.
type holdModel struct {
	act      *middleware.Activator
	holds    []middleware.Hold   // per request slot: its activator slot, once forwarded
	tickets  []middleware.Ticket // per request slot: its ticket while held
	notifies []func(middleware.Hold, error)
	done     []middleware.Hold // ended requests' slots, freed after the instant
	waited   metrics.Histogram
	held     uint64
	full     uint64
	timedOut uint64
	// Retry-After predictions made while no replica was ready, to check against
	// the time the first one became ready.
	retries           []retryCheck
	retryN            int
	retrySum, retryMx time.Duration
}

type retryCheck struct {
	at    int64
	after time.Duration
}

// simScaler is what the activator wakes: the loop, and a step at once when the
// held demand rises (Loop.Run steps on a wake; the run has no Run).
type simScaler struct{ s *sim }

var (
	_ middleware.Scaler      = simScaler{}
	_ middleware.ColdStarter = simScaler{}
	_ middleware.ReadySetter = simScaler{}
)

func (c simScaler) Wake(target string, replicas int) error {
	if replicas > c.s.wakeDemand {
		c.s.wakeStep = true
	}
	c.s.wakeDemand = replicas
	return c.s.loop.Wake(target, replicas)
}

func (c simScaler) SetReady(target string, ready int) error { return c.s.loop.SetReady(target, ready) }

func (c simScaler) ColdStart(target string) (time.Duration, bool) { return c.s.loop.ColdStart(target) }

// newHold puts the real activator in front of the model's replicas.
func (s *sim) newHold(h HoldQueue) error {
	cfg := h.config(s.m.svc.Concurrency)
	cfg.ColdStart = s.m.svc.ColdStart
	act, err := middleware.NewActivator(simScaler{s}, map[string]middleware.HoldConfig{TargetName: cfg},
		middleware.WithActivatorClock(s.eng.clock))
	if err != nil {
		return fmt.Errorf("simulate: activator: %w", err)
	}
	s.m.hq.act = act
	return s.m.setReady()
}

// setReady tells the activator the ready replicas (releasing held requests).
func (m *model) setReady() error {
	if m.hq.act == nil {
		return nil
	}
	if m.ready > 0 && len(m.hq.retries) > 0 {
		now := m.eng.now()
		for _, c := range m.hq.retries {
			d := c.after - time.Duration(now-c.at)
			d = max(d, -d)
			m.hq.retryN++
			m.hq.retrySum += d
			m.hq.retryMx = max(m.hq.retryMx, d)
		}
		m.hq.retries = m.hq.retries[:0]
	}
	return m.hq.act.SetReady(TargetName, m.ready)
}

// forward routes admitted request i: through the hold queue when there is one, else
// to a replica, or to the buffer while none is ready.
func (m *model) forward(i int32, t int64) {
	if m.hq.act == nil {
		if m.ready == 0 {
			if !m.coldOpen {
				m.reqs[i].first, m.coldOpen = true, true
			}
			m.bufferReq(i, t)
			return
		}
		m.dispatch(i, t)
		return
	}
	hq := &m.hq
	r := &m.reqs[i]
	if m.ready == 0 && !m.coldOpen {
		r.first, m.coldOpen = true, true
	}
	for int(i) >= len(hq.holds) {
		k := int32(len(hq.holds))
		hq.holds = append(hq.holds, middleware.Hold{})
		hq.tickets = append(hq.tickets, middleware.Ticket{})
		hq.notifies = append(hq.notifies, func(h middleware.Hold, err error) { m.told(k, h, err) })
	}
	h, k, err := hq.act.TryAcquire(TargetName, m.prios[r.tenant], 0, hq.notifies[i])
	switch {
	case err != nil:
		hq.full++
		m.rejected(i, t, h)
	case !k.IsZero():
		hq.held++
		if r.state == reqFree {
			m.eng.schedule(event{t: r.arrive + m.timeout, kind: evTimeout, idx: i, gen: r.gen})
		}
		r.state = reqHeld
		hq.tickets[i] = k
		m.eng.schedule(event{t: k.Deadline().UnixNano() - m.eng.startNS, kind: evExpire, idx: i, gen: r.gen})
	default:
		hq.holds[i] = h
		m.dispatch(i, t)
	}
}

// told applies the activator's verdict on held request i.
func (m *model) told(i int32, h middleware.Hold, err error) {
	r := &m.reqs[i]
	if r.state != reqHeld {
		return // the ticket is canceled when a held request leaves
	}
	m.hq.tickets[i] = middleware.Ticket{}
	t := m.eng.now()
	if err != nil {
		m.hq.timedOut++
		m.rejected(i, t, h)
		return
	}
	m.hq.waited.Record(h.Waited())
	m.hq.holds[i] = h
	m.dispatch(i, t) // in state reqHeld, its client timeout already scheduled
}

// rejected ends request i with the activator's 503.
func (m *model) rejected(i int32, t int64, h middleware.Hold) {
	if m.ready == 0 {
		m.hq.retries = append(m.hq.retries, retryCheck{at: t, after: h.RetryAfter()})
	}
	m.finish(i, t, metrics.OutcomeError, 503, nil)
}

// unhold takes request i's slot or ticket when it ends or leaves.
func (m *model) unhold(i int32) {
	if m.hq.act == nil || int(i) >= len(m.hq.holds) {
		return
	}
	if k := m.hq.tickets[i]; !k.IsZero() {
		k.Cancel()
		m.hq.tickets[i] = middleware.Ticket{}
	}
	if h := m.hq.holds[i]; h != (middleware.Hold{}) {
		m.hq.done = append(m.hq.done, h)
		m.hq.holds[i] = middleware.Hold{}
	}
}

// flushDone frees the activator slots of the requests ended in the instant, after
// the instant's event, so a held request released by one never jumps ahead of a
// replica's own queue.
func (m *model) flushDone() {
	for k := 0; k < len(m.hq.done); k++ {
		m.hq.done[k].Done()
	}
	m.hq.done = m.hq.done[:0]
}

// expire times out held request i at its deadline.
func (m *model) expire(i int32) {
	if k := m.hq.tickets[i]; !k.IsZero() {
		k.Expire()
	}
}

// HoldSummary is what the hold queue came to in a run; zero without one.
type HoldSummary struct {
	// Held counts the requests that waited in the hold queue; Full those answered 503
	// because it was full, TimedOut those answered 503 after its MaxWait.
	Held, Full, TimedOut uint64
	// WaitP50 and WaitP99 are the hold times of the requests released to a replica.
	WaitP50, WaitP99 time.Duration
	// RetryChecked counts the 503s sent while no replica was ready and followed by a
	// ready one; RetryErrMean and RetryErrMax are the absolute error of their
	// Retry-After (before rounding to seconds) against the true remaining cold start.
	RetryChecked              int
	RetryErrMean, RetryErrMax time.Duration
}

func (m *model) holdSummary() HoldSummary {
	hq := &m.hq
	s := HoldSummary{Held: hq.held, Full: hq.full, TimedOut: hq.timedOut,
		WaitP50: hq.waited.Quantile(0.5), WaitP99: hq.waited.Quantile(0.99),
		RetryChecked: hq.retryN, RetryErrMax: hq.retryMx}
	if hq.retryN > 0 {
		s.RetryErrMean = hq.retrySum / time.Duration(hq.retryN)
	}
	return s
}

// wakeNow steps the loop at t when the held demand rose during the instant.
func (s *sim) wakeNow(ctx context.Context, t int64) {
	if !s.wakeStep || s.err != nil {
		return
	}
	s.wakeStep = false
	s.err = s.step(ctx, t)
}
