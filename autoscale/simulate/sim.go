package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// The names the simulated service goes by: the loop's target, the balancer pool, and
// the key of its windows in the route scope.
const (
	TargetName = "api"
	RouteName  = "api"
)

// DefaultFlapWindow is the window within which a reversal of the scaling direction
// counts as a flap.
const DefaultFlapWindow = 120 * time.Second

// DefaultStart is the simulated wall time at which runs start.
var defaultStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Config configures one run.
type Config struct {
	// Scenario is the service, traffic and SLO. Required.
	Scenario Scenario
	// Policy is the scaling policy and its loop settings. Required.
	Policy Policy
	// Seed seeds every random draw of the run: the same seed gives the same result.
	Seed uint64
	// FlapWindow: two consecutive scale events in opposite directions at most this far
	// apart are a flap. Zero means [DefaultFlapWindow].
	FlapWindow time.Duration
	// Start is the simulated wall time of the run's start. Zero means
	// 2025-01-01T00:00:00Z.
	Start time.Time
}

// Run simulates cfg.Scenario under cfg.Policy and returns the timeline and summary.
// It runs on the calling goroutine (the loop's actuator calls run on goroutines the
// loop owns and are waited for after every step) and returns ctx's error, wrapped, if
// ctx ends first. It returns an error wrapping [ErrInvalidConfig] for a bad
// configuration.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	s, err := newSim(cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.run(ctx); err != nil {
		return nil, err
	}
	return s.result(), nil
}

// request states
const (
	stFree uint8 = iota
	stBuffered
	stQueued
	stServing
)

// replica states
const (
	repFree uint8 = iota
	repStarting
	repReady
	repDraining
)

// event kinds
const (
	evDone uint8 = iota
	evTimeout
	evReady
	evCrash
	evDrained
)

type request struct {
	arrive  int64
	start   int64
	gen     uint32
	tenant  int32
	replica int32
	slot    int32
	state   uint8
	permit  middleware.Permit
	res     balancer.Result
}

type replica struct {
	id        string
	url       string
	state     uint8
	gen       uint32
	busy      int
	slots     []int32 // request index per slot, -1 when free
	freeSlots []int32
	queue     fifo
	queued    int
	billUntil int64
	backend   *balancer.Backend
}

type simActuator struct {
	mu      sync.Mutex
	spec    int
	pending int
	has     bool
}

var (
	_ actuator.Actuator      = (*simActuator)(nil)
	_ actuator.ReplicaReader = (*simActuator)(nil)
)

func (a *simActuator) Scale(_ context.Context, req actuator.Request) error {
	a.mu.Lock()
	a.pending, a.has = req.Replicas, true
	a.mu.Unlock()
	return nil
}

func (a *simActuator) Replicas(context.Context, actuator.Target) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.spec, nil
}

func (a *simActuator) take() (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.pending, a.has
	a.has = false
	return n, ok
}

func (a *simActuator) setSpec(n int) {
	a.mu.Lock()
	a.spec = n
	a.mu.Unlock()
}

type sim struct {
	cfg     Config
	sc      Scenario
	svc     Service
	slo     int64
	timeout int64
	cold    int64
	end     int64
	tick    int64
	startNS int64
	flapW   time.Duration

	clock   *metrics.ManualClock
	reg     *metrics.Registry
	route   *metrics.Window
	tenants []*metrics.Window
	tnames  []string
	adm     *middleware.Admission
	pool    *balancer.Pool
	loop    *autoscale.Loop
	act     *simActuator
	policy  autoscale.Policy
	release func() error

	arr     *merged
	rngSvc  *rand.Rand
	rngMisc *rand.Rand
	balReq  balancer.Request

	ev        eventHeap
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

	// accounting
	billedAt   int64
	replicaNs  float64
	maxRep     int
	scales     []ScaleEvent
	desired    int
	policyErrs int
	steps      int

	total    counts
	sec      counts
	secHist  metrics.Histogram
	hist     metrics.Histogram
	timeline []Sample
}

type counts struct {
	arrivals, served, shed, failed, slow uint64
}

