package simulate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// This file is what a scenario may change about admission and capacity: an
// alternative admission ([Admitter]) for comparisons, capacity changes during the run
// ([Change]), and the per-tenant accounting ([TenantSummary]) that shows which class
// an admission favoured.

// An Admitter decides on the simulated requests in place of the real admission
// ([Config.Admitter]): a comparison plugs another library's limiter in through it.
// The simulator calls it from one goroutine, in simulated-time order, with
// [middleware.Info.Now] the arrival's simulated time and Priority its tenant's
// ([Tenant.Priority]). Admit must not block.
type Admitter interface {
	// Admit decides on a request. A nil error admits it, and the simulator calls the
	// Release's DoneAt exactly once, when the request ends; an error sheds it.
	Admit(ctx context.Context, in middleware.Info) (Release, error)
}

// A WaitingAdmitter is an [Admitter] that may hold a request back and decide on it
// later, as a limiter with a queue does. The simulator calls AdmitOrWait instead of
// Admit.
type WaitingAdmitter interface {
	Admitter
	// AdmitOrWait decides on a request as Admit does, or returns wait true to hold
	// it back; then the admitter calls decide once, later, with the request's
	// Release (admitted) or an error (shed). It calls decide on the simulator's
	// goroutine, from a later AdmitOrWait or Release.DoneAt, and the decision takes
	// effect at that call's simulated time. A request still waiting when the
	// service's Timeout passes fails; a Release decided for it afterwards is ended
	// at once with [metrics.OutcomeCanceled].
	AdmitOrWait(ctx context.Context, in middleware.Info, decide func(Release, error)) (rel Release, wait bool, err error)
}

// decision is a [WaitingAdmitter]'s decision on waiting request idx of generation
// gen.
type decision struct {
	idx int32
	gen uint32
	rel Release
	err error
}

// admitWaiting holds request i back for the waiting admitter's decision.
func (m *model) admitWaiting(i int32) func(Release, error) {
	r := &m.reqs[i]
	r.state = reqAdmitting
	m.eng.schedule(event{t: r.arrive + m.timeout, kind: evTimeout, idx: i, gen: r.gen})
	gen := r.gen
	return func(rel Release, err error) { m.decided = append(m.decided, decision{i, gen, rel, err}) }
}

// flushDecided applies the waiting admitter's decisions made during the instant t.
func (m *model) flushDecided(t int64) {
	now := m.eng.at(t)
	for k := 0; k < len(m.decided); k++ {
		d := m.decided[k]
		r := &m.reqs[d.idx]
		if r.gen != d.gen || r.state != reqAdmitting {
			if d.rel != nil {
				d.rel.DoneAt(now, metrics.OutcomeCanceled)
			}
			continue
		}
		ts := &m.tstats[r.tenant]
		if d.err != nil || d.rel == nil {
			m.windows[r.tenant].Reject(now)
			m.sec.shed++
			m.total.shed++
			ts.shed++
			m.release1(d.idx)
			continue
		}
		m.windows[r.tenant].Start(now)
		r.rel = d.rel
		m.forward(d.idx, t)
	}
	m.decided = m.decided[:0]
}

// Release ends an admitted request at end (simulated time) with outcome o:
// [metrics.OutcomeOK] when it was served, [metrics.OutcomeError] when it failed or
// timed out. [middleware.Permit] is one.
type Release interface {
	DoneAt(end time.Time, o metrics.Outcome)
}

// A Limiter is an [Admitter] with a concurrency limit the timeline records
// ([Sample.Limit]).
type Limiter interface {
	Limit() int
}

var _ Release = middleware.Permit{}

// Change changes the service's capacity at a time of the run, for every replica.
type Change struct {
	// At is the change's time from the run's start.
	At time.Duration
	// Concurrency, when > 0, becomes each replica's slot count. Requests in service
	// over a lowered count finish; no new one starts until a replica is below it.
	Concurrency int
	// ServiceTime, when set, is the service time of the requests that start from At.
	ServiceTime Distribution
}

func validateChanges(cs []Change, d time.Duration) error {
	var errs []error
	for i, c := range cs {
		if c.At < 0 || c.At > d {
			errs = append(errs, fmt.Errorf("change %d at %v out of [0, duration]", i, c.At))
		}
		if c.Concurrency < 0 || c.Concurrency > 1<<16 {
			errs = append(errs, fmt.Errorf("change %d: concurrency %d out of [0, 65536]", i, c.Concurrency))
		}
		if c.ServiceTime != nil && c.ServiceTime.Mean() <= 0 {
			errs = append(errs, fmt.Errorf("change %d: mean service time %v is not > 0", i, c.ServiceTime.Mean()))
		}
		if c.Concurrency == 0 && c.ServiceTime == nil {
			errs = append(errs, fmt.Errorf("change %d changes nothing", i))
		}
	}
	return errors.Join(errs...)
}

// applyChange applies the scenario's change i at t.
func (m *model) applyChange(i int32, t int64) {
	c := m.changes[i]
	if c.ServiceTime != nil {
		m.svcTime = c.ServiceTime
	}
	if c.Concurrency == 0 {
		return
	}
	m.conc = c.Concurrency
	for _, rep := range m.reps {
		for k := len(rep.slots); k < m.conc; k++ {
			rep.slots = append(rep.slots, -1)
			rep.freeSlots = append(rep.freeSlots, int32(k))
		}
		if rep.state == repReady || rep.state == repDraining {
			m.pull(rep, t)
		}
	}
}

// TenantSummary is one tenant's share of a run: what its requests came to.
type TenantSummary struct {
	Name     string
	Priority int
	// Requests arrived; Served ended successfully; Shed were rejected by admission;
	// Failed ended in failure; Slow were served slower than the SLO.
	Requests, Served, Shed, Failed, Slow uint64
	// Goodput is the requests served within the SLO per second of the run.
	Goodput float64
	// P99 is the latency of the tenant's admitted requests (failures included).
	P99 time.Duration
}

// tenantStats is one tenant's accounting during a run.
type tenantStats struct {
	counts
	hist metrics.Histogram
}

// Goodput returns the requests served within the SLO per second of the run.
func (s Summary) Goodput() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Served-s.Slow) / s.Duration.Seconds()
}

func (s *sim) tenantSummaries() []TenantSummary {
	if _, ok := s.sc.Traffic.(Mix); !ok {
		return nil
	}
	out := make([]TenantSummary, len(s.m.tstats))
	for i, ts := range s.m.tstats {
		out[i] = TenantSummary{
			Name: s.m.tnames[i], Priority: s.m.prios[i],
			Requests: ts.arrivals, Served: ts.served, Shed: ts.shed, Failed: ts.failed, Slow: ts.slow,
			Goodput: float64(ts.served-ts.slow) / s.sc.Duration.Seconds(),
			P99:     ts.hist.Quantile(0.99),
		}
	}
	return out
}

// limitNow returns the route's concurrency limit: the real admission's adaptive
// limit (its group's), or an [Admitter]'s that is a [Limiter]; 0 without one.
func (m *model) limitNow() int {
	if m.alt != nil {
		if l, ok := m.alt.(Limiter); ok {
			return l.Limit()
		}
		return 0
	}
	if !m.adaptive {
		return 0
	}
	lim := 0
	for _, st := range m.adm.Limits() {
		if st.Route == RouteName {
			lim = max(lim, st.GroupLimit)
		}
	}
	return lim
}
