package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/autoscalelua/autoscalelua/internal/latencybench"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// The latency harness's settings; scripts/bench.sh passes them.
var (
	latencyRates  = flag.String("latency.rates", "500,2000,5000", "offered rates (requests per second) of BenchmarkLatencyAdded, comma-separated")
	latencyRound  = flag.Duration("latency.round", 2*time.Second, "how long BenchmarkLatencyAdded drives each server per round")
	latencyRounds = flag.Int("latency.rounds", 5, "rounds per rate of BenchmarkLatencyAdded")
	wrkRound      = flag.Duration("wrk.round", 3*time.Second, "how long BenchmarkWrkGatewayVsBare runs wrk per server per round")
	wrkRounds     = flag.Int("wrk.rounds", 5, "rounds of BenchmarkWrkGatewayVsBare")
)

// latencyServers are the gateway and the bare proxy as vegeta targets, each request
// carrying the next of benchTenants.
func latencyServers(s *benchServers) []latencybench.Server {
	server := func(name, base string) latencybench.Server {
		ls := latencybench.Server{Name: name}
		for _, t := range benchTenants {
			ls.Targets = append(ls.Targets, vegeta.Target{Method: http.MethodGet, URL: base + "/api/items",
				Header: http.Header{middleware.TenantHeader: {t}}})
		}
		return ls
	}
	return []latencybench.Server{server("gateway", s.gateway.URL), server("bare", s.bare.URL)}
}

// measureLatency drives the gateway and the bare proxy of s at cfg's rates, rounds
// interleaved. A request that times out (after 5 s) or is not answered 200 counts as
// an error in its Result. The client opens at most 1,000 connections to a server:
// past what the machine serves, requests wait for one (and the wait counts in their
// latency) instead of each opening its own until the process runs out of files.
func measureLatency(tb testing.TB, s *benchServers, cfg latencybench.Config) []latencybench.Result {
	tb.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1000, MaxConnsPerHost: 1000}}
	defer client.CloseIdleConnections()
	cfg.Client = client
	rs, err := latencybench.Run(cfg, latencyServers(s)...)
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

// BenchmarkLatencyAdded measures the latency the demo gateway's request path adds to
// a bare httputil.ReverseProxy with a buffer pool (see benchServers) at fixed offered
// rates, with vegeta as the open-loop generator in this process: requests leave on
// schedule whether or not earlier ones were answered. Rounds alternate between the
// two servers; each server's percentiles are exact over every request of every
// round, what the gateway adds is the median over rounds of the difference within a
// round (latencybench.Pair.Added), and it prints them as a table. Generator and servers share the process and its cores, as
// the throughput benchmarks' clients do; BenchmarkWrkGatewayVsBare's client runs
// apart. The goal: at 2,000 rps, at most +100 µs at p50 and
// +300 µs at p99 on the project's 2-core VM.
//
//	go test -run '^$' -bench LatencyAdded -benchtime 1x ./examples/gateway
func BenchmarkLatencyAdded(b *testing.B) {
	var rates []int
	for f := range strings.SplitSeq(*latencyRates, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			b.Fatalf("-latency.rates: %v", err)
		}
		rates = append(rates, r)
	}
	s := newBenchServers(b)
	var all []latencybench.Result
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	for _, rate := range rates {
		b.Run(fmt.Sprintf("rps=%d", rate), func(b *testing.B) {
			for b.Loop() {
				rs := measureLatency(b, s, latencybench.Config{Rates: []int{rate}, Round: *latencyRound, Rounds: *latencyRounds})
				p := latencybench.Pairs(rs, "gateway", "bare")[0]
				b.ReportMetric(us(p.Subject.P50), "gateway-p50-µs")
				b.ReportMetric(us(p.Subject.P99), "gateway-p99-µs")
				b.ReportMetric(us(p.Base.P50), "bare-p50-µs")
				b.ReportMetric(us(p.Base.P99), "bare-p99-µs")
				a50, a99, a999 := p.Added()
				b.ReportMetric(us(a50), "added-p50-µs")
				b.ReportMetric(us(a99), "added-p99-µs")
				b.ReportMetric(us(a999), "added-p99.9-µs")
				b.ReportMetric(p.Subject.Achieved, "achieved-req/s")
				// Errors are reported, not fatal: past what the machine serves, requests
				// time out, and the table shows how many.
				b.ReportMetric(float64(p.Subject.Errors+p.Base.Errors), "errors")
				all = append(all, rs...)
			}
		})
	}
	var t bytes.Buffer
	fmt.Fprintf(&t, "\nlatency added by the demo gateway over a bare ReverseProxy (vegeta, open loop; %d rounds of %v per server and rate, interleaved)\n",
		*latencyRounds, *latencyRound)
	latencybench.WriteTable(&t, all, "gateway", "bare")
	t.WriteString("\n")
	os.Stdout.Write(t.Bytes())
}