func newSim(cfg Config) (*sim, error) {
	if err := cfg.Scenario.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	if cfg.FlapWindow < 0 {
		return nil, fmt.Errorf("%w: flap window %v is negative", ErrInvalidConfig, cfg.FlapWindow)
	}
	sc := cfg.Scenario
	svc := sc.Service.withDefaults()
	if sc.SLO == 0 {
		sc.SLO = DefaultSLO
	}
	start := cfg.Start
	if start.IsZero() {
		start = defaultStart
	}
	s := &sim{
		cfg: cfg, sc: sc, svc: svc,
		slo: int64(sc.SLO), timeout: int64(svc.Timeout), cold: int64(svc.ColdStart),
		end: int64(sc.Duration), startNS: start.UnixNano(),
		flapW:     cmpOr(cfg.FlapWindow, DefaultFlapWindow),
		tick:      int64(cmpOr(cfg.Policy.Tick, time.Second)),
		clock:     metrics.NewManualClock(start),
		act:       &simActuator{},
		byBackend: map[*balancer.Backend]int32{},
		desired:   -1,
		rngSvc:    rand.New(rand.NewPCG(cfg.Seed, 2)),
		rngMisc:   rand.New(rand.NewPCG(cfg.Seed, 3)),
	}
	var err error
	if s.reg, err = metrics.NewRegistry(metrics.WithClock(s.clock)); err != nil {
		return nil, fmt.Errorf("simulate: registry: %w", err)
	}
	s.route = s.reg.Window(metrics.ScopeRoute, RouteName)

	// Arrivals.
	arrRng := rand.New(rand.NewPCG(cfg.Seed, 1))
	var gens []arrivals
	switch p := sc.Traffic.(type) {
	case Mix:
		for i, t := range p {
			s.tnames = append(s.tnames, t.Name)
			s.tenants = append(s.tenants, s.reg.Window(metrics.ScopeTenant, t.Name))
			r := rand.New(rand.NewPCG(cfg.Seed, 100+uint64(i)))
			gens = append(gens, arrivalsOf(t.Profile, r, sc.Duration))
		}
	default:
		s.tnames = []string{""}
		s.tenants = []*metrics.Window{nil}
		gens = append(gens, arrivalsOf(p, arrRng, sc.Duration))
	}
	s.arr = newMerged(gens)

	// Admission and balancer: the real ones, with the run's randomness and clock.
	admRng := rand.New(rand.NewPCG(cfg.Seed, 4))
	if s.adm, err = middleware.NewAdmission(middleware.AdmissionConfig{},
		middleware.WithAdmissionRand(admRng), middleware.WithAdmissionClock(s.clock)); err != nil {
		return nil, fmt.Errorf("simulate: admission: %w", err)
	}
	balRng := rand.New(rand.NewPCG(cfg.Seed, 5))
	if s.pool, err = balancer.New(balancer.WithClock(s.clock), balancer.WithRand(balRng)); err != nil {
		return nil, fmt.Errorf("simulate: balancer: %w", err)
	}

	// The policy and the loop.
	env := Env{
		Target: TargetName, Route: RouteName, Concurrency: svc.Concurrency,
		ServiceTime: svc.ServiceTime.Mean(), ColdStart: svc.ColdStart, SLO: sc.SLO,
		Min: svc.Min, Max: svc.Max, Clock: s.clock,
	}
	if _, ok := sc.Traffic.(Mix); ok {
		env.Tenants = append(env.Tenants, s.tnames...)
	}
	s.policy, s.release, err = cfg.Policy.New(env)
	if err != nil {
		return nil, fmt.Errorf("simulate: policy %q: %w", cfg.Policy.Name, err)
	}
	s.loop, err = autoscale.NewLoop(
		autoscale.WithPolicy(s.policy),
		autoscale.WithRegistry(s.reg),
		autoscale.WithTargets(autoscale.Target{
			Name: TargetName, Min: svc.Min, Max: svc.Max, Actuator: s.act, Safety: cfg.Policy.Safety,
		}),
		autoscale.WithTick(time.Duration(s.tick)),
		autoscale.WithClock(s.clock),
		autoscale.WithShedder(s.adm),
		autoscale.WithThrottler(s.adm),
		autoscale.WithPool(TargetName, s.pool),
		autoscale.WithActuation(autoscale.Actuation{Attempts: 1}),
		autoscale.WithRand(halfSource{}),
		autoscale.WithHistory(16),
		autoscale.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		if s.release != nil {
			_ = s.release()
		}
		return nil, fmt.Errorf("simulate: loop: %w", err)
	}

	// The replicas at the start are warm.
	for range svc.Replicas {
		ri := s.newReplica()
		rep := s.reps[ri]
		rep.state = repReady
		s.ready++
		s.scheduleCrash(ri, 0)
	}
	s.maxRep = s.ready
	s.act.setSpec(s.ready)
	if err := s.updatePool(); err != nil {
		s.close()
		return nil, err
	}
	s.timeline = make([]Sample, 0, int(sc.Duration/time.Second)+1)
	return s, nil
}

