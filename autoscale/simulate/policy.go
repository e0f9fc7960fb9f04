package simulate

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// ErrUnknownPolicy is returned (wrapped) by [Shipped] for a name it does not know.
var ErrUnknownPolicy = errors.New("simulate: unknown policy")

// Env is what a policy is configured from: the service as its operator knows it.
type Env struct {
	// Target is the loop's target and Route the key of its window in the route scope.
	Target, Route string
	// Concurrency is the requests one replica serves at once.
	Concurrency int
	// ServiceTime is the mean service time of one request.
	ServiceTime time.Duration
	// Batching is true when a replica batches the requests it serves (an [LLM]):
	// ServiceTime is then its latency at a full batch, and a partial batch is faster.
	Batching bool
	// ColdStart is the time a new replica takes to serve.
	ColdStart time.Duration
	// SLO is the scenario's latency objective.
	SLO time.Duration
	// Min and Max bound the target.
	Min, Max int
	// Tenants names the tenants of a multi-tenant profile, nil otherwise.
	Tenants []string
	// Clock is the simulation's clock, for policies that read the time.
	Clock metrics.Clock

	// future is the run's scenario and seed, from which [Oracle] draws what is to
	// come; nil outside a run.
	future *future
}

// Capacity returns the requests per second one replica serves at full utilisation.
func (e Env) Capacity() float64 {
	if e.ServiceTime <= 0 {
		return 0
	}
	return float64(e.Concurrency) / e.ServiceTime.Seconds()
}

// LuaConfig returns the config table given to Lua policies loaded from files
// ([LuaFile]): target, targets (a one-element list), route, key (the route's key),
// concurrency (per replica), target_value (concurrency per replica at 70% utilisation,
// the figure target_tracking holds), rps_per_replica (the rate one replica serves at
// 70%), service_time_ms, cold_start (seconds), slo_ms, min and max.
func (e Env) LuaConfig() map[string]any {
	return map[string]any{
		"target":          e.Target,
		"targets":         []string{e.Target},
		"route":           e.Route,
		"key":             e.Route,
		"concurrency":     e.Concurrency,
		"target_value":    0.7 * float64(e.Concurrency),
		"rps_per_replica": 0.7 * e.Capacity(),
		"service_time_ms": float64(e.ServiceTime) / float64(time.Millisecond),
		"cold_start":      max(e.ColdStart.Seconds(), 1),
		"slo_ms":          float64(e.SLO) / float64(time.Millisecond),
		"min":             e.Min,
		"max":             e.Max,
	}
}

// Policy is a scaling policy with the loop settings it runs under.
type Policy struct {
	// Name identifies the policy in tables. Required.
	Name string
	// Tick is the loop's period: how often it steps. Zero means 1 s.
	Tick time.Duration
	// Safety is the target's safety layer; its zero value has the HPA's behaviour.
	Safety autoscale.Safety
	// New builds the policy for a run, and optionally a function that releases what
	// it holds (a Lua runtime), called when the run ends. Required.
	New func(env Env) (autoscale.Policy, func() error, error)
	// Config, for a Lua policy, returns the config table New gives the script for an
	// env: what a host running the same script outside the simulator should pass to
	// luabind.WithConfig. Nil for Go policies.
	Config func(env Env) map[string]any
}

// Validate reports every problem with the policy.
func (p Policy) Validate() error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("empty policy name"))
	}
	if p.New == nil {
		errs = append(errs, errors.New("policy has no New function"))
	}
	if p.Tick != 0 && p.Tick < autoscale.MinTick {
		errs = append(errs, fmt.Errorf("tick %v below %v", p.Tick, autoscale.MinTick))
	}
	if err := p.Safety.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: policy %q: %w", ErrInvalidConfig, p.Name, err)
	}
	return nil
}

// ShippedNames lists the names [Shipped] knows, in the comparison's order.
func ShippedNames() []string {
	return []string{"target_tracking", "kpa", "threshold", "predictive", "adaptive", "target_tracking_go", "kpa_go"}
}

