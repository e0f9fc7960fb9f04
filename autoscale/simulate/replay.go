package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// This file replays recorded ticks: what a loop's policies saw (autoscale.Tick.Input,
// kept by an observer or decoded from its JSON) run again through a fresh loop and
// another policy, so that yesterday's decisions can be re-run against a changed one.

// ReplayConfig is what [Replay] re-runs.
type ReplayConfig struct {
	// Policy is the policy to replay the ticks against. Required.
	Policy autoscale.Policy
	// Ticks are the recorded ticks, oldest first: each the [autoscale.Tick.Input] of a
	// step, its Metrics a frozen [autoscale.Snapshot]. Required; their times must
	// increase.
	Ticks []*autoscale.Input
	// Safety is every target's safety layer; the zero value is the loop's default.
	Safety autoscale.Safety
	// Options are more loop options (shadow policies, appliers, an observer, dry-run).
	// Replay sets the policy, targets, clock, tick, reader and logger itself.
	Options []autoscale.Option
}

// Replay re-runs recorded ticks against cfg.Policy and returns one [autoscale.Tick] per
// recorded tick. Each recorded tick is a step of a fresh [autoscale.Loop] at the
// recorded time, whose metrics are the recorded snapshot and whose targets (those of
// the recording, with their bounds) report the replica counts recorded, so every
// decision goes through the real safety layer (its stabilization windows, rate limits
// and cooldowns included) from what really ran. The targets' actuator takes every call
// and does nothing: an Applied decision is one the loop would have sent. Actions other
// than Scale go to the appliers in cfg.Options, and are refused without one (pass
// autoscale.WithDryRun(true) there to record them as dry-run).
//
// A recorded snapshot answers the reads made when it was recorded (see
// [autoscale.Snapshot.Freeze]): a changed policy that reads a window the recorded one
// did not finds no window there, and fails as a policy does without metrics. Record
// with the widest reader you will replay (a shadow policy reading what the candidate
// needs, in the recording loop, makes its reads part of the record).
//
// To record, keep each step's Input:
//
//	var rec []*autoscale.Input
//	loop, _ := autoscale.NewLoop(..., autoscale.WithObserver(func(tk autoscale.Tick) { rec = append(rec, tk.Input) }))
//
// and save rec as JSON (json.Marshal) to replay it later.
func Replay(ctx context.Context, cfg ReplayConfig) ([]autoscale.Tick, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	act := &replayActuator{}
	var targets []autoscale.Target
	seen := map[string]bool{}
	for _, in := range cfg.Ticks {
		for _, t := range in.Targets {
			if !seen[t.Name] {
				seen[t.Name] = true
				targets = append(targets, autoscale.Target{Name: t.Name, Min: t.Min, Max: t.Max, Actuator: act, Safety: cfg.Safety})
			}
		}
	}
	tick := cfg.Ticks[0].Tick
	if tick <= 0 {
		tick = autoscale.DefaultTick
	}
	clock := metrics.NewManualClock(cfg.Ticks[0].Now)
	i := 0
	opts := append(slices.Clone(cfg.Options),
		autoscale.WithPolicy(cfg.Policy),
		autoscale.WithTargets(targets...),
		autoscale.WithClock(clock),
		autoscale.WithTick(max(tick, autoscale.MinTick)),
		autoscale.WithReader(func(time.Time) autoscale.Reader { return cfg.Ticks[i].Metrics }),
		autoscale.WithLogger(slog.New(slog.DiscardHandler)),
	)
	loop, err := autoscale.NewLoop(opts...)
	if err != nil {
		return nil, fmt.Errorf("simulate: replay: %w", err)
	}
	defer loop.Close()
	out := make([]autoscale.Tick, 0, len(cfg.Ticks))
	for i = range cfg.Ticks {
		in := cfg.Ticks[i]
		act.set(in.Targets)
		clock.Set(in.Now)
		tk, err := loop.Step(ctx, in.Now)
		if err == nil {
			err = loop.Flush(ctx) // the scale events the safety layer counts
		}
		if err != nil {
			return out, fmt.Errorf("simulate: replay: tick %d: %w", i, err)
		}
		out = append(out, tk)
	}
	return out, nil
}

func (c ReplayConfig) validate() error {
	var errs []error
	if c.Policy == nil {
		errs = append(errs, errors.New("no policy"))
	}
	if len(c.Ticks) == 0 {
		errs = append(errs, errors.New("no ticks"))
	}
	for i, in := range c.Ticks {
		switch {
		case in == nil:
			errs = append(errs, fmt.Errorf("tick %d is nil", i))
		case len(in.Targets) == 0:
			errs = append(errs, fmt.Errorf("tick %d has no targets", i))
		case i > 0 && c.Ticks[i-1] != nil && !in.Now.After(c.Ticks[i-1].Now):
			errs = append(errs, fmt.Errorf("tick %d at %v is not after tick %d", i, in.Now, i-1))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("simulate: replay: %w", err)
	}
	return nil
}

// replayActuator reports the replica counts of the tick being replayed, and takes the
// loop's calls without doing anything.
type replayActuator struct {
	replicas map[string]int
}

var _ actuator.ReplicaReader = (*replayActuator)(nil)

func (a *replayActuator) set(ts []autoscale.TargetState) {
	a.replicas = make(map[string]int, len(ts))
	for _, t := range ts {
		a.replicas[t.Name] = t.Replicas
	}
}

func (a *replayActuator) Scale(context.Context, actuator.Request) error { return nil }

func (a *replayActuator) Replicas(_ context.Context, t actuator.Target) (int, error) {
	n, ok := a.replicas[t.Name]
	if !ok {
		return -1, fmt.Errorf("%w: %s not in the recorded tick", actuator.ErrUnknownTarget, t.Name)
	}
	return n, nil
}
