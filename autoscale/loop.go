package autoscale

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Sentinel errors of the loop.
var (
	// ErrClosed is returned by [Loop.Step] and [Loop.Run] once the loop is closed.
	ErrClosed = errors.New("autoscale: loop closed")
	// ErrRunning is returned by [Loop.Run] when the loop is already running.
	ErrRunning = errors.New("autoscale: loop already running")
)

// Loop is the scaling loop. Every tick it snapshots the metric windows, asks the policy
// what to do, passes every Scale action through the safety layer (see [Safety]), and
// applies the actions: Scale through the target's actuator, asynchronously, the others
// through the registered appliers. Every tick leaves a [Decision] per target.
//
// Drive it with [Loop.Run] in production or with [Loop.Step] in tests and simulations
// (then call [Loop.Flush] to wait for actuator calls and [Loop.Close] at the end).
//
// Actuator calls run on goroutines the loop owns, at most one per target: a slow
// actuator never builds a queue, because a newer decision replaces a pending one
// (latest wins) and stops the retries of a failing one. [Loop.Close], and the end of
// [Loop.Run], cancel them and wait for them.
//
// A Loop is safe for concurrent use; steps are serialized.
type Loop struct {
	// settings, fixed at construction
	policy         Policy
	shadows        []shadow
	cfgTargets     []Target
	defaultAct     actuator.Actuator
	tick           time.Duration
	clock          metrics.Clock
	source         func(now time.Time) Reader
	pools          map[string]Pool
	scorers        map[string]Scorer
	shedder        Shedder
	bounder        LimitBounder
	throttler      Throttler
	budgeter       Budgeter
	router         Router
	elector        Elector
	observer       func(Tick)
	history        int
	act            Actuation
	rand           *rand.Rand
	logger         *slog.Logger
	meterProvider  metric.MeterProvider
	tracerProvider trace.TracerProvider

	dryRun  atomic.Bool
	refused refusals

	targets []*target // sorted by name
	byName  map[string]int
	ring    *ring
	tel     *telemetry
	tracer  trace.Tracer
	idBase  string
	seq     atomic.Uint64

	stepMu  sync.Mutex // serializes steps
	running atomic.Bool

	closeOnce sync.Once
	closed    atomic.Bool
	wg        sync.WaitGroup

	idleMu sync.Mutex
	active int           // actuation workers running
	idle   chan struct{} // closed when active is 0

	wake chan struct{} // Wake's nudge to Run; buffered 1
}

type shadow struct {
	name string
	p    Policy
}