func arrivalsOf(p Profile, rng *rand.Rand, d time.Duration) arrivals {
	if tr, ok := p.(*Trace); ok {
		return tr.arrivals(rng, d)
	}
	return newPoisson(p, rng, d)
}

func (s *sim) close() {
	if s.loop != nil {
		_ = s.loop.Close()
	}
	if s.release != nil {
		_ = s.release()
		s.release = nil
	}
}

func (s *sim) at(t int64) time.Time { return time.Unix(0, s.startNS+t) }

func (s *sim) run(ctx context.Context) error {
	const sec = int64(time.Second)
	nextArr, tenant, more := s.arr.next()
	nextSec := sec
	// The loop steps on whole ticks, after the events of the same instant. (A window's
	// span covers its completed buckets plus the current one up to now, so a read on a
	// bucket boundary is not empty.)
	nextTick := s.tick
	for {
		t, kind := s.end, 4
		if s.ev.len() > 0 && s.ev.top().t < t {
			t, kind = s.ev.top().t, 0
		}
		if more && nextArr < t {
			t, kind = nextArr, 1
		}
		if nextSec < t || (nextSec == t && kind == 4) {
			t, kind = nextSec, 2
		}
		if nextTick < t || (nextTick == t && kind == 4) {
			t, kind = nextTick, 3
		}
		if kind == 4 {
			break
		}
		s.clock.Set(s.at(t))
		switch kind {
		case 0:
			e := s.ev.pop()
			s.event(e, t)
		case 1:
			s.arrive(ctx, t, tenant)
			nextArr, tenant, more = s.arr.next()
		case 2:
			s.closeSecond(t)
			nextSec += sec
		case 3:
			if err := s.step(ctx, t); err != nil {
				return err
			}
			nextTick += s.tick
		}
	}
	s.bill(s.end)
	if s.end > int64(len(s.timeline))*sec {
		s.closeSecond(s.end)
	}
	return nil
}

func (s *sim) step(ctx context.Context, t int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	tk, err := s.loop.Step(ctx, s.at(t))
	if err != nil {
		return fmt.Errorf("simulate: step: %w", err)
	}
	s.steps++
	if tk.PolicyErr != "" {
		s.policyErrs++
	}
	for _, d := range tk.Decisions {
		if d.Target == TargetName && d.Desired >= 0 {
			s.desired = d.Desired
		}
	}
	if err := s.loop.Flush(ctx); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	if n, ok := s.act.take(); ok {
		return s.scaleTo(n, t)
	}
	return nil
}

func (s *sim) event(e event, t int64) {
	switch e.kind {
	case evDone:
		r := &s.reqs[e.idx]
		if r.gen != e.gen || r.state != stServing {
			return
		}
		s.complete(e.idx, t)
	case evTimeout:
		r := &s.reqs[e.idx]
		if r.gen != e.gen {
			return
		}
		switch r.state {
		case stQueued:
			s.reps[r.replica].queued--
		case stBuffered:
			s.buffered--
		default:
			return
		}
		s.finish(e.idx, t, metrics.OutcomeError, 504, context.Canceled)
	case evReady:
		rep := s.reps[e.idx]
		if rep.gen != e.gen || rep.state != repStarting {
			return
		}
		s.bill(t)
		rep.state = repReady
		s.starting--
		s.ready++
		rep.gen++
		s.scheduleCrash(e.idx, t)
		_ = s.updatePool()
		s.drainBuffer(t)
	case evCrash:
		rep := s.reps[e.idx]
		if rep.gen != e.gen || rep.state != repReady {
			return
		}
		s.crash(e.idx, t)
	case evDrained:
		rep := s.reps[e.idx]
		if rep.gen == e.gen && rep.state == repDraining {
			s.maybeGone(e.idx, t)
		}
	}
}

