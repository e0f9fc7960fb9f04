package autoscale

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Why an action other than Scale was not applied ([ActionResult.Why]), and why the
// loop refused an action ([Refusal.Why]).
const (
	WhyInvalid   = "invalid"    // it failed validation, or a Scale action names an unknown target
	WhyNoApplier = "no-applier" // no pool, shedder, throttler, budgeter or router is registered for it
	WhyError     = "error"      // its applier returned an error
)

// ErrPolicySkipped is what a policy returns (wrapped) when it could not decide but asks
// the loop to hold every target without counting a failure toward its [Fallback]: a Lua
// script whose on_tick failed in luabind's fail-open mode (the default) does. The loop
// records it as it does any policy error ([Tick.PolicyErr], [LoopStats.PolicyErrors]),
// so a script's mistake is never silent, and holds.
var ErrPolicySkipped = errors.New("autoscale: policy skipped")

// RefusalLogEvery is how often the loop logs refusals of one kind and reason: the
// first is logged at Warn at once, the others within the interval (of the ticks' time)
// are counted and reported with the next line.
const RefusalLogEvery = 10 * time.Second

// keptRefusals is how many of the last refusals [Loop.Refusals] returns.
const keptRefusals = 32

// Refusal is an action the loop refused on a tick: an invalid action, a Scale action
// for an unknown target, an action without an applier, or one its applier failed.
// A policy's typo (scale("no-such-target", 3)) ends up here rather than nowhere.
type Refusal struct {
	Time   time.Time
	Action Action
	// Why is [WhyInvalid], [WhyNoApplier] or [WhyError].
	Why string
	// Err says what was wrong.
	Err string
}

// LoopStats counts what a loop did since it was made.
type LoopStats struct {
	// Ticks counts steps that ran the policy.
	Ticks uint64
	// PolicyErrors counts ticks on which the live policy returned an error (including
	// [ErrPolicySkipped]); LastPolicyErr is the last one's text and LastPolicyErrAt its
	// tick's time.
	PolicyErrors    uint64
	LastPolicyErr   string
	LastPolicyErrAt time.Time
	// Refused counts refused actions ([Loop.Refusals]); RefusedBy splits them by
	// [Refusal.Why].
	Refused   uint64
	RefusedBy map[string]uint64
}

// refusals counts, keeps, logs and exports a loop's refused actions. It is safe for
// concurrent use.
type refusals struct {
	ticks, policyErrors atomic.Uint64

	mu      sync.Mutex
	lastErr string
	lastAt  time.Time
	total   uint64
	by      map[string]uint64
	last    [keptRefusals]Refusal
	next, n int
	logs    map[refusalKey]*refusalLog
}

type refusalKey struct{ kind, why string }

type refusalLog struct {
	at         time.Time
	suppressed uint64
}

// refuse records that a was refused on the tick at now.
func (l *Loop) refuse(ctx context.Context, now time.Time, a Action, why, err string) {
	r := &l.refused
	r.mu.Lock()
	r.total++
	if r.by == nil {
		r.by = map[string]uint64{}
		r.logs = map[refusalKey]*refusalLog{}
	}
	r.by[why]++
	r.last[r.next] = Refusal{Time: now, Action: a, Why: why, Err: err}
	r.next = (r.next + 1) % keptRefusals
	r.n = min(r.n+1, keptRefusals)
	k := refusalKey{a.Kind(), why}
	lg := r.logs[k]
	if lg == nil {
		lg = &refusalLog{}
		r.logs[k] = lg
	}
	suppressed, log := lg.suppressed, lg.at.IsZero() || now.Sub(lg.at) >= RefusalLogEvery
	if log {
		lg.at, lg.suppressed = now, 0
	} else {
		lg.suppressed++
	}
	r.mu.Unlock()

	l.tel.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", a.Kind()), attribute.String("why", why)))
	if log {
		l.logger.LogAttrs(ctx, slog.LevelWarn, "autoscale: action refused",
			slog.String("kind", a.Kind()), slog.String("why", why), slog.String("error", err),
			slog.Any("action", a), slog.Uint64("suppressed", suppressed))
	}
}

// policyFailed records the live policy's error on the tick at now.
func (l *Loop) policyFailed(now time.Time, err error) {
	r := &l.refused
	r.policyErrors.Add(1)
	r.mu.Lock()
	r.lastErr, r.lastAt = err.Error(), now
	r.mu.Unlock()
}

// Stats returns the loop's counts.
func (l *Loop) Stats() LoopStats {
	r := &l.refused
	s := LoopStats{Ticks: r.ticks.Load(), PolicyErrors: r.policyErrors.Load(), RefusedBy: map[string]uint64{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Refused = r.total
	s.LastPolicyErr, s.LastPolicyErrAt = r.lastErr, r.lastAt
	for k, v := range r.by {
		s.RefusedBy[k] = v
	}
	return s
}

// Refusals returns the last refused actions (up to 32), oldest first.
func (l *Loop) Refusals() []Refusal {
	r := &l.refused
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Refusal, 0, r.n)
	for i := range r.n {
		out = append(out, r.last[(r.next-r.n+i+keptRefusals)%keptRefusals])
	}
	return out
}