// NewLoop returns a loop configured by opts. It needs a policy ([WithPolicy]) and at
// least one target ([WithTargets]), each with an actuator or a default one
// ([WithDefaultActuator]). It reports every problem at once, wrapped in [ErrInvalidConfig].
// It starts no goroutine.
func NewLoop(opts ...Option) (*Loop, error) {
	l := &Loop{
		tick:    DefaultTick,
		pools:   map[string]Pool{},
		scorers: map[string]Scorer{},
		history: DefaultHistory,
		act: Actuation{
			Timeout: DefaultTimeout, Attempts: DefaultAttempts,
			RetryBase: DefaultRetryBase, RetryMax: DefaultRetryMax,
		},
		rand: rand.New(runtimeSource{}),
	}
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("nil option"))
			continue
		}
		if err := o(l); err != nil {
			errs = append(errs, err)
		}
	}
	if l.policy == nil {
		errs = append(errs, errors.New("no policy (use WithPolicy)"))
	}
	if len(l.cfgTargets) == 0 {
		errs = append(errs, errors.New("no targets (use WithTargets)"))
	}
	l.act.RetryMax = max(l.act.RetryMax, l.act.RetryBase)
	l.byName = make(map[string]int, len(l.cfgTargets))
	for _, t := range l.cfgTargets {
		if err := t.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := l.byName[t.Name]; dup {
			errs = append(errs, fmt.Errorf("duplicate target %q", t.Name))
			continue
		}
		if t.Actuator == nil {
			if l.defaultAct == nil {
				errs = append(errs, fmt.Errorf("target %q has no actuator and there is no default (use WithDefaultActuator)", t.Name))
				continue
			}
			t.Actuator = l.defaultAct
		}
		l.byName[t.Name] = -1
		l.targets = append(l.targets, newTarget(t))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	slices.SortFunc(l.targets, func(a, b *target) int { return cmp.Compare(a.cfg.Name, b.cfg.Name) })
	for i, t := range l.targets {
		l.byName[t.cfg.Name] = i
	}
	if l.clock == nil {
		l.clock = metrics.NewSystemClock()
	}
	if l.source == nil {
		l.source = func(time.Time) Reader { return emptyReader{} }
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	tel, err := newTelemetry(l.meterProvider, l.targets)
	if err != nil {
		return nil, err
	}
	l.tel = tel
	l.tracer = newTracer(l.tracerProvider)
	l.ring = newRing(l.history)
	var b [4]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	l.idBase = hex.EncodeToString(b[:]) + "-"
	l.idle = make(chan struct{})
	close(l.idle)
	l.wake = make(chan struct{}, 1)
	return l, nil
}

// Tick returns the loop's period.
func (l *Loop) Tick() time.Duration { return l.tick }

// SetDryRun turns dry-run mode on or off; see [WithDryRun].
func (l *Loop) SetDryRun(on bool) { l.dryRun.Store(on) }

// Decisions returns the kept decisions, oldest first. The result is a copy; the slices
// inside each decision are shared and must not be modified.
func (l *Loop) Decisions() []Decision { return l.ring.all() }

// Decision returns the kept decision with the given ID.
func (l *Loop) Decision(id string) (Decision, bool) { return l.ring.get(id) }

// Targets returns the state of every target, sorted by name.
func (l *Loop) Targets() []TargetState {
	out := make([]TargetState, len(l.targets))
	for i, t := range l.targets {
		out[i] = t.state()
	}
	return out
}

// Run steps the loop every tick, at the time its clock reads and on its clock's timers
// (so a [metrics.ManualClock] drives it in tests), until ctx ends. It then
// closes the loop (see [Loop.Close]) and returns ctx's error. It returns [ErrRunning] if
// the loop already runs and [ErrClosed] if it was closed. Errors of single steps are
// recorded and logged, not returned.
func (l *Loop) Run(ctx context.Context) error {
	if l.closed.Load() {
		return ErrClosed
	}
	if !l.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer l.running.Store(false)
	defer l.Close()
	next := l.clock.Now()
	for {
		if _, err := l.Step(ctx, l.clock.Now()); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrClosed) {
				return err
			}
			l.logger.LogAttrs(ctx, slog.LevelWarn, "autoscale: step failed", slog.Any("error", err))
		}
		// Ticks fall on the clock at whole periods from the start; a step that
		// overran skips the ticks it missed, as a time.Ticker drops them.
		next = next.Add(l.tick)
		if now := l.clock.Now(); !next.After(now) {
			next = next.Add((now.Sub(next)/l.tick + 1) * l.tick)
		}
		timer := l.clock.NewTimer(next.Sub(l.clock.Now()))
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C():
				waiting = false
			case <-l.wake:
				// Held requests wait: step now, keep the tick schedule.
				if _, err := l.Step(ctx, l.clock.Now()); err != nil && (ctx.Err() != nil || errors.Is(err, ErrClosed)) {
					timer.Stop()
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return err
				}
			}
		}
	}
}

// Close cancels the loop's actuator calls, waits for them to end and makes later steps
// fail with [ErrClosed]. It is idempotent and returns nil.
func (l *Loop) Close() error {
	l.closeOnce.Do(func() {
		l.stepMu.Lock() // no step dispatches after this
		l.closed.Store(true)
		l.stepMu.Unlock()
		for _, t := range l.targets {
			t.mu.Lock()
			if t.cancel != nil {
				t.cancel()
			}
			t.mu.Unlock()
		}
	})
	l.wg.Wait()
	return nil
}

// Flush waits until no actuator call is pending or running, or ctx ends.
func (l *Loop) Flush(ctx context.Context) error {
	l.idleMu.Lock()
	idle := l.idle
	l.idleMu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("autoscale: flush: %w", ctx.Err())
	}
}

// runtimeSource is math/rand/v2's top-level generator as a [rand.Source]: safe for
// concurrent use and lock-free.
type runtimeSource struct{}

func (runtimeSource) Uint64() uint64 { return rand.Uint64() }

// nextID returns a new decision's ID and number: the loop's stream (idBase)
// and a count from 1.
func (l *Loop) nextID() (string, uint64) {
	n := l.seq.Add(1)
	return l.idBase + strconv.FormatUint(n, 10), n
}

