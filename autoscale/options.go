package autoscale

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Loop defaults and limits.
const (
	DefaultTick       = time.Second
	MinTick           = 50 * time.Millisecond
	DefaultHistory    = 1024
	DefaultTimeout    = 10 * time.Second
	DefaultAttempts   = 5
	DefaultRetryBase  = 100 * time.Millisecond
	DefaultRetryMax   = 5 * time.Second
	maxHistory        = 1 << 20
	maxAttempts       = 100
	maxShadowPolicies = 16
)

// Option configures a [Loop].
type Option func(*Loop) error

// WithPolicy sets the live policy. Required.
func WithPolicy(p Policy) Option {
	return func(l *Loop) error {
		if p == nil {
			return errors.New("nil policy")
		}
		l.policy = p
		return nil
	}
}

// WithShadow adds a shadow policy: evaluated every tick beside the live one on the same
// input, its actions never applied, its differences from the live policy recorded in
// [Decision.Shadows] and [Tick.Shadows]. Names must be unique; at most 16 shadows.
func WithShadow(name string, p Policy) Option {
	return func(l *Loop) error {
		if name == "" || p == nil {
			return errors.New("shadow policy needs a name and a policy")
		}
		for _, s := range l.shadows {
			if s.name == name {
				return fmt.Errorf("duplicate shadow policy %q", name)
			}
		}
		if len(l.shadows) == maxShadowPolicies {
			return fmt.Errorf("more than %d shadow policies", maxShadowPolicies)
		}
		l.shadows = append(l.shadows, shadow{name: name, p: p})
		return nil
	}
}

// WithTargets adds targets. Each must be valid and its name unique. At least one target
// is required.
func WithTargets(ts ...Target) Option {
	return func(l *Loop) error {
		l.cfgTargets = append(l.cfgTargets, ts...)
		return nil
	}
}

// WithDefaultActuator sets the actuator of every target whose Actuator is nil.
func WithDefaultActuator(a actuator.Actuator) Option {
	return func(l *Loop) error {
		if a == nil {
			return errors.New("nil actuator")
		}
		l.defaultAct = a
		return nil
	}
}

// WithTick sets the period of [Loop.Run], at least [MinTick]. Default [DefaultTick].
func WithTick(d time.Duration) Option {
	return func(l *Loop) error {
		if d < MinTick {
			return fmt.Errorf("tick %v is below %v", d, MinTick)
		}
		l.tick = d
		return nil
	}
}

// WithClock sets the clock [Loop.Run] reads each tick's time from. Default
// [metrics.NewSystemClock]. [Loop.Step] takes its time as an argument instead.
func WithClock(c metrics.Clock) Option {
	return func(l *Loop) error {
		if c == nil {
			return errors.New("nil clock")
		}
		l.clock = c
		return nil
	}
}

// WithRegistry makes policies read the windows of reg, as of each tick's time, through
// a [RegistryReader]. Use it when one process records and scales: it is the common
// case. It and [WithReader] set the same thing; the last one given wins.
func WithRegistry(reg *metrics.Registry) Option {
	return func(l *Loop) error {
		if reg == nil {
			return errors.New("nil registry")
		}
		l.source = func(now time.Time) Reader { return NewRegistryReader(reg, now) }
		return nil
	}
}

// WithReader makes policies read metrics through the Reader f returns for each tick's
// time. Use it when the windows are not one local registry: a reader that merges
// several gateways' windows, or a fake in tests; for a local registry use
// [WithRegistry], which is WithReader with a [RegistryReader]. Without either,
// policies read no metrics.
func WithReader(f func(now time.Time) Reader) Option {
	return func(l *Loop) error {
		if f == nil {
			return errors.New("nil reader function")
		}
		l.source = f
		return nil
	}
}

// WithPool registers a balancer pool under name, for [SetWeight] and [Eject] actions.
func WithPool(name string, p Pool) Option {
	return func(l *Loop) error {
		if name == "" || p == nil {
			return errors.New("pool needs a name and a value")
		}
		l.pools[name] = p
		return nil
	}
}

// WithScorer registers the scorer of the pool named name, for [ScoreWeights] actions.
func WithScorer(name string, s Scorer) Option {
	return func(l *Loop) error {
		if name == "" || s == nil {
			return errors.New("scorer needs a name and a value")
		}
		l.scorers[name] = s
		return nil
	}
}

// WithShedder sets the applier of [Shed] actions.
func WithShedder(s Shedder) Option {
	return func(l *Loop) error {
		if s == nil {
			return errors.New("nil shedder")
		}
		l.shedder = s
		return nil
	}
}

// WithLimitBounder sets the applier of [LimitBounds] actions.
func WithLimitBounder(b LimitBounder) Option {
	return func(l *Loop) error {
		if b == nil {
			return errors.New("nil limit bounder")
		}
		l.bounder = b
		return nil
	}
}

// WithThrottler sets the applier of [Throttle] actions.
func WithThrottler(t Throttler) Option {
	return func(l *Loop) error {
		if t == nil {
			return errors.New("nil throttler")
		}
		l.throttler = t
		return nil
	}
}

// WithBudgeter sets the applier of [Budget] actions.
func WithBudgeter(b Budgeter) Option {
	return func(l *Loop) error {
		if b == nil {
			return errors.New("nil budgeter")
		}
		l.budgeter = b
		return nil
	}
}

