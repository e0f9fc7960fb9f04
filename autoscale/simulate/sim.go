package simulate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// This file is a run: it wires the engine (engine.go) and the service model
// (model.go) to the real scaling loop, steps the loop on the engine's ticks, and
// samples the timeline every second.

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
	// Admitter, when set, decides on each request instead of the real admission
	// (whose settings in the scenario then do nothing): a comparison with another
	// library's limiter plugs in here. The loop's shed and throttle actions still go
	// to the real admission, which no request then passes.
	Admitter Admitter
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

// sim is one run: the engine, the service model, and the real scaling loop wired to
// them. It is the engine's [driver]: the model takes events and arrivals; the run
// closes the timeline's seconds and steps the loop.
type sim struct {
	cfg   Config
	sc    Scenario // with the default SLO
	flapW time.Duration

	eng *engine
	m   *model
	arr *merged

	loop    *autoscale.Loop
	act     *simActuator
	policy  autoscale.Policy
	release func() error

	desired    int
	wakeDemand int   // the hold queue's last wake
	wakeStep   bool  // the wake rose: step the loop after the instant
	err        error // a step's error outside a tick
	policyErrs int
	steps      int
	timeline   []Sample
}

var _ driver = (*sim)(nil)

func (s *sim) event(ctx context.Context, e event, t int64) {
	s.m.event(e, t)
	s.afterInstant(ctx, t)
}

func (s *sim) arrive(ctx context.Context, t int64, tenant int) {
	s.m.arrive(ctx, t, tenant)
	s.afterInstant(ctx, t)
}

// afterInstant applies what an event or arrival left for after it: a waiting
// admitter's decisions, the hold queue's freed slots and a wake.
func (s *sim) afterInstant(ctx context.Context, t int64) {
	if len(s.m.decided) > 0 {
		s.m.flushDecided(t)
	}
	if len(s.m.hq.done) > 0 {
		s.m.flushDone()
	}
	if s.wakeStep {
		s.wakeNow(ctx, t)
	}
}

func (s *sim) second(t int64) { s.closeSecond(t) }