// Step runs one tick at time now: it reads the targets' replicas back from actuators
// that can report them, runs the policy and the shadow policies, passes Scale actions
// through the safety layer, dispatches actuator calls (without waiting for them) and
// applies the other actions. It returns the tick's record; the same decisions are kept
// for [Loop.Decisions].
//
// A failing policy is not an error of Step: it is recorded, and each target for which
// the policy returned no valid Scale action holds (or falls back, see [Fallback]). A
// policy may return actions together with an error (for example [ErrMissingMetrics]
// for some targets): the actions are applied and the other targets hold. Step returns an error only when ctx is done or the loop is closed.
//
// When an observer is set ([WithObserver]), Step calls it with the tick's record after
// the step, outside the loop's locks.
func (l *Loop) Step(ctx context.Context, now time.Time) (Tick, error) {
	tk, err := l.step(ctx, now)
	if err == nil && l.observer != nil {
		l.observer(tk)
	}
	return tk, err
}

func (l *Loop) step(ctx context.Context, now time.Time) (Tick, error) {
	if err := ctx.Err(); err != nil {
		return Tick{}, fmt.Errorf("autoscale: step: %w", err)
	}
	l.stepMu.Lock()
	defer l.stepMu.Unlock()
	if l.closed.Load() {
		return Tick{}, ErrClosed
	}
	start := time.Now()
	ctx, span := l.tracer.Start(ctx, "autoscale.tick", trace.WithTimestamp(start))
	defer span.End()

	tk := Tick{Time: now, DryRun: l.dryRun.Load()}
	tk.Leader = l.elector == nil || l.elector.IsLeader()
	if f, ok := l.elector.(Fencer); ok && tk.Leader {
		tk.Term = f.Term()
	}

	// 1. Read replicas back.
	for _, t := range l.targets {
		if t.reader != nil {
			l.readReplicas(ctx, t)
		}
	}

	// 2. The live policy, on the tick's snapshot (the scale-to-zero activity check
	// reads it first, unlogged).
	snap := NewSnapshot(now, l.source(now))
	tk.Sources = snap.Sources()
	in := &Input{Now: now, Tick: l.tick, Targets: l.Targets(), Metrics: snap}
	tk.Input = in
	defer snap.Freeze()
	l.noteActivity(snap, now)
	snap.startLog(max(MaxRecordedReads, 2*len(l.targets)))
	pstart := time.Now()
	actions, perr := callPolicy(ctx, l.policy, in)
	tk.PolicyDuration = time.Since(pstart)
	tk.Inputs, tk.ScopeInputs, tk.InputsDropped = snap.stopLog()
	l.tel.policyDuration(ctx, tk.PolicyDuration)
	l.refused.ticks.Add(1)
	if perr != nil {
		tk.PolicyErr = perr.Error()
		l.policyFailed(now, perr)
	}
	live := l.outputs(ctx, actions, perr, &tk)

	// 3. Shadows, on the same snapshot: what the live policy read, they read as it did.
	var shadowOut [][]PolicyOutput
	if len(l.shadows) > 0 {
		shadowOut = make([][]PolicyOutput, len(l.shadows))
		for i, s := range l.shadows {
			sstart := time.Now()
			sa, serr := callPolicy(ctx, s.p, in)
			sr := ShadowResult{Policy: s.name, Duration: time.Since(sstart), Actions: sa}
			if serr != nil {
				sr.Err = serr.Error()
			}
			shadowOut[i] = l.outputs(ctx, sa, serr, nil)
			for j := range l.targets {
				if differs(live[j], shadowOut[i][j]) {
					sr.Differences++
				}
			}
			tk.Shadows = append(tk.Shadows, sr)
		}
	}

	// 4. Decisions.
	tk.Decisions = make([]Decision, len(l.targets))
	for i, t := range l.targets {
		var so []ShadowOutput
		for k, s := range l.shadows {
			o := shadowOut[k][i]
			so = append(so, ShadowOutput{Policy: s.name, Output: o, Differs: differs(live[i], o)})
		}
		tk.Decisions[i] = l.decide(t, now, live[i], so, start, &tk)
	}
	for i := range tk.Decisions {
		l.observe(ctx, &tk.Decisions[i])
	}
	tk.Duration = time.Since(start)
	endSpan(span, &tk)
	return tk, nil
}

// callPolicy calls p, turning a panic into an error.
func callPolicy(ctx context.Context, p Policy, in *Input) (actions []Action, err error) {
	defer func() {
		if r := recover(); r != nil {
			actions, err = nil, fmt.Errorf("autoscale: policy panicked: %v", r)
		}
	}()
	return p.Decide(ctx, in)
}