// scheduleCrash draws the time a replica that became ready at t crashes.
func (s *sim) scheduleCrash(ri int32, t int64) {
	if s.svc.CrashEvery > 0 {
		rep := s.reps[ri]
		s.ev.push(event{t: t + int64(s.rngMisc.ExpFloat64()*float64(s.svc.CrashEvery)), kind: evCrash, idx: ri, gen: rep.gen})
	}
}

func (s *sim) alloc() int32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		return i
	}
	s.reqs = append(s.reqs, request{})
	return int32(len(s.reqs) - 1)
}

func (s *sim) release1(i int32) {
	r := &s.reqs[i]
	gen := r.gen + 1
	*r = request{gen: gen}
	s.free = append(s.free, i)
}

var errCrashed = errors.New("simulate: replica crashed")

func (s *sim) arrive(ctx context.Context, t int64, tenant int) {
	s.sec.arrivals++
	s.total.arrivals++
	now := s.at(t)
	tw := s.tenants[tenant]
	permit, err := s.adm.Admit(ctx, middleware.Info{Route: RouteName, Tenant: s.tnames[tenant], Now: now})
	if err != nil {
		o := metrics.Observation{Outcome: metrics.OutcomeRejected}
		s.route.RecordAt(now, o)
		if tw != nil {
			tw.RecordAt(now, o)
		}
		s.sec.shed++
		s.total.shed++
		return
	}
	s.route.StartAt(now)
	if tw != nil {
		tw.StartAt(now)
	}
	i := s.alloc()
	r := &s.reqs[i]
	r.arrive, r.tenant, r.permit, r.replica, r.slot = t, int32(tenant), permit, -1, -1
	if s.ready == 0 {
		s.bufferReq(i, t)
		return
	}
	s.dispatch(i, t)
}

func (s *sim) bufferReq(i int32, t int64) {
	r := &s.reqs[i]
	if r.state == stFree {
		s.ev.push(event{t: r.arrive + s.timeout, kind: evTimeout, idx: i, gen: r.gen})
	}
	r.state = stBuffered
	s.buffer.push(qent{i, r.gen})
	s.buffered++
}

func (s *sim) dispatch(i int32, t int64) {
	r := &s.reqs[i]
	s.balReq.Now = s.at(t)
	res, err := s.pool.Pick(&s.balReq)
	if err != nil {
		s.bufferReq(i, t)
		return
	}
	ri := s.byBackend[res.Backend]
	rep := s.reps[ri]
	r.res, r.replica = res, ri
	switch {
	case rep.busy < s.svc.Concurrency:
		s.serve(i, rep, t)
	case s.svc.QueueDepth > 0 && rep.queued >= s.svc.QueueDepth:
		s.finish(i, t, metrics.OutcomeError, 503, nil)
	default:
		if r.state == stFree {
			s.ev.push(event{t: r.arrive + s.timeout, kind: evTimeout, idx: i, gen: r.gen})
		}
		r.state = stQueued
		rep.queue.push(qent{i, r.gen})
		rep.queued++
	}
}

func (s *sim) serve(i int32, rep *replica, t int64) {
	r := &s.reqs[i]
	n := len(rep.freeSlots) - 1
	slot := rep.freeSlots[n]
	rep.freeSlots = rep.freeSlots[:n]
	rep.slots[slot] = i
	rep.busy++
	r.slot, r.state, r.start = slot, stServing, t
	d := int64(s.svc.ServiceTime.Sample(s.rngSvc))
	s.ev.push(event{t: t + max(d, 0), kind: evDone, idx: i, gen: r.gen})
}

// unslot frees request i's slot at its replica.
func (s *sim) unslot(i int32) *replica {
	r := &s.reqs[i]
	rep := s.reps[r.replica]
	rep.slots[r.slot] = -1
	rep.freeSlots = append(rep.freeSlots, r.slot)
	rep.busy--
	return rep
}

func (s *sim) complete(i int32, t int64) {
	ri := s.reqs[i].replica
	rep := s.unslot(i)
	if s.svc.FailureRate > 0 && s.rngMisc.Float64() < s.svc.FailureRate {
		s.finish(i, t, metrics.OutcomeError, 500, nil)
	} else {
		s.finish(i, t, metrics.OutcomeOK, 200, nil)
	}
	s.pull(rep, t)
	if rep.state == repDraining {
		s.maybeGone(ri, t)
	}
}