func (s *sim) tick(ctx context.Context, t int64) error {
	if s.err != nil {
		return s.err
	}
	return s.step(ctx, t)
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
	if sc.SLO == 0 && svc.LLM != nil {
		sc.SLO = svc.LLM.slo()
	}
	if sc.SLO == 0 {
		sc.SLO = DefaultSLO
	}
	start := cfg.Start
	if start.IsZero() {
		start = defaultStart
	}
	tick := cmp.Or(cfg.Policy.Tick, time.Second)
	eng := newEngine(start, sc.Duration, tick)
	m := &model{
		eng: eng, svc: svc,
		slo: int64(sc.SLO), timeout: int64(svc.Timeout), cold: int64(svc.ColdStart),
		byBackend: map[*balancer.Backend]int32{},
		conc:      svc.Concurrency, svcTime: svc.ServiceTime, changes: sc.Changes,
		alt: cfg.Admitter, adaptive: sc.Adaptive != nil, slow: !svc.Slowdown.IsZero(),
		rngSvc:  serviceRand(cfg.Seed),
		rngMisc: rand.New(rand.NewPCG(cfg.Seed, 3)),
	}
	if w, ok := cfg.Admitter.(WaitingAdmitter); ok {
		m.waiting = w
	}
	s := &sim{
		cfg: cfg, sc: sc, eng: eng, m: m,
		flapW:   cmp.Or(cfg.FlapWindow, DefaultFlapWindow),
		act:     &simActuator{},
		desired: -1,
	}
	reg, err := metrics.NewRegistry(metrics.WithClock(eng.clock))
	if err != nil {
		return nil, fmt.Errorf("simulate: registry: %w", err)
	}
	m.route = reg.Window(metrics.ScopeRoute, RouteName)

	// Arrivals.
	switch p := sc.Traffic.(type) {
	case Mix:
		for _, t := range p {
			m.tnames = append(m.tnames, t.Name)
			m.prios = append(m.prios, t.Priority)
			m.windows = append(m.windows, middleware.Windows{Route: m.route, Tenant: reg.Window(metrics.ScopeTenant, t.Name)})
		}
	default:
		m.tnames, m.prios = []string{""}, []int{0}
		m.windows = []middleware.Windows{{Route: m.route}}
	}
	s.arr = arrivalsFor(sc, cfg.Seed)
	if svc.LLM != nil {
		_, mix := sc.Traffic.(Mix)
		m.newLLM(*svc.LLM, reg, cfg.Seed, mix)
	}
	m.tstats = make([]tenantStats, len(m.tnames))
	for i, c := range sc.Changes {
		eng.schedule(event{t: int64(c.At), kind: evChange, idx: int32(i)})
	}

	// Admission and balancer: the real ones, with the run's randomness and clock.
	admRng := rand.New(rand.NewPCG(cfg.Seed, 4))
	admOpts := []middleware.AdmissionOption{middleware.WithAdmissionRand(admRng), middleware.WithAdmissionClock(eng.clock)}
	if sc.Adaptive != nil {
		admOpts = append(admOpts, middleware.WithAdaptiveLimit(*sc.Adaptive), middleware.WithAdmissionRegistry(reg))
	}
	if mix, ok := sc.Traffic.(Mix); ok {
		if q := newQuotas(mix); q != nil {
			admOpts = append(admOpts, middleware.WithTenantLimiter(q))
		}
	}
	if m.adm, err = middleware.NewAdmission(sc.Admission, admOpts...); err != nil {
		return nil, fmt.Errorf("simulate: admission: %w", err)
	}
	balRng := rand.New(rand.NewPCG(cfg.Seed, 5))
	if m.pool, err = balancer.New(balancer.WithClock(eng.clock), balancer.WithRand(balRng)); err != nil {
		return nil, fmt.Errorf("simulate: balancer: %w", err)
	}

	// The policy and the loop.
	env := Env{
		Target: TargetName, Route: RouteName, Concurrency: svc.Concurrency,
		ServiceTime: svc.ServiceTime.Mean(), ColdStart: svc.ColdStart, SLO: sc.SLO,
		Min: svc.Min, Max: svc.Max, Clock: eng.clock, Batching: svc.LLM != nil,
		future: &future{sc: sc, seed: cfg.Seed},
	}
	if _, ok := sc.Traffic.(Mix); ok {
		env.Tenants = append(env.Tenants, m.tnames...)
	}
	s.policy, s.release, err = cfg.Policy.New(env)
	if err != nil {
		return nil, fmt.Errorf("simulate: policy %q: %w", cfg.Policy.Name, err)
	}
	s.loop, err = autoscale.NewLoop(
		autoscale.WithPolicy(s.policy),
		autoscale.WithRegistry(reg),
		autoscale.WithTargets(autoscale.Target{
			Name: TargetName, Min: svc.Min, Max: svc.Max, Actuator: s.act, Safety: cfg.Policy.Safety,
		}),
		autoscale.WithTick(tick),
		autoscale.WithClock(eng.clock),
		autoscale.WithShedder(m.adm),
		autoscale.WithThrottler(m.adm),
		autoscale.WithPool(TargetName, m.pool),
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
	if err := m.warm(svc.Replicas); err != nil {
		s.close()
		return nil, err
	}
	if sc.Hold != nil {
		if err := s.newHold(*sc.Hold); err != nil {
			s.close()
			return nil, err
		}
	}
	s.act.setSpec(m.spec())
	s.timeline = make([]Sample, 0, int(sc.Duration/time.Second)+1)
	return s, nil
}

// arrivalsFor returns the arrivals of a run of sc with seed, tagged with their tenants
// (the index into a [Mix]; 0 without one). The oracle draws the same ones.
func arrivalsFor(sc Scenario, seed uint64) *merged {
	var gens []arrivals
	if mix, ok := sc.Traffic.(Mix); ok {
		for i, t := range mix {
			gens = append(gens, arrivalsOf(t.Profile, rand.New(rand.NewPCG(seed, 100+uint64(i))), sc.Duration))
		}
	} else {
		gens = append(gens, arrivalsOf(sc.Traffic, rand.New(rand.NewPCG(seed, 1)), sc.Duration))
	}
	return newMerged(gens)
}

// serviceRand returns the source of a run's service times, drawn one per request as it
// starts. The oracle draws the same ones.
func serviceRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 2)) }

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

func (s *sim) run(ctx context.Context) error {
	if err := s.eng.run(ctx, s.arr, s); err != nil {
		return err
	}
	if s.err != nil {
		return s.err
	}
	end := s.eng.end
	s.m.bill(end)
	if end > int64(len(s.timeline))*int64(time.Second) {
		s.closeSecond(end)
	}
	return nil
}

func (s *sim) step(ctx context.Context, t int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	tk, err := s.loop.Step(ctx, s.eng.at(t))
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
		err := s.m.scaleTo(n, t)
		s.act.setSpec(s.m.spec())
		return err
	}
	return nil
}

// closeSecond ends the timeline's current second at t.
func (s *sim) closeSecond(t int64) {
	m := s.m
	m.bill(t)
	from := time.Duration(len(s.timeline)) * time.Second
	smp := Sample{
		T:        from,
		Offered:  s.sc.Traffic.Rate(from),
		Arrivals: m.sec.arrivals, Served: m.sec.served, Shed: m.sec.shed,
		Failed: m.sec.failed, Slow: m.sec.slow,
		P50: m.secHist.Quantile(0.5), P99: m.secHist.Quantile(0.99),
		Replicas: m.spec(), Ready: m.ready, Draining: m.draining,
		Desired: s.desired, InFlight: int(m.route.InFlight()), Queued: m.queuedNow(),
		ReplicaSeconds: m.replicaNs / float64(time.Second),
		Limit:          m.limitNow(),
	}
	s.timeline = append(s.timeline, smp)
	m.sec = counts{}
	m.secHist.Reset()
}

// halfSource is a random source whose Float64 is always 0.5: the loop's back-off jitter
// is the middle of its range, so runs repeat exactly.
type halfSource struct{}

func (halfSource) Uint64() uint64 { return 1 << 52 }