// outputs sorts a policy's actions: Scale actions into one output per target, the
// others (when tk is not nil) into tk.Actions, applied unless in dry-run. When tk is not
// nil (the live policy), every refused action is recorded (see [Loop.Refusals]).
func (l *Loop) outputs(ctx context.Context, actions []Action, perr error, tk *Tick) []PolicyOutput {
	out := make([]PolicyOutput, len(l.targets))
	for _, a := range actions {
		if a == nil {
			continue
		}
		verr := a.Validate()
		if s, ok := a.(Scale); ok {
			i, known := l.byName[s.Target]
			if !known {
				if tk != nil {
					r := ActionResult{Action: a, Why: WhyInvalid, Err: fmt.Sprintf("%v: unknown target %q", ErrInvalidAction, s.Target)}
					tk.Actions = append(tk.Actions, r)
					l.refuse(ctx, tk.Time, a, r.Why, r.Err)
				}
				continue
			}
			o := &out[i]
			switch {
			case verr != nil:
				o.Err = verr.Error()
				if tk != nil {
					l.refuse(ctx, tk.Time, a, WhyInvalid, o.Err)
				}
			case !o.Present || s.Replicas > o.Replicas:
				o.Present, o.Replicas, o.Reason = true, s.Replicas, s.Reason
			}
			o.Panic = o.Panic || (verr == nil && s.Panic)
			continue
		}
		if tk == nil {
			continue
		}
		r := ActionResult{Action: a}
		switch {
		case verr != nil:
			r.Why, r.Err = WhyInvalid, verr.Error()
		case tk.DryRun:
			r.Why = WhyDryRun
		default:
			if err := l.apply(a); err != nil {
				r.Why, r.Err = WhyError, err.Error()
				if errors.Is(err, ErrNoApplier) {
					r.Why = WhyNoApplier
				}
			} else {
				r.Why, r.Applied = WhyApplied, true
			}
		}
		tk.Actions = append(tk.Actions, r)
		if r.Err != "" {
			l.refuse(ctx, tk.Time, a, r.Why, r.Err)
		}
	}
	for i := range out {
		switch {
		case out[i].Present:
			// An invalid Scale action beside a valid one is not a failure.
			out[i].Err = ""
		case perr != nil && !errors.Is(perr, ErrPolicySkipped):
			out[i].Err = perr.Error()
		}
	}
	return out
}

func differs(a, b PolicyOutput) bool {
	return a.Present != b.Present || (a.Present && (a.Replicas != b.Replicas || a.Panic != b.Panic))
}

// apply applies an action other than Scale.
func (l *Loop) apply(a Action) error {
	var err error
	switch a := a.(type) {
	case SetWeight:
		p, ok := l.pools[a.Pool]
		if !ok {
			return fmt.Errorf("%w: pool %q", ErrNoApplier, a.Pool)
		}
		err = p.SetWeight(a.Backend, a.Weight)
	case Eject:
		p, ok := l.pools[a.Pool]
		if !ok {
			return fmt.Errorf("%w: pool %q", ErrNoApplier, a.Pool)
		}
		err = p.Eject(a.Backend, a.Duration)
	case Shed:
		if l.shedder == nil {
			return fmt.Errorf("%w: no shedder", ErrNoApplier)
		}
		if a.Priority != nil {
			ps, ok := l.shedder.(PriorityShedder)
			if !ok {
				return fmt.Errorf("%w: the shedder sheds no priority class", ErrNoApplier)
			}
			err = ps.ShedPriority(*a.Priority, a.Fraction, a.RetryAfter)
			break
		}
		err = l.shedder.Shed(a.Route, a.Fraction, a.RetryAfter)
	case ScoreWeights:
		s := l.scorers[a.Pool]
		if s == nil {
			return fmt.Errorf("%w: no scorer %q", ErrNoApplier, a.Pool)
		}
		err = s.SetScoreWeights(a.Queue, a.KVCache, a.InFlight, a.Latency, a.Prefix)
	case LimitBounds:
		if l.bounder == nil {
			return fmt.Errorf("%w: no limit bounder", ErrNoApplier)
		}
		err = l.bounder.SetLimitBounds(a.Route, a.Min, a.Max)
	case Throttle:
		if l.throttler == nil {
			return fmt.Errorf("%w: no throttler", ErrNoApplier)
		}
		err = l.throttler.Throttle(a.Tenant, a.RPS, a.Burst)
	case Budget:
		if l.budgeter == nil {
			return fmt.Errorf("%w: no budgeter", ErrNoApplier)
		}
		err = l.budgeter.SetTokenRate(a.Tenant, a.Model, a.TokensPerMinute, a.Burst)
	case Route:
		if l.router == nil {
			return fmt.Errorf("%w: no router", ErrNoApplier)
		}
		err = l.router.Route(a.From, a.To, a.Fraction)
	default:
		return fmt.Errorf("%w: %s", ErrNoApplier, a.Kind())
	}
	if err != nil {
		return fmt.Errorf("autoscale: %s: %w", a.Kind(), err)
	}
	return nil
}

