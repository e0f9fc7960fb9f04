// Command simulate runs scaling policies against synthetic or recorded traffic with the
// autoscale/simulate package and compares them.
//
//	go run ./examples/simulate -policy adaptive -profile flash-sale
//	go run ./examples/simulate -policy target_tracking,kpa,adaptive -profile flash-sale,bursty -out /tmp/sim
//	go run ./examples/simulate -policy ./my_policy.lua -profile ./traffic.csv -duration 1h
//
// -policy takes shipped names (see -list) or paths to .lua files; -profile takes
// scenario names or CSV traces (timestamps, or second,count lines; see simulate.Trace).
// It prints the comparison table in markdown, each run's summary with -v, and with
// -out writes, per run, the timeline (NAME.csv) and a plot (NAME.svg), per scenario a
// plot comparing the policies, and the table (comparison.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/autoscale/simulate/plot"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed
		}
		fmt.Fprintln(os.Stderr, "simulate:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policies := fs.String("policy", "adaptive", "comma-separated policies: shipped names or .lua files")
	profiles := fs.String("profile", "flash-sale", "comma-separated scenarios: names or CSV traces")
	duration := fs.Duration("duration", 0, "simulated time per run (0: the scenario's own)")
	seed := fs.Uint64("seed", 1, "random seed; the same seed gives the same results")
	out := fs.String("out", "", "folder for timelines (CSV), plots (SVG) and the table (markdown)")
	workers := fs.Int("workers", 1, "runs at once")
	verbose := fs.Bool("v", false, "print each run's summary")
	list := fs.Bool("list", false, "list the shipped policies and scenarios")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		lua := simulate.ShippedLuaNames()
		var twins []string
		for _, n := range simulate.ShippedNames() {
			if !slices.Contains(lua, n) {
				twins = append(twins, n)
			}
		}
		fmt.Fprintln(stdout, "policies (Lua, as the gateway's -policy):", strings.Join(lua, ", "))
		fmt.Fprintln(stdout, "policies (Go twins):                     ", strings.Join(twins, ", "))
		fmt.Fprintln(stdout, "scenarios:                               ", strings.Join(simulate.ScenarioNames(), ", "))
		return nil
	}
	var c simulate.Comparison
	c.Seed, c.Workers = *seed, *workers
	for _, name := range split(*policies) {
		p, err := simulate.ParsePolicy(name)
		if err != nil {
			return err
		}
		c.Policies = append(c.Policies, p)
	}
	for _, name := range split(*profiles) {
		sc, err := scenario(name)
		if err != nil {
			return err
		}
		if *duration > 0 {
			sc.Duration = *duration
		}
		c.Scenarios = append(c.Scenarios, sc)
	}
	start := time.Now()
	results, err := simulate.Compare(ctx, c)
	if err != nil {
		return err
	}
	sums := simulate.Summaries(results)
	table := simulate.Table(sums)
	fmt.Fprint(stdout, table)
	if *verbose {
		for _, s := range sums {
			fmt.Fprintf(stdout, "\n%s", s)
		}
	}
	fmt.Fprintf(stderr, "%d runs in %v\n", len(results), time.Since(start).Round(time.Millisecond))
	if *out == "" {
		return nil
	}
	return write(*out, c, results, table)
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func scenario(name string) (simulate.Scenario, error) {
	if strings.HasSuffix(name, ".csv") {
		tr, err := simulate.ReadTraceFile(name)
		if err != nil {
			return simulate.Scenario{}, err
		}
		return simulate.TraceScenario(strings.TrimSuffix(filepath.Base(name), ".csv"), tr), nil
	}
	sc, ok := simulate.ScenarioByName(name)
	if !ok {
		return simulate.Scenario{}, fmt.Errorf("unknown scenario %q (known: %s; or a .csv trace)", name, strings.Join(simulate.ScenarioNames(), ", "))
	}
	return sc, nil
}

func write(dir string, c simulate.Comparison, results []*simulate.Result, table string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	create := func(name string, f func(io.Writer) error) error {
		file, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := f(file); err != nil {
			file.Close()
			return err
		}
		return file.Close()
	}
	for _, r := range results {
		base := r.Summary.Scenario + "_" + r.Summary.Policy
		if err := create(base+".csv", r.WriteCSV); err != nil {
			return err
		}
		if err := create(base+".svg", func(w io.Writer) error { return plot.Timeline(w, r) }); err != nil {
			return err
		}
		if err := create(base+".txt", func(w io.Writer) error { _, err := io.WriteString(w, r.Summary.String()); return err }); err != nil {
			return err
		}
	}
	n := len(c.Policies)
	for i := range c.Scenarios {
		runs := results[i*n : (i+1)*n]
		if err := create(runs[0].Summary.Scenario+"_comparison.svg", func(w io.Writer) error { return plot.Comparison(w, runs) }); err != nil {
			return err
		}
	}
	return create("comparison.md", func(w io.Writer) error { _, err := io.WriteString(w, table); return err })
}
