package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// profiles are the load generator's traffic shapes, compressed so that each shows
// autoscaling within a minute. They repeat with the period given.
var profiles = map[string]struct {
	profile simulate.Profile
	period  time.Duration
	about   string
}{
	"flash-sale": {simulate.FlashSale{Base: 40, Peak: 10, Start: 10 * time.Second, Rise: 5 * time.Second, Hold: 30 * time.Second, Fall: 3 * time.Second},
		2 * time.Minute, "40 rps, then 10× within 5 s at 0:10 for 30 s, every 2 minutes"},
	"step":     {simulate.Step{From: 40, To: 300, At: 10 * time.Second}, 0, "40 rps, then 300 rps from 0:10"},
	"ramp":     {simulate.Ramp{From: 20, To: 400, Start: 5 * time.Second, Length: time.Minute}, 0, "20 to 400 rps over a minute"},
	"diurnal":  {simulate.Diurnal{Min: 20, Max: 400, Period: 2 * time.Minute}, 0, "a day of 20–400 rps in 2 minutes"},
	"bursty":   {mustBursty(), 0, "60 rps with 6× bursts of 3–8 s every 20 s on average"},
	"constant": {simulate.Constant(100), 0, "100 rps"},
	"none":     {simulate.Constant(0), 0, "no load: bring your own (curl, wrk, hey)"},
	"cold-start": {wakeUps{}, 0, "from zero replicas: 10 rps for 4 s every 45 s, held while a replica starts, " +
		"scaled to zero after 15 s idle"},
}

// wakeUps is the cold-start profile: short bursts after long silences, so that the
// target scales to zero between them and each burst's first requests wait for a
// replica to start (the activator holds them).
type wakeUps struct{}

func (wakeUps) Rate(t time.Duration) float64 {
	if t < 2*time.Second || (t-2*time.Second)%(45*time.Second) >= 4*time.Second {
		return 0
	}
	return 10
}

func mustBursty() simulate.Profile {
	b, err := simulate.NewBursty(60, 6, 20*time.Second, 3*time.Second, 8*time.Second, 24*time.Hour, 1)
	if err != nil {
		panic(err) // constant arguments
	}
	return b
}

func profileNames() string {
	var names []string
	for n, p := range profiles {
		names = append(names, fmt.Sprintf("%s (%s)", n, p.about))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// tenants are the load's tenants and their shares; "free" is throttled by the demo.
var tenants = []struct {
	name  string
	share float64
}{{"acme", 0.5}, {"globex", 0.35}, {"free", 0.15}}

// tenantShares describes the tenants' shares of the load: "acme 50%, ...".
func tenantShares() string {
	parts := make([]string, len(tenants))
	for i, t := range tenants {
		parts[i] = fmt.Sprintf("%s %.0f%%", t.name, 100*t.share)
	}
	return strings.Join(parts, ", ")
}

// loadgen sends requests at a profile's rate, open loop (arrivals do not wait for
// answers, as real users don't), and counts every answer by what it was.
type loadgen struct {
	client  *http.Client
	url     string
	profile simulate.Profile
	period  time.Duration
	max     int // requests in flight at most

	sent, served, shed, throttled, errored atomic.Uint64
}

// counts are the load generator's totals.
type counts struct{ Sent, Served, Shed, Throttled, Errored uint64 }

func (g *loadgen) counts() counts {
	// Read sent last: an answer is counted after its request, so the sums never exceed it.
	c := counts{Served: g.served.Load(), Shed: g.shed.Load(), Throttled: g.throttled.Load(), Errored: g.errored.Load()}
	c.Sent = g.sent.Load()
	return c
}

// run sends until ctx ends, then waits for every request in flight.
func (g *loadgen) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, g.max)
	const step = 10 * time.Millisecond
	t := time.NewTicker(step)
	defer t.Stop()
	start := time.Now()
	owed := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			at := now.Sub(start)
			if g.period > 0 {
				at %= g.period
			}
			owed += g.profile.Rate(at) * step.Seconds()
			for ; owed >= 1; owed-- {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				g.sent.Add(1)
				wg.Go(func() {
					defer func() { <-sem }()
					g.one()
				})
			}
		}
	}
}

func (g *loadgen) one() {
	tenant := tenants[len(tenants)-1].name
	x := rand.Float64()
	for _, t := range tenants {
		if x < t.share {
			tenant = t.name
			break
		}
		x -= t.share
	}
	req, _ := http.NewRequest("GET", g.url, nil)
	req.Header.Set(middleware.TenantHeader, tenant)
	resp, err := g.client.Do(req)
	if err != nil {
		g.errored.Add(1)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		g.served.Add(1)
	case resp.Header.Get(middleware.RejectedHeader) == "throttled":
		g.throttled.Add(1)
	case resp.Header.Get(middleware.RejectedHeader) != "":
		g.shed.Add(1)
	default:
		g.errored.Add(1)
	}
}