// readReplicas reads t's current count back from its actuator.
func (l *Loop) readReplicas(ctx context.Context, t *target) {
	rctx, cancel := context.WithTimeout(ctx, l.act.Timeout)
	n, err := t.reader.Replicas(rctx, t.ref)
	cancel()
	if err != nil {
		if !errors.Is(err, actuator.ErrUnknownTarget) {
			l.logger.LogAttrs(ctx, slog.LevelWarn, "autoscale: cannot read replicas",
				slog.String("target", t.cfg.Name), slog.Any("error", err))
		}
		return
	}
	if n < 0 {
		return
	}
	t.mu.Lock()
	t.current = n
	t.mu.Unlock()
}

// decide runs the safety layer for one target, records the decision and dispatches
// it.
func (l *Loop) decide(t *target, now time.Time, out PolicyOutput, shadows []ShadowOutput, start time.Time, tk *Tick) Decision {
	st := t.state()
	id, n := l.nextID()
	d := Decision{
		ID: id, Target: t.cfg.Name, Time: now,
		Current: st.Replicas, Min: t.cfg.Min, Max: t.cfg.Max,
		Inputs: tk.Inputs, ScopeInputs: tk.ScopeInputs, InputsDropped: tk.InputsDropped,
		Sources: tk.Sources, Policy: out, Shadows: shadows,
	}
	d.Desired, d.Steps = t.safe(now, st.Replicas, out)
	d.Direction = direction(st.Replicas, d.Desired)
	d.Ready, d.Pending, d.Held = st.Ready, st.Pending, st.Held
	if d.Desired >= 0 {
		t.mu.Lock()
		t.desired = d.Desired
		t.mu.Unlock()
	}

	switch {
	case d.Desired < 0:
		d.Why = WhyUnchanged
	case d.Desired == st.Replicas && !t.outstandingOther(d.Desired):
		d.Why = WhyUnchanged
	case t.outstanding(d.Desired):
		d.Why = WhyInFlight
	case tk.DryRun:
		d.Why = WhyDryRun
	case !tk.Leader:
		d.Why = WhyNotLeader
	default:
		d.Applied, d.Why = true, WhyApplied
	}
	d.Actuation.Done = !d.Applied
	d.Duration = time.Since(start)
	l.ring.add(d)
	if d.Applied {
		t.mu.Lock()
		if d.Desired > 0 && t.cold.wokeAt.IsZero() && (t.cold.ready == 0 || t.cold.ready < 0 && st.Replicas <= 0) {
			t.cold.wokeAt = now // a cold start begins; SetReady measures it
		}
		t.mu.Unlock()
		l.dispatch(t, actuator.Request{
			Target: t.ref, Replicas: d.Desired, Previous: st.Replicas,
			Reason: out.Reason, DecisionID: d.ID, Time: now,
			Seq: actuator.Sequence{Term: tk.Term, Stream: strings.TrimSuffix(l.idBase, "-"), N: n},
		}, st.Replicas)
	}
	return d
}

func direction(current, desired int) Direction {
	switch {
	case desired < 0:
		return None
	case current < 0:
		if desired > 0 {
			return Up
		}
		return None
	case desired > current:
		return Up
	case desired < current:
		return Down
	}
	return None
}

// observe logs a decision and exports its metrics.
func (l *Loop) observe(ctx context.Context, d *Decision) {
	t := l.targets[l.byName[d.Target]]
	l.tel.decision(ctx, t, d)
	level := slog.LevelDebug
	switch {
	case d.Policy.Err != "":
		level = slog.LevelWarn
	case d.Direction != None || d.Applied:
		level = slog.LevelInfo
	}
	if !l.logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("id", d.ID), slog.String("target", d.Target),
		slog.Int("current", d.Current), slog.Int("desired", d.Desired),
		slog.Int("asked", d.Policy.Replicas), slog.Bool("asked_present", d.Policy.Present),
		slog.String("reason", d.Policy.Reason), slog.Bool("panic", d.Policy.Panic),
		slog.String("direction", string(d.Direction)), slog.Bool("applied", d.Applied),
		slog.String("why", d.Why),
	}
	for _, s := range d.Steps {
		if s.Clamped() {
			attrs = append(attrs, slog.String("clamp."+s.Name, fmt.Sprintf("%d->%d %s", s.Before, s.After, s.Note)))
		}
	}
	if d.Policy.Err != "" {
		attrs = append(attrs, slog.String("policy_error", d.Policy.Err))
	}
	l.logger.LogAttrs(ctx, level, "autoscale: decision", attrs...)
}
