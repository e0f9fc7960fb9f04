package simulate

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// This file is the model of the scaled service: requests pass the real admission
// control and the real balancer, queue at a replica with a fixed number of slots, are
// served for a drawn time (or in an LLM's batch steps: llm.go) and recorded in the
// real windows through middleware.Windows, as the middleware records them; replicas
// start cold, serve, crash and drain (scaling them: replicas.go). The model schedules
// its timed events on the engine (engine.go) and keeps the run's counts and
// replica-time for the result.

// reqState is where a request is.
type reqState uint8

const (
	reqFree      reqState = iota // the slot in model.reqs is unused
	reqBuffered                  // waiting for a first ready replica
	reqQueued                    // waiting in a replica's queue
	reqServing                   // holding one of a replica's slots
	reqAdmitting                 // waiting for a WaitingAdmitter's decision
	reqHeld                      // waiting in the hold queue (hold.go)
)

// repState is where a replica is in its life.
type repState uint8

const (
	repFree     repState = iota // not in the service; its entry may be reused
	repStarting                 // in its cold start (or restarting after a crash)
	repReady                    // in the balancer's pool, serving
	repDraining                 // removed by a scale-down: finishing its work, still billed
)

type request struct {
	arrive  int64
	start   int64
	gen     uint32
	tenant  int32
	replica int32
	slot    int32
	state   reqState
	first   bool // the first to arrive while no replica was ready
	phase   uint8
	prompt  int32 // LLM tokens (llm.go); zero without Service.LLM
	output  int32
	left    int32 // output tokens still to make
	firstAt int64 // when its first token was made
	permit  middleware.Permit
	rel     Release // the Admitter's, instead of permit
	res     balancer.Result
}

type replica struct {
	id        string
	url       string
	state     repState
	gen       uint32
	busy      int
	slots     []int32 // request index per slot, -1 when free
	freeSlots []int32
	queue     fifo
	queued    int
	billUntil int64
	backend   *balancer.Backend
	kv        int    // LLM: tokens held by the batch (llm.go)
	stepping  bool   // LLM: a step is running
	stepGen   uint32 // LLM: the generation of its step events
}

// model is the simulated service: its requests, its replicas, the admission control
// and balancer in front of them, and the run's accounting.
type model struct {
	eng     *engine
	svc     Service // with defaults
	slo     int64
	timeout int64
	cold    int64

	adm      *middleware.Admission
	adaptive bool     // adm has adaptive limits
	alt      Admitter // decides instead of adm, if set
	pool     *balancer.Pool
	balReq   balancer.Request
	route    *metrics.Window
	windows  []middleware.Windows // per tenant: the route's window and the tenant's
	tnames   []string
	prios    []int // per tenant: its requests' priority
	tstats   []tenantStats
	conc     int          // the slots of each replica now
	svcTime  Distribution // the service time now
	changes  []Change
	waiting  WaitingAdmitter // alt, when it may hold requests back
	decided  []decision      // its decisions, applied after each instant
	slow     bool            // svc.Slowdown is not zero
	llm      *llmModel       // svc.LLM's state, or nil
	rngSvc   *rand.Rand
	rngMisc  *rand.Rand

	reqs      []request
	free      []int32
	reps      []*replica
	byBackend map[*balancer.Backend]int32
	buffer    fifo
	buffered  int
	starting  int
	ready     int
	draining  int
	endpoints []balancer.Endpoint
	hq        holdModel
	coldOpen  bool // a request arrived since the last time no replica was ready

	// accounting
	billedAt  int64
	replicaNs float64
	maxRep    int
	scales    []ScaleEvent
	total     counts
	sec       counts
	secHist   metrics.Histogram
	hist      metrics.Histogram
	firstN    int
	firstSum  time.Duration
	firstMax  time.Duration
}

type counts struct {
	arrivals, served, shed, failed, slow uint64
}

// warm adds n replicas that are ready at the start.
func (m *model) warm(n int) error {
	for range n {
		ri := m.newReplica()
		m.reps[ri].state = repReady
		m.ready++
		m.scheduleCrash(ri, 0)
	}
	m.maxRep = m.ready
	return m.updatePool()
}