// ShippedLuaNames lists the names among [ShippedNames] that run a Lua script from
// [autoscale.Policies] (those whose Policy has a Config): what a host running the
// scripts itself, as the demo gateway does, can offer.
func ShippedLuaNames() []string {
	var names []string
	for _, n := range ShippedNames() {
		if p, err := Shipped(n); err == nil && p.Config != nil {
			names = append(names, n)
		}
	}
	return names
}

// free is a Safety that lets the policy govern alone: no stabilization, no rate limit.
func free() autoscale.Safety {
	return autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{}}
}

// Shipped returns a shipped policy configured for the simulated service:
//
//   - target_tracking: the Lua HPA (autoscale/policies/target_tracking.lua) as the
//     Kubernetes HPA runs by default: the loop steps every 15 s (the HPA's sync
//     period), the policy holds the route's concurrency averaged over those 15 s at
//     70% of a replica's concurrency, with tolerance 0.1, and the loop's default safety
//     layer supplies the HPA's behaviour (300 s scale-down stabilization, up by
//     max(4 pods, 100%) per 15 s, down by 100% per 15 s).
//   - kpa: the Lua KPA (kpa.lua) with Knative's defaults: a 2 s tick (Knative's
//     autoscaler tick), stable window 60 s, panic window 6 s, panic threshold 2.0,
//     rates 1000 up and 2 down, target utilisation 0.7 of the replica's concurrency
//     (Knative's container concurrency), and Knative's 30 s scale-to-zero grace
//     period as the policy's scale_to_zero_grace (zero replicas only when Min is 0);
//     no safety layer beyond it (as in Knative).
//   - threshold: the seed article's rule (threshold.lua) on the p90 latency: above 60%
//     of the SLO for 3 ticks adds 2 replicas, below 40% removes 1, 60 s cooldown;
//     1 s tick, no further safety.
//   - predictive: Holt's trend on the request rate (predictive.lua), one cold start
//     ahead, at 70% of a replica's capacity; 1 s tick, the loop's default (HPA)
//     safety layer.
//   - adaptive: the library's recommended default (adaptive.lua); 1 s tick, no
//     safety layer beyond its own.
//   - target_tracking_go and kpa_go: the Go twins of target_tracking and kpa
//     ([autoscale.TargetTracking], [autoscale.KPA]), with the same settings.
func Shipped(name string) (Policy, error) {
	switch name {
	case "target_tracking":
		return shippedLua(name, 15*time.Second, autoscale.Safety{}, func(e Env) map[string]any {
			return map[string]any{"targets": []string{e.Target}, "key": e.Route, "signal": "concurrency",
				"target_value": 0.7 * float64(e.Concurrency), "span": 15}
		}), nil
	case "kpa":
		return shippedLua(name, 2*time.Second, free(), func(e Env) map[string]any {
			return map[string]any{"targets": []string{e.Target}, "key": e.Route, "signal": "concurrency",
				"target_value": float64(e.Concurrency), "scale_to_zero_grace": kpaGrace.Seconds()}
		}), nil
	case "threshold":
		return shippedLua(name, time.Second, free(), func(e Env) map[string]any {
			slo := float64(e.SLO) / float64(time.Millisecond)
			return map[string]any{"target": e.Target, "route": e.Route, "signal": "p90",
				"up_ms": 0.6 * slo, "down_ms": 0.4 * slo, "breaches": 3, "step": 2, "cooldown": 60}
		}), nil
	case "predictive":
		return shippedLua(name, time.Second, autoscale.Safety{}, func(e Env) map[string]any {
			return map[string]any{"target": e.Target, "route": e.Route,
				"rps_per_replica": 0.7 * e.Capacity(), "cold_start": max(e.ColdStart.Seconds(), 1)}
		}), nil
	case "adaptive":
		return shippedLua(name, time.Second, free(), func(e Env) map[string]any {
			return map[string]any{"target": e.Target, "route": e.Route,
				"target_value": float64(e.Concurrency), "cold_start": e.ColdStart.Seconds(),
				"service_time": e.ServiceTime.Seconds(), "batching": e.Batching}
		}), nil
	case "target_tracking_go":
		return Policy{Name: name, Tick: 15 * time.Second, New: func(e Env) (autoscale.Policy, func() error, error) {
			p, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{
				Targets: []string{e.Target}, Source: autoscale.Source{Key: e.Route},
				Span: 15 * time.Second, TargetValue: 0.7 * float64(e.Concurrency),
			})
			return p, nil, err
		}}, nil
	case "kpa_go":
		return Policy{Name: name, Tick: 2 * time.Second, Safety: free(), New: func(e Env) (autoscale.Policy, func() error, error) {
			p, err := autoscale.KPA(autoscale.KPAConfig{
				Targets: []string{e.Target}, Source: autoscale.Source{Key: e.Route},
				TargetValue: float64(e.Concurrency), ScaleToZeroGrace: kpaGrace,
			})
			return p, nil, err
		}}, nil
	}
	return Policy{}, fmt.Errorf("%w: %q (known: %s)", ErrUnknownPolicy, name, strings.Join(ShippedNames(), ", "))
}