// pull starts queued requests on rep's free slots.
func (s *sim) pull(rep *replica, t int64) {
	for rep.busy < s.svc.Concurrency && rep.queue.len() > 0 {
		q := rep.queue.pop()
		r := &s.reqs[q.idx]
		if r.gen != q.gen || r.state != stQueued {
			continue
		}
		rep.queued--
		s.serve(q.idx, rep, t)
	}
}

// finish ends request i at t and frees it.
func (s *sim) finish(i int32, t int64, outcome metrics.Outcome, status int, berr error) {
	r := &s.reqs[i]
	now := s.at(t)
	lat := time.Duration(t - r.arrive)
	o := metrics.Observation{Latency: lat, Outcome: outcome}
	s.route.DoneAt(now, o)
	if tw := s.tenants[r.tenant]; tw != nil {
		tw.DoneAt(now, o)
	}
	if r.res.Backend != nil {
		bo := balancer.Outcome{Latency: time.Duration(t - r.arrive), Status: status, Err: berr, At: now}
		if berr != nil {
			bo.Status = 0
		}
		r.res.Done(bo)
	}
	r.permit.Done()
	s.hist.Record(lat)
	s.secHist.Record(lat)
	switch {
	case outcome != metrics.OutcomeOK:
		s.sec.failed++
		s.total.failed++
	default:
		s.sec.served++
		s.total.served++
		if int64(lat) > s.slo {
			s.sec.slow++
			s.total.slow++
		}
	}
	s.release1(i)
}

func (s *sim) drainBuffer(t int64) {
	for s.ready > 0 && s.buffer.len() > 0 {
		q := s.buffer.pop()
		r := &s.reqs[q.idx]
		if r.gen != q.gen || r.state != stBuffered {
			continue
		}
		s.buffered--
		s.dispatch(q.idx, t)
	}
}

func (s *sim) crash(ri int32, t int64) {
	rep := s.reps[ri]
	s.bill(t)
	rep.state = repStarting
	rep.gen++
	s.ready--
	s.starting++
	_ = s.updatePool()
	for _, i := range rep.slots {
		if i >= 0 {
			s.unslot(i)
			s.finish(i, t, metrics.OutcomeError, 0, errCrashed)
		}
	}
	for rep.queue.len() > 0 {
		q := rep.queue.pop()
		if r := &s.reqs[q.idx]; r.gen == q.gen && r.state == stQueued {
			s.finish(q.idx, t, metrics.OutcomeError, 0, errCrashed)
		}
	}
	rep.queued = 0
	s.ev.push(event{t: t + s.cold, kind: evReady, idx: ri, gen: rep.gen})
}

func (s *sim) newReplica() int32 {
	for i, rep := range s.reps {
		if rep.state == repFree {
			rep.gen++
			return int32(i)
		}
	}
	i := len(s.reps)
	id := "r" + strconv.Itoa(i)
	rep := &replica{id: id, url: "http://" + id + ".sim", slots: make([]int32, s.svc.Concurrency)}
	for k := range rep.slots {
		rep.slots[k] = -1
	}
	rep.freeSlots = make([]int32, 0, s.svc.Concurrency)
	for k := s.svc.Concurrency - 1; k >= 0; k-- {
		rep.freeSlots = append(rep.freeSlots, int32(k))
	}
	s.reps = append(s.reps, rep)
	return int32(i)
}

// bill adds the replica-time since the last change.
func (s *sim) bill(t int64) {
	if t > s.billedAt {
		s.replicaNs += float64(s.starting+s.ready+s.draining) * float64(t-s.billedAt)
		s.billedAt = t
	}
}