// spec returns the replica count of the spec: those starting and those ready.
func (m *model) spec() int { return m.starting + m.ready }

// queuedNow returns the requests waiting, for a first replica or at a replica.
func (m *model) queuedNow() int {
	q := m.buffered
	if m.hq.act != nil {
		st, _ := m.hq.act.Stats(TargetName)
		q += int(st.Waiting)
	}
	for _, rep := range m.reps {
		q += rep.queued
	}
	return q
}

func (m *model) event(e event, t int64) {
	switch e.kind {
	case evDone:
		r := &m.reqs[e.idx]
		if r.gen != e.gen || r.state != reqServing {
			return
		}
		m.complete(e.idx, t)
	case evTimeout:
		r := &m.reqs[e.idx]
		if r.gen != e.gen {
			return
		}
		switch r.state {
		case reqQueued:
			m.reps[r.replica].queued--
		case reqBuffered:
			m.buffered--
		case reqHeld:
		case reqAdmitting:
			// The client gave up before admission decided: a failure, recorded as
			// if it had started so the windows stay balanced.
			m.windows[r.tenant].Start(m.eng.at(t))
		default:
			return
		}
		m.finish(e.idx, t, metrics.OutcomeError, 504, context.Canceled)
	case evReady:
		rep := m.reps[e.idx]
		if rep.gen != e.gen || rep.state != repStarting {
			return
		}
		m.bill(t)
		rep.state = repReady
		m.starting--
		m.ready++
		rep.gen++
		m.scheduleCrash(e.idx, t)
		_ = m.updatePool()
		m.coldOpen = false
		_ = m.setReady()
		m.drainBuffer(t)
	case evCrash:
		rep := m.reps[e.idx]
		if rep.gen != e.gen || rep.state != repReady {
			return
		}
		m.crash(e.idx, t)
	case evDrained:
		rep := m.reps[e.idx]
		if rep.gen == e.gen && rep.state == repDraining {
			m.maybeGone(e.idx, t)
		}
	case evChange:
		m.applyChange(e.idx, t)
	case evStep:
		m.endStep(e.idx, e.gen, t)
	case evExpire:
		if r := &m.reqs[e.idx]; r.gen == e.gen && r.state == reqHeld {
			m.expire(e.idx)
		}
	}
}

// scheduleCrash draws the time a replica that became ready at t crashes.
func (m *model) scheduleCrash(ri int32, t int64) {
	if m.svc.CrashEvery > 0 {
		rep := m.reps[ri]
		m.eng.schedule(event{t: t + int64(m.rngMisc.ExpFloat64()*float64(m.svc.CrashEvery)), kind: evCrash, idx: ri, gen: rep.gen})
	}
}

func (m *model) alloc() int32 {
	if n := len(m.free); n > 0 {
		i := m.free[n-1]
		m.free = m.free[:n-1]
		return i
	}
	m.reqs = append(m.reqs, request{})
	return int32(len(m.reqs) - 1)
}

func (m *model) release1(i int32) {
	r := &m.reqs[i]
	gen := r.gen + 1
	*r = request{gen: gen}
	m.free = append(m.free, i)
}

var errCrashed = errors.New("simulate: replica crashed")

