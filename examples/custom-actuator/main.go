// Command custom-actuator shows how to plug your own actuator into the scaling loop:
// a type with one method, Scale, and optionally Replicas so the loop can read the count
// back. It drives the loop on a manual clock through a burst of traffic and prints each
// decision.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// fleet is the custom actuator: it "runs" workers by keeping their count, and reports
// each change. A real one would call an API, start processes or resize a pool.
type fleet struct {
	mu      sync.Mutex
	workers map[actuator.Target]int
	out     io.Writer
}

// Scale sets the target's worker count. It must be idempotent: "set to n", not "add n".
func (f *fleet) Scale(ctx context.Context, req actuator.Request) error {
	if err := req.Validate(); err != nil {
		return actuator.Permanent(err) // retrying cannot fix a bad request
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(f.out, "fleet: %s %d → %d (%s)\n", req.Target, f.workers[req.Target], req.Replicas, req.Reason)
	f.workers[req.Target] = req.Replicas
	return nil
}

// Replicas reports the current count, so the loop reads it back every tick.
func (f *fleet) Replicas(ctx context.Context, t actuator.Target) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.workers[t]
	if !ok {
		return 0, fmt.Errorf("fleet: %w: %s", actuator.ErrUnknownTarget, t)
	}
	return n, nil
}

var (
	_ actuator.Actuator      = (*fleet)(nil)
	_ actuator.ReplicaReader = (*fleet)(nil)
)

func main() {
	fs := flag.NewFlagSet("custom-actuator", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: custom-actuator\n\nDrives the scaling loop on a manual clock through a burst of traffic, scaling a\ncustom actuator, and prints each decision. It takes no flags.")
	}
	fs.Parse(os.Args[1:]) // -h prints the usage and exits 0
	if fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run drives the loop for a minute of simulated traffic: 20 requests per second, then
// a burst of 200, then back to 20.
func run(ctx context.Context, out io.Writer) error {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := metrics.NewManualClock(start)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		return err
	}
	target := actuator.Target{Name: "worker", Namespace: "jobs"}
	f := &fleet{workers: map[actuator.Target]int{target: 1}, out: out}

	// Hold 20 requests per second per worker (the HPA's algorithm over the last 5 s).
	policy, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{
		Source: autoscale.Source{Signal: autoscale.SignalRate}, Span: 5 * time.Second, TargetValue: 20,
	})
	if err != nil {
		return err
	}
	loop, err := autoscale.NewLoop(
		autoscale.WithPolicy(policy),
		autoscale.WithRegistry(reg),
		autoscale.WithClock(clock),
		autoscale.WithTargets(autoscale.Target{
			Name: "worker", Ref: target, Min: 1, Max: 12, Actuator: f,
			// Scale down after 10 s of lower recommendations instead of the HPA's 300 s.
			Safety: autoscale.Safety{ScaleDown: &autoscale.Rules{StabilizationWindow: 10 * time.Second}},
		}),
	)
	if err != nil {
		return err
	}
	defer loop.Close()

	w := reg.Window(metrics.ScopeRoute, "worker")
	for sec := range 60 {
		rps := 20
		if sec >= 10 && sec < 30 {
			rps = 200
		}
		for i := range rps {
			w.RecordAt(clock.Now().Add(time.Duration(i)*time.Second/time.Duration(rps)),
				metrics.Observation{Latency: 30 * time.Millisecond})
		}
		clock.Advance(time.Second)
		tick, err := loop.Step(ctx, clock.Now())
		if err != nil {
			return err
		}
		if err := loop.Flush(ctx); err != nil {
			return err
		}
		for _, d := range tick.Decisions {
			if d.Applied {
				fmt.Fprintf(out, "t=%2ds decision %s: %d → %d\n", sec+1, d.Target, d.Current, d.Desired)
			}
		}
	}
	n, err := f.Replicas(ctx, target)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "final: %d workers\n", n)
	return nil
}