// scaleTo applies a new spec count at t.
func (s *sim) scaleTo(n int, t int64) error {
	cur := s.starting + s.ready
	if n == cur {
		return nil
	}
	s.bill(t)
	s.scales = append(s.scales, ScaleEvent{At: time.Duration(t), From: cur, To: n})
	poolChanged := false
	if n > cur {
		for range n - cur {
			ri := s.newReplica()
			rep := s.reps[ri]
			rep.state = repStarting
			s.starting++
			s.ev.push(event{t: t + s.cold, kind: evReady, idx: ri, gen: rep.gen})
		}
	} else {
		for k := cur - n; k > 0; k-- {
			// Not-ready replicas go first, the youngest first (as a ReplicaSet does);
			// then the ready replica with the least work, the newest on ties.
			best := int32(-1)
			for i := len(s.reps) - 1; i >= 0; i-- {
				rep := s.reps[i]
				switch {
				case rep.state == repStarting:
					if best < 0 || s.reps[best].state != repStarting {
						best = int32(i)
					}
				case rep.state == repReady:
					if best < 0 || (s.reps[best].state == repReady && rep.busy+rep.queued < s.reps[best].busy+s.reps[best].queued) {
						best = int32(i)
					}
				}
			}
			rep := s.reps[best]
			rep.gen++
			if rep.state == repStarting {
				rep.state = repFree
				s.starting--
				continue
			}
			rep.state = repDraining
			s.ready--
			s.draining++
			rep.billUntil = t + int64(s.svc.ScaleDownDelay)
			poolChanged = true
			if rep.billUntil > t {
				s.ev.push(event{t: rep.billUntil, kind: evDrained, idx: best, gen: rep.gen})
			}
			s.maybeGone(best, t)
		}
	}
	s.maxRep = max(s.maxRep, s.starting+s.ready+s.draining)
	s.act.setSpec(s.starting + s.ready)
	if poolChanged {
		return s.updatePool()
	}
	return nil
}

// maybeGone frees a draining replica that is empty and past its billing delay.
func (s *sim) maybeGone(ri int32, t int64) {
	rep := s.reps[ri]
	if rep.state != repDraining || rep.busy > 0 || rep.queued > 0 || t < rep.billUntil {
		return
	}
	s.bill(t)
	rep.state = repFree
	rep.gen++
	rep.queue.reset()
	s.draining--
	if rep.backend != nil {
		delete(s.byBackend, rep.backend)
		rep.backend = nil
	}
}

// updatePool publishes the ready replicas to the balancer.
func (s *sim) updatePool() error {
	s.endpoints = s.endpoints[:0]
	for _, rep := range s.reps {
		if rep.state == repReady {
			s.endpoints = append(s.endpoints, balancer.Endpoint{ID: rep.id, URL: rep.url})
		}
	}
	if err := s.pool.Update(s.endpoints); err != nil {
		return fmt.Errorf("simulate: balancer update: %w", err)
	}
	for i, rep := range s.reps {
		if rep.state != repReady {
			continue
		}
		b, ok := s.pool.Lookup(rep.id)
		if !ok {
			return fmt.Errorf("simulate: balancer lost replica %s", rep.id)
		}
		if rep.backend != b {
			if rep.backend != nil {
				delete(s.byBackend, rep.backend)
			}
			rep.backend = b
		}
		s.byBackend[b] = int32(i)
	}
	return nil
}

// closeSecond ends the timeline's current second at t.
func (s *sim) closeSecond(t int64) {
	s.bill(t)
	k := len(s.timeline)
	from := time.Duration(k) * time.Second
	queued := s.buffered
	for _, rep := range s.reps {
		queued += rep.queued
	}
	smp := Sample{
		T:        from,
		Offered:  s.sc.Traffic.Rate(from),
		Arrivals: s.sec.arrivals, Served: s.sec.served, Shed: s.sec.shed,
		Failed: s.sec.failed, Slow: s.sec.slow,
		P50: s.secHist.Quantile(0.5), P99: s.secHist.Quantile(0.99),
		Replicas: s.starting + s.ready, Ready: s.ready, Draining: s.draining,
		Desired: s.desired, InFlight: int(s.route.InFlight()), Queued: queued,
		ReplicaSeconds: s.replicaNs / float64(time.Second),
	}
	s.timeline = append(s.timeline, smp)
	s.sec = counts{}
	s.secHist.Reset()
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

func (q *fifo) pop() qent {
	e := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return e
}

func (q *fifo) reset() { q.head, q.n = 0, 0 }

// event is a timed event; ties are broken by insertion order.
type event struct {
	t    int64
	seq  uint64
	idx  int32
	gen  uint32
	kind uint8
}

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

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// halfSource is a random source whose Float64 is always 0.5: the loop's back-off jitter
// is the middle of its range, so runs repeat exactly.
type halfSource struct{}

func (halfSource) Uint64() uint64 { return 1 << 52 }