func (m *model) arrive(ctx context.Context, t int64, tenant int) {
	m.sec.arrivals++
	m.total.arrivals++
	ts := &m.tstats[tenant]
	ts.arrivals++
	now := m.eng.at(t)
	in := middleware.Info{Route: RouteName, Tenant: m.tnames[tenant], Priority: m.prios[tenant], Now: now}
	var permit middleware.Permit
	var rel Release
	var err error
	if m.waiting != nil {
		i := m.alloc()
		r := &m.reqs[i]
		r.arrive, r.tenant, r.replica, r.slot = t, int32(tenant), -1, -1
		var wait bool
		if rel, wait, err = m.waiting.AdmitOrWait(ctx, in, m.admitWaiting(i)); wait && err == nil {
			return
		}
		// Decided at once: the request is not waiting after all.
		r.state = reqFree
		m.release1(i)
	} else if m.alt != nil {
		rel, err = m.alt.Admit(ctx, in)
	} else {
		permit, err = m.adm.Admit(ctx, in)
	}
	if err != nil {
		m.windows[tenant].Reject(now)
		m.sec.shed++
		m.total.shed++
		ts.shed++
		return
	}
	m.windows[tenant].Start(now)
	i := m.alloc()
	r := &m.reqs[i]
	r.arrive, r.tenant, r.permit, r.rel, r.replica, r.slot = t, int32(tenant), permit, rel, -1, -1
	m.forward(i, t)
}

func (m *model) bufferReq(i int32, t int64) {
	r := &m.reqs[i]
	if r.state == reqFree {
		m.eng.schedule(event{t: r.arrive + m.timeout, kind: evTimeout, idx: i, gen: r.gen})
	}
	r.state = reqBuffered
	m.buffer.push(qent{i, r.gen})
	m.buffered++
}

func (m *model) dispatch(i int32, t int64) {
	r := &m.reqs[i]
	m.balReq.Now = m.eng.at(t)
	res, err := m.pool.Pick(&m.balReq)
	if err != nil {
		m.bufferReq(i, t)
		return
	}
	ri := m.byBackend[res.Backend]
	rep := m.reps[ri]
	r.res, r.replica = res, ri
	if m.llm != nil {
		m.drawTokens(r)
	}
	switch {
	case m.fits(rep, i):
		m.serve(i, rep, t)
	case m.svc.QueueDepth > 0 && rep.queued >= m.svc.QueueDepth:
		m.finish(i, t, metrics.OutcomeError, 503, nil)
	default:
		if r.state == reqFree {
			m.eng.schedule(event{t: r.arrive + m.timeout, kind: evTimeout, idx: i, gen: r.gen})
		}
		r.state = reqQueued
		rep.queue.push(qent{i, r.gen})
		rep.queued++
	}
}

func (m *model) serve(i int32, rep *replica, t int64) {
	r := &m.reqs[i]
	n := len(rep.freeSlots) - 1
	slot := rep.freeSlots[n]
	rep.freeSlots = rep.freeSlots[:n]
	rep.slots[slot] = i
	rep.busy++
	r.slot, r.state, r.start = slot, reqServing, t
	if m.llm != nil {
		m.join(i, r.replica, t)
		return
	}
	d := int64(m.svcTime.Sample(m.rngSvc))
	if m.slow {
		d = int64(float64(d) * m.svc.Slowdown.Factor(float64(rep.busy)/float64(m.conc)))
	}
	m.eng.schedule(event{t: t + max(d, 0), kind: evDone, idx: i, gen: r.gen})
}

// unslot frees request i's slot at its replica.
func (m *model) unslot(i int32) *replica {
	r := &m.reqs[i]
	rep := m.reps[r.replica]
	rep.slots[r.slot] = -1
	rep.freeSlots = append(rep.freeSlots, r.slot)
	rep.busy--
	rep.kv -= int(r.prompt + r.output)
	return rep
}

func (m *model) complete(i int32, t int64) {
	ri := m.reqs[i].replica
	rep := m.unslot(i)
	if m.svc.FailureRate > 0 && m.rngMisc.Float64() < m.svc.FailureRate {
		m.finish(i, t, metrics.OutcomeError, 500, nil)
	} else {
		m.finish(i, t, metrics.OutcomeOK, 200, nil)
	}
	m.pull(rep, t)
	if rep.state == repDraining {
		m.maybeGone(ri, t)
	}
}

// pull starts queued requests on rep's free slots.
func (m *model) pull(rep *replica, t int64) {
	for rep.busy < m.conc && rep.queue.len() > 0 {
		q := rep.queue.peek()
		r := &m.reqs[q.idx]
		if r.gen != q.gen || r.state != reqQueued {
			rep.queue.pop()
			continue
		}
		if !m.fits(rep, q.idx) {
			break // its head waits for KV room (LLM), first in first out
		}
		rep.queue.pop()
		rep.queued--
		m.serve(q.idx, rep, t)
	}
}

