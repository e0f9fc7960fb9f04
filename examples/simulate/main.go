// Command simulate runs scaling policies against synthetic or recorded traffic with the
// autoscale/simulate package and compares them.
//
//	go run ./examples/simulate -policy adaptive -profile flash-sale
//	go run ./examples/simulate -policy target_tracking,kpa,adaptive -profile flash-sale,bursty -out /tmp/sim
//	go run ./examples/simulate -policy ./my_policy.lua -profile ./traffic.csv -duration 1h
//	go run ./examples/simulate -policy kpa,adaptive -trace ./access.log
//
// -policy takes shipped names (see -list) or paths to .lua files; -profile takes
// scenario names or recorded traffic files (-trace is the same), in any of these
// formats (simulate.Trace has the details):
//
//   - CSV: arrival timestamps in seconds, one a line, or second,count lines;
//   - an access log in the Common or Combined Log Format, optionally with a latency
//     as the last field (nginx's $request_time in seconds, Apache's %D in
//     microseconds, or a Go duration such as 42ms); the user field is the tenant;
//   - JSON lines: {"timestamp": RFC 3339 or Unix seconds or milliseconds, and
//     optionally "latency_ms" or "duration", "tenant", "route"}.
//
// The format is told by the extension (.csv, .jsonl or .ndjson) or else by the
// first line (so a .log may be either kind of log). A log's tenants are replayed as tenants and its latencies
// become the service time.
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
	profiles := fs.String("profile", "flash-sale", "comma-separated scenarios: names or trace files (CSV, access log, JSON lines)")
	var traces []string
	fs.Func("trace", "a recorded trace to replay (CSV, access log or JSON lines; repeatable), as well as -profile's", func(s string) error {
		traces = append(traces, s)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
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
	names := split(*profiles)
	if len(traces) > 0 && !flagSet(fs, "profile") {
		names = nil // -trace alone replaces the default profile
	}
	for _, name := range append(names, traces...) {
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

const usage = `usage: simulate [flags]

Runs scaling policies against synthetic scenarios or recorded traffic and
compares them. -profile and -trace take recorded traffic in these formats,
told by the extension (.csv, .jsonl, .ndjson) or else by the first line:

  CSV          arrival timestamps in seconds, one a line (1700000000.125), or
               second,count lines (0,120)
  access log   Common or Combined Log Format; the user field is the tenant, the
               path the route, and an optional last field the latency: seconds
               with a point (nginx $request_time), integer microseconds
               (Apache %D) or a Go duration (42ms), optionally as key=value
                 1.2.3.4 - acme [10/Oct/2000:13:55:36 -0700] "GET /cart HTTP/1.1" 200 512 0.042
  JSON lines   one object a line: "timestamp" (or time, ts, @timestamp) as
               RFC 3339 or Unix seconds or milliseconds; optional "latency_ms"
               or "duration" (seconds or a Go duration), "tenant", "route"
                 {"timestamp":"2026-03-10T09:00:00.125Z","tenant":"acme","latency_ms":42}

A log's tenants are replayed as tenants and its latencies become the service
time. A bad line is reported with its number.

`

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func scenario(name string) (simulate.Scenario, error) {
	if sc, ok := simulate.ScenarioByName(name); ok {
		return sc, nil
	}
	if _, err := os.Stat(name); err == nil || strings.ContainsAny(name, `./\`) {
		tr, err := simulate.ReadTraceFile(name)
		if err != nil {
			return simulate.Scenario{}, err
		}
		base := filepath.Base(name)
		return simulate.TraceScenario(strings.TrimSuffix(base, filepath.Ext(base)), tr), nil
	}
	return simulate.Scenario{}, fmt.Errorf("unknown scenario %q (known: %s; or a trace file)", name, strings.Join(simulate.ScenarioNames(), ", "))
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