// WithRouter sets the applier of [Route] actions.
func WithRouter(r Router) Option {
	return func(l *Loop) error {
		if r == nil {
			return errors.New("nil router")
		}
		l.router = r
		return nil
	}
}

// WithElector gates actuation on leadership; see [Elector]. Without it the loop leads.
func WithElector(e Elector) Option {
	return func(l *Loop) error {
		if e == nil {
			return errors.New("nil elector")
		}
		l.elector = e
		return nil
	}
}

// WithObserver sets a function called with every tick's record after [Loop.Step] (and
// so every tick of [Loop.Run]), from the stepping goroutine, outside the loop's locks:
// to print decisions, feed a dashboard, or assert in tests. It must not call Step. The
// actuator results in the record may still be pending; read them later with
// [Loop.Decision].
func WithObserver(f func(Tick)) Option {
	return func(l *Loop) error {
		if f == nil {
			return fmt.Errorf("%w: nil observer", ErrInvalidConfig)
		}
		l.observer = f
		return nil
	}
}

// WithDryRun makes the loop compute and record decisions without applying any action
// (no actuator call, no applier call).
func WithDryRun(on bool) Option {
	return func(l *Loop) error {
		l.dryRun.Store(on)
		return nil
	}
}

// WithHistory sets how many decisions the loop keeps for [Loop.Decisions], 1..2^20.
// Default [DefaultHistory].
func WithHistory(n int) Option {
	return func(l *Loop) error {
		if n < 1 || n > maxHistory {
			return fmt.Errorf("history %d out of [1, %d]", n, maxHistory)
		}
		l.history = n
		return nil
	}
}

// Actuation configures how the loop calls actuators. The zero value of each field means
// its default.
type Actuation struct {
	// Timeout bounds each actuator call and each replica read. Default
	// [DefaultTimeout]; at most an hour.
	Timeout time.Duration
	// Attempts is the number of calls per decision, first included, 1..100. Default
	// [DefaultAttempts]. Errors marked [actuator.Permanent] are not retried.
	Attempts int
	// RetryBase and RetryMax shape the exponential back-off with full jitter between
	// attempts (see [actuator.Backoff]). Defaults [DefaultRetryBase], [DefaultRetryMax].
	// An error that asks for a wait ([actuator.RetryAfter], as a webhook's Retry-After
	// does) waits at least that long, up to RetryMax.
	RetryBase, RetryMax time.Duration
}

// WithActuation sets how the loop calls actuators.
func WithActuation(a Actuation) Option {
	return func(l *Loop) error {
		var errs []error
		if a.Timeout < 0 || a.Timeout > time.Hour {
			errs = append(errs, fmt.Errorf("actuation timeout %v out of [0, 1h]", a.Timeout))
		}
		if a.Attempts < 0 || a.Attempts > maxAttempts {
			errs = append(errs, fmt.Errorf("actuation attempts %d out of [0, %d]", a.Attempts, maxAttempts))
		}
		if a.RetryBase < 0 || a.RetryMax < 0 {
			errs = append(errs, errors.New("negative retry delay"))
		}
		if a.Timeout > 0 {
			l.act.Timeout = a.Timeout
		}
		if a.Attempts > 0 {
			l.act.Attempts = a.Attempts
		}
		if a.RetryBase > 0 {
			l.act.RetryBase = a.RetryBase
		}
		if a.RetryMax > 0 {
			l.act.RetryMax = a.RetryMax
		}
		return errors.Join(errs...)
	}
}

// WithRand sets the source of the back-off jitter; it is called from several
// goroutines, so it must be safe for concurrent use. Default math/rand/v2's top-level
// generator.
func WithRand(src rand.Source) Option {
	return func(l *Loop) error {
		if src == nil {
			return errors.New("nil random source")
		}
		l.rand = rand.New(src)
		return nil
	}
}

// WithLogger sets the logger decisions are logged to: changes at Info, holds at Debug,
// failures at Warn. Default [slog.Default], the default logger everywhere in this
// module, so that failures are never silent for want of a logger; pass
// slog.New(slog.DiscardHandler) to silence the loop.
func WithLogger(lg *slog.Logger) Option {
	return func(l *Loop) error {
		if lg == nil {
			return errors.New("nil logger")
		}
		l.logger = lg
		return nil
	}
}

// WithMeterProvider sets the provider of the loop's OpenTelemetry metrics:
//
//   - autoscale.replicas.desired, autoscale.replicas.current (gauges, by target);
//   - autoscale.decisions (counter, by target and direction);
//   - autoscale.clamps (counter, by target and safety step);
//   - autoscale.policy.duration (histogram, seconds);
//   - autoscale.actuator.errors (counter, by target).
//
// Default: no metrics.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(l *Loop) error {
		if mp == nil {
			return errors.New("nil meter provider")
		}
		l.meterProvider = mp
		return nil
	}
}

// WithTracerProvider sets the provider of the loop's trace: one span, "autoscale.tick",
// per [Loop.Step]. Default: no tracing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(l *Loop) error {
		if tp == nil {
			return errors.New("nil tracer provider")
		}
		l.tracerProvider = tp
		return nil
	}
}