// finish ends request i at t and frees it.
func (m *model) finish(i int32, t int64, outcome metrics.Outcome, status int, berr error) {
	r := &m.reqs[i]
	now := m.eng.at(t)
	lat := time.Duration(t - r.arrive)
	var tokens float64 // what the LLM gateway records: a success's tokens
	if outcome == metrics.OutcomeOK {
		tokens = float64(r.prompt + r.output)
	}
	m.windows[r.tenant].Done(now, metrics.Observation{Latency: lat, Outcome: outcome, Value: tokens})
	if r.res.Backend != nil {
		bo := balancer.Outcome{Latency: time.Duration(t - r.arrive), Status: status, Err: berr, At: now}
		if berr != nil {
			bo.Status = 0
		}
		r.res.Done(bo)
	}
	if r.rel != nil {
		r.rel.DoneAt(now, outcome)
	} else {
		r.permit.DoneAt(now, outcome)
	}
	if r.first {
		m.firstN++
		m.firstSum += lat
		m.firstMax = max(m.firstMax, lat)
	}
	m.unhold(i)
	m.hist.Record(lat)
	m.secHist.Record(lat)
	ts := &m.tstats[r.tenant]
	ts.hist.Record(lat)
	switch {
	case outcome != metrics.OutcomeOK:
		m.sec.failed++
		m.total.failed++
		ts.failed++
	default:
		m.sec.served++
		m.total.served++
		ts.served++
		if m.llm != nil && m.llmServed(r, t) || m.llm == nil && int64(lat) > m.slo {
			m.sec.slow++
			m.total.slow++
			ts.slow++
		}
	}
	m.release1(i)
}

func (m *model) drainBuffer(t int64) {
	for m.ready > 0 && m.buffer.len() > 0 {
		q := m.buffer.pop()
		r := &m.reqs[q.idx]
		if r.gen != q.gen || r.state != reqBuffered {
			continue
		}
		m.buffered--
		m.dispatch(q.idx, t)
	}
}

func (m *model) crash(ri int32, t int64) {
	rep := m.reps[ri]
	m.bill(t)
	rep.state = repStarting
	rep.gen++
	m.ready--
	m.starting++
	_ = m.updatePool()
	_ = m.setReady()
	for _, i := range rep.slots {
		if i >= 0 {
			m.unslot(i)
			m.finish(i, t, metrics.OutcomeError, 0, errCrashed)
		}
	}
	for rep.queue.len() > 0 {
		q := rep.queue.pop()
		if r := &m.reqs[q.idx]; r.gen == q.gen && r.state == reqQueued {
			m.finish(q.idx, t, metrics.OutcomeError, 0, errCrashed)
		}
	}
	rep.queued = 0
	rep.stopSteps()
	m.eng.schedule(event{t: t + m.cold, kind: evReady, idx: ri, gen: rep.gen})
}

func (m *model) newReplica() int32 {
	for i, rep := range m.reps {
		if rep.state == repFree {
			rep.gen++
			return int32(i)
		}
	}
	i := len(m.reps)
	id := "r" + strconv.Itoa(i)
	n := max(m.svc.Concurrency, m.conc)
	rep := &replica{id: id, url: "http://" + id + ".sim", slots: make([]int32, n)}
	for k := range rep.slots {
		rep.slots[k] = -1
	}
	rep.freeSlots = make([]int32, 0, n)
	for k := n - 1; k >= 0; k-- {
		rep.freeSlots = append(rep.freeSlots, int32(k))
	}
	m.reps = append(m.reps, rep)
	return int32(i)
}

// bill adds the replica-time since the last change.
func (m *model) bill(t int64) {
	if t > m.billedAt {
		m.replicaNs += float64(m.starting+m.ready+m.draining) * float64(t-m.billedAt)
		m.billedAt = t
	}
}