// kpaGrace is the scale-to-zero grace the simulated KPAs run with: Knative's
// scale-to-zero-grace-period default, set explicitly since the policies' zero grace is
// none (the decider's own behaviour).
const kpaGrace = 30 * time.Second

func shippedLua(name string, tick time.Duration, safety autoscale.Safety, cfg func(Env) map[string]any) Policy {
	return Policy{Name: name, Tick: tick, Safety: safety, Config: cfg, New: func(e Env) (autoscale.Policy, func() error, error) {
		src, err := luabind.FromFS(autoscale.Policies(), "policies/"+name+".lua")
		if err != nil {
			return nil, nil, err
		}
		return newLua(src, cfg(e), e)
	}}
}

// LuaFile returns a policy running the Lua script at path with [Env.LuaConfig] as its
// config table, a 1 s tick and no safety layer beyond the script's own. Its name is
// the file's base name without ".lua".
func LuaFile(path string) (Policy, error) {
	src, err := luabind.FromFile(path)
	if err != nil {
		return Policy{}, fmt.Errorf("simulate: %w", err)
	}
	return LuaSource(strings.TrimSuffix(filepath.Base(path), ".lua"), src), nil
}

// LuaSource returns a policy running a Lua script with [Env.LuaConfig] as its config
// table, a 1 s tick and no safety layer beyond the script's own.
func LuaSource(name string, src luabind.Source) Policy {
	return Policy{Name: name, Tick: time.Second, Safety: free(), New: func(e Env) (autoscale.Policy, func() error, error) {
		return newLua(src, e.LuaConfig(), e)
	}}
}

// ParsePolicy returns [Shipped] for a shipped name, [Oracle] for [OracleName] and
// [LuaFile] for a path ending in ".lua".
func ParsePolicy(s string) (Policy, error) {
	if strings.HasSuffix(s, ".lua") {
		return LuaFile(s)
	}
	if s == OracleName {
		return Oracle(), nil
	}
	return Shipped(s)
}

// newLua starts a Lua runtime for a run: on the simulation's clock, failing closed (a
// failing tick is a policy error the loop records and holds on), with a tick budget
// generous enough that wall-clock time never decides a simulated run.
func newLua(src luabind.Source, cfg map[string]any, e Env) (autoscale.Policy, func() error, error) {
	opts := []luabind.Option{
		luabind.WithConfig(cfg),
		luabind.WithLimits(luabind.Limits{TickBudget: 10 * time.Second, PoolSize: 1}),
		luabind.WithFailMode(luabind.HookTick, luabind.FailClosed),
		luabind.WithLogger(slog.New(slog.DiscardHandler)),
	}
	if e.Clock != nil {
		opts = append(opts, luabind.WithClock(e.Clock))
	}
	rt, err := luabind.New(src, opts...)
	if err != nil {
		return nil, nil, err
	}
	return rt, rt.Close, nil
}
