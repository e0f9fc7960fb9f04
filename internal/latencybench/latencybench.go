// Package latencybench measures the latency a server adds over another at fixed
// offered rates, with vegeta as the open-loop load generator: requests leave on a
// schedule whether or not earlier ones have been answered, as real users' do, so a
// slow server is not flattered by a client that waits for it (coordinated omission).
//
// Rounds alternate between the servers compared, so that drift on a shared machine
// (a neighbour's burst, the CPU's frequency) hits all of them. A server's percentiles
// are exact, over every request of every round; what one server adds over another is
// the median over rounds of the difference between their percentiles in that round,
// so that a burst that hit one round of one server does not decide it.
//
// It is a harness for the examples' benchmarks and scripts/bench.sh, not part of the
// library.
package latencybench

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Server is one server under test.
type Server struct {
	Name string
	// Targets are the requests sent to it, in turn.
	Targets []vegeta.Target
}

// Config says how hard and how long to drive the servers.
type Config struct {
	// Rates are the offered rates, in requests per second, each measured in turn.
	Rates []int
	// Round is how long one server is driven in one round. Default 2 s.
	Round time.Duration
	// Rounds is the number of rounds per rate; each round drives every server once.
	// Default 5.
	Rounds int
	// Warmup is how long each server is driven at each rate before the rounds, not
	// counted. Default Round/2.
	Warmup time.Duration
	// Client sends the requests; it is shared by every round so that connections
	// stay open between them. Default: a client with a 5 s timeout and at most 1,000
	// connections to a host (past that, requests wait for one, and the wait counts).
	Client *http.Client
}

// Result is one server's latencies at one rate.
type Result struct {
	Server string
	Rate   int
	// Sent is the requests sent; Errors those that failed or had a status other
	// than 200 (their latencies are counted too).
	Sent, Errors int
	// Achieved is the rate at which requests left, in requests per second: below
	// Rate when the generator could not keep up.
	Achieved       float64
	P50, P99, P999 time.Duration
	Mean           time.Duration
	// PerRound holds the p50, p99 and p99.9 of each round, in order.
	PerRound  [][3]time.Duration
	latencies []time.Duration
	driven    time.Duration // the rounds' lengths, summed
}

// Run drives every server at every rate of cfg and returns one Result per server
// and rate, rates in the order given and servers in the order given within a rate.
func Run(cfg Config, servers ...Server) ([]Result, error) {
	if len(cfg.Rates) == 0 || len(servers) == 0 {
		return nil, fmt.Errorf("latencybench: no rates or no servers")
	}
	if cfg.Round <= 0 {
		cfg.Round = 2 * time.Second
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = cfg.Round / 2
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1000, MaxConnsPerHost: 1000}}
		defer client.CloseIdleConnections()
	}
	var out []Result
	for _, rate := range cfg.Rates {
		if rate <= 0 {
			return nil, fmt.Errorf("latencybench: rate %d", rate)
		}
		rs := make([]Result, len(servers))
		for i, s := range servers {
			if len(s.Targets) == 0 {
				return nil, fmt.Errorf("latencybench: server %q has no targets", s.Name)
			}
			rs[i] = Result{Server: s.Name, Rate: rate}
			attack(client, s, rate, cfg.Warmup, nil)
		}
		for range cfg.Rounds {
			for i, s := range servers {
				attack(client, s, rate, cfg.Round, &rs[i])
			}
		}
		for i := range rs {
			rs[i].finish()
		}
		out = append(out, rs...)
	}
	return out, nil
}

// attack drives s at rate for d and adds what it saw to r, when r is not nil.
func attack(client *http.Client, s Server, rate int, d time.Duration, r *Result) {
	// An Attacker stops for good after one attack; the client, and so its
	// connections, is shared.
	a := vegeta.NewAttacker(vegeta.Client(client))
	first := 0
	if r != nil {
		first = len(r.latencies)
	}
	for res := range a.Attack(vegeta.NewStaticTargeter(s.Targets...), vegeta.Rate{Freq: rate, Per: time.Second}, d, s.Name) {
		if r == nil {
			continue
		}
		r.Sent++
		if res.Error != "" || res.Code != http.StatusOK {
			r.Errors++
		}
		r.latencies = append(r.latencies, res.Latency)
	}
	if r != nil {
		r.driven += d
		round := slices.Clone(r.latencies[first:])
		if len(round) > 0 {
			slices.Sort(round)
			r.PerRound = append(r.PerRound, [3]time.Duration{quantile(round, 0.5), quantile(round, 0.99), quantile(round, 0.999)})
		}
	}
}

func (r *Result) finish() {
	if len(r.latencies) == 0 {
		return
	}
	slices.Sort(r.latencies)
	r.P50, r.P99, r.P999 = quantile(r.latencies, 0.5), quantile(r.latencies, 0.99), quantile(r.latencies, 0.999)
	var sum time.Duration
	for _, l := range r.latencies {
		sum += l
	}
	r.Mean = sum / time.Duration(len(r.latencies))
	r.Achieved = float64(r.Sent) / r.driven.Seconds()
	r.latencies = nil
}

// quantile returns the q-quantile of sorted by the nearest-rank method.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// WriteTable writes rs as a table, one row per rate: for each rate, the p50, p99 and
// p99.9 of the server named subject, of the one named base, and what subject adds
// over base ([Pair.Added]). Rows for other servers are left out.
func WriteTable(w io.Writer, rs []Result, subject, base string) {
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
	plus := func(d time.Duration) string { return fmt.Sprintf("%+.0f µs", float64(d)/float64(time.Microsecond)) }
	fmt.Fprintf(w, "| offered rps | %[1]s p50 | %[1]s p99 | %[1]s p99.9 | %[2]s p50 | %[2]s p99 | %[2]s p99.9 | added p50 | added p99 | added p99.9 | sent (errors) |\n", subject, base)
	// The added columns are medians of paired rounds (Pair.Added), not differences of
	// the columns before them.
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, p := range Pairs(rs, subject, base) {
		s, b := p.Subject, p.Base
		a50, a99, a999 := p.Added()
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d (%d) / %d (%d) |\n",
			s.Rate, us(s.P50), us(s.P99), us(s.P999), us(b.P50), us(b.P99), us(b.P999),
			plus(a50), plus(a99), plus(a999), s.Sent, s.Errors, b.Sent, b.Errors)
	}
}

// Pair is two servers' results at one rate.
type Pair struct{ Subject, Base Result }

// Added returns what Subject adds over Base at the p50, p99 and p99.9: for each, the
// median over rounds of Subject's percentile less Base's in the same round.
func (p Pair) Added() (p50, p99, p999 time.Duration) {
	n := min(len(p.Subject.PerRound), len(p.Base.PerRound))
	if n == 0 {
		return 0, 0, 0
	}
	var out [3]time.Duration
	for q := range out {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = p.Subject.PerRound[i][q] - p.Base.PerRound[i][q]
		}
		slices.Sort(d)
		if n%2 == 1 {
			out[q] = d[n/2]
		} else {
			out[q] = (d[n/2-1] + d[n/2]) / 2
		}
	}
	return out[0], out[1], out[2]
}

// Pairs returns the results of the servers named subject and base, paired by rate.
func Pairs(rs []Result, subject, base string) []Pair {
	var ps []Pair
	for _, s := range rs {
		if s.Server != subject {
			continue
		}
		for _, b := range rs {
			if b.Server == base && b.Rate == s.Rate {
				ps = append(ps, Pair{s, b})
			}
		}
	}
	return ps
}
