package autoscale

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

//go:embed policies/*.lua
var policyFiles embed.FS

// ErrUnknownPolicy is returned by [PolicySource] for a name it does not ship.
var ErrUnknownPolicy = errors.New("autoscale: unknown policy")

// PolicyNames lists the shipped Lua policies: adaptive, kpa, llm_cost, predictive,
// schedule, target_tracking, threshold.
func PolicyNames() []string {
	return []string{"adaptive", "kpa", "llm_cost", "predictive", "schedule", "target_tracking", "threshold"}
}

// Policies returns the shipped Lua policies as a file system: policies/NAME.lua and
// its tests policies/NAME_test.lua, for luabind to load (luabind.FromFS) and for its
// luatest harness to run. Each file documents, at its top, the algorithm it implements
// and the keys of the config table it reads.
//
//   - target_tracking: the Kubernetes HPA's algorithm (tolerance 0.1); the loop's
//     default [Safety] supplies the HPA's stabilization and behaviour. Twin of
//     [TargetTracking].
//   - kpa: Knative's KPA decider, tick for tick (stable 60 s, panic 6 s, threshold
//     2.0, rates 1000 and 2, utilisation 0.7, no scale-down in panic, start in panic
//     when first seen above one replica, activation scale, scale-down delay, excess
//     burst capacity, no bound on scaling down an unreachable target), with an
//     optional scale-to-zero grace on top. Twin of [KPA].
//   - threshold: latency above a threshold for N consecutive ticks adds K replicas,
//     with hysteresis and a cooldown.
//   - schedule: pre-warm to N replicas at given times; combine with a reactive policy
//     (see [Combine]).
//   - predictive: Holt's linear trend on request rate, one cold start ahead.
//   - adaptive: the recommended default: Little's law on the arrival rate (completions
//     plus the growth of requests in flight), a ramp extrapolated one cold start ahead,
//     at once up (in full, with the backlog that builds while new replicas start, when
//     the rate jumps to twice the stable window's: a panic), headroom kept down for the
//     bursts it has seen (at most twice the rate), scale-downs only after a delay
//     longer than a flap window and in steps (halving once the need is under half the
//     count), and scale to zero after an idle time, woken by the first request. Its
//     time constants are config keys (down_delay, down_step_interval,
//     down_fast_interval, down_step_fraction, down_window, burst_memory,
//     idle_to_zero), for hosts on a compressed timescale.
//   - llm_cost: for AI gateways, per model: scale the model's target when its queue
//     or its p99 time to first token says so, and while it is at its max or cold send
//     its economy lane (low-priority and short prompts, re-keyed by the same file's
//     on_request) to a cheaper model with a route action; scale to zero when idle.
//     Every action's reason says which it chose and why.
//
// The twins (target_tracking and [TargetTracking], kpa and [KPA]) decide alike on the
// same snapshot and config, and speak the same units:
//
//   - Figures are the same numbers on both sides: a target value for the p99 or mean
//     latency is in milliseconds in Go ([SignalP99], [SignalMean]) as in Lua (the
//     snapshot's p99 and mean); rates are per second, concurrency in requests.
//   - Durations are [time.Duration] fields in Go and numbers of seconds in Lua:
//     TargetTrackingConfig.Span is span, KPAConfig.StableWindow, PanicWindow,
//     ScaleDownDelay and ScaleToZeroGrace are stable_window, panic_window,
//     scale_down_delay and scale_to_zero_grace.
//   - Where they differ, the defaults: in Go a field's zero value means the default;
//     in Lua an absent key does, and 0 is taken as given. So Tolerance 0 is the
//     default 0.1 in Go, while tolerance = 0 is no tolerance in Lua (in Go: a negative
//     Tolerance); and KPAConfig.TargetBurstCapacity nil is the default 211, where Go
//     spells target_burst_capacity = 0 as a pointer to 0. A zero scale-to-zero grace
//     is none on both sides (the decider asks for zero at once), which is also the
//     default; a negative grace never asks for zero on either side.
func Policies() fs.FS { return policyFiles }

// PolicySource returns the Lua source of a shipped policy by name (see [PolicyNames]).
func PolicySource(name string) (string, error) {
	if strings.ContainsAny(name, "/.") {
		return "", fmt.Errorf("%w: %q", ErrUnknownPolicy, name)
	}
	b, err := policyFiles.ReadFile("policies/" + name + ".lua")
	if err != nil {
		return "", fmt.Errorf("%w: %q", ErrUnknownPolicy, name)
	}
	return string(b), nil
}

// Combine returns a policy that runs every policy on the same input and returns all
// their actions. The loop takes the largest of several Scale actions for a target, so
// Combine(schedule, reactive) pre-warms with the schedule and reacts above it. The
// errors of the policies are joined; the actions of those that succeeded are kept.
// Combine is safe for concurrent use if every policy is.
func Combine(policies ...Policy) Policy {
	ps := make([]Policy, 0, len(policies))
	for _, p := range policies {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return PolicyFunc(func(ctx context.Context, in *Input) ([]Action, error) {
		var (
			all  []Action
			errs []error
		)
		for _, p := range ps {
			acts, err := p.Decide(ctx, in)
			all = append(all, acts...)
			if err != nil {
				errs = append(errs, err)
			}
		}
		return all, errors.Join(errs...)
	})
}