// BenchmarkWrkGatewayVsBare measures the throughput of the demo gateway's request
// path and of the bare proxy with wrk (Debian's package), a client in its own
// process, rounds interleaved: "ratio" is gateway/bare, the medians of rounds.
//
//	go test -run '^$' -bench WrkGatewayVsBare -benchtime 1x ./examples/gateway
func BenchmarkWrkGatewayVsBare(b *testing.B) {
	s := newBenchServers(b)
	var headers []map[string]string
	for _, t := range benchTenants {
		headers = append(headers, map[string]string{middleware.TenantHeader: t})
	}
	for b.Loop() {
		rs, err := latencybench.Wrk(context.Background(), latencybench.WrkConfig{Round: *wrkRound, Rounds: *wrkRounds, Headers: headers},
			[]string{"gateway", "bare"}, map[string]string{"gateway": s.gateway.URL + "/api/items", "bare": s.bare.URL + "/api/items"})
		if err != nil {
			b.Fatal(err)
		}
		g, r := rs[0].PerSecond, rs[1].PerSecond
		b.ReportMetric(g, "gateway-req/s")
		b.ReportMetric(r, "bare-req/s")
		b.ReportMetric(g/r, "ratio")
		fmt.Printf("\nwrk (-t2 -c32, %d rounds of %v, interleaved): gateway %.0f req/s, bare %.0f req/s, ratio %.3f\n",
			*wrkRounds, *wrkRound, g, r, g/r)
	}
}

// TestLatencyHarness runs BenchmarkLatencyAdded's harness for about a second at a
// low rate, so that the suite exercises it: every request answered, the quantiles in
// order, and a table row for the rate.
func TestLatencyHarness(t *testing.T) {
	s := newBenchServers(t)
	rs := measureLatency(t, s, latencybench.Config{Rates: []int{200}, Round: 200 * time.Millisecond, Rounds: 2, Warmup: 100 * time.Millisecond})
	ps := latencybench.Pairs(rs, "gateway", "bare")
	if len(ps) != 1 {
		t.Fatalf("results %+v", rs)
	}
	for _, r := range []latencybench.Result{ps[0].Subject, ps[0].Base} {
		if r.Errors > 0 {
			t.Errorf("%s: %d of %d requests failed", r.Server, r.Errors, r.Sent)
		}
		// 200 rps for 2 × 0.2 s: 80 requests, give or take the pacer's edges.
		if r.Sent < 70 || r.Sent > 90 {
			t.Errorf("%s: sent %d, want about 80", r.Server, r.Sent)
		}
		if !(0 < r.P50 && r.P50 <= r.P99 && r.P99 <= r.P999) {
			t.Errorf("%s: quantiles %v %v %v", r.Server, r.P50, r.P99, r.P999)
		}
	}
	var b bytes.Buffer
	latencybench.WriteTable(&b, rs, "gateway", "bare")
	if !strings.Contains(b.String(), "| 200 |") {
		t.Errorf("table:\n%s", b.String())
	}
}
