package simulate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// failsafeAdmitter admits the simulated requests through failsafe-go's adaptive
// limiter (github.com/failsafe-go/failsafe-go/adaptivelimiter), for comparison only:
// this file is the only one that imports it. failsafe-go times its permits and
// windows with time.Now and takes no clock, so the run goes inside a testing/synctest
// bubble, whose fake clock the admitter moves to each request's simulated time
// before it calls the limiter: failsafe-go then sees the simulated latencies.
type failsafeAdmitter struct {
	lim adaptivelimiter.AdaptiveLimiter[any]
}

var (
	_ simulate.Admitter = (*failsafeAdmitter)(nil)
	_ simulate.Limiter  = (*failsafeAdmitter)(nil)
)

// advance moves the bubble's clock to the simulated time to (never back).
func advance(to time.Time) {
	if d := time.Until(to); d > 0 {
		time.Sleep(d)
	}
}

func (f *failsafeAdmitter) Admit(_ context.Context, in middleware.Info) (simulate.Release, error) {
	advance(in.Now)
	p, ok := f.lim.TryAcquirePermit()
	if !ok {
		return nil, adaptivelimiter.ErrExceeded
	}
	return failsafeRelease{p}, nil
}

func (f *failsafeAdmitter) Limit() int { return f.lim.Limit() }

type failsafeRelease struct{ p adaptivelimiter.Permit }

// DoneAt records a served request's latency; a failed one is dropped, as
// failsafe-go asks for an execution that ended early (a timeout).
func (r failsafeRelease) DoneAt(end time.Time, o metrics.Outcome) {
	advance(end)
	if o == metrics.OutcomeOK {
		r.p.Record()
	} else {
		r.p.Drop()
	}
}

// The flood scenario: 10 replicas of 10 slots serving requests of 100 ms (1,000
// rps, an optimal concurrency of 100); a high-priority tenant sends 400 rps
// throughout, and from 15 s a low-priority tenant floods with 2,000 rps (2.4×
// capacity in all). Both limiters start at the same limit, 75, so the 15 s before
// the flood are not a race to grow from a small one.
const (
	floodHigh    = 10 // the high tenant's priority
	floodLow     = 0
	floodInitial = 75
)

func flood() simulate.Scenario {
	return simulate.Scenario{
		Name: "flood", Duration: 40 * time.Second, SLO: halvingSLO,
		Traffic: simulate.Mix{
			{Name: "high", Profile: simulate.Constant(400), Priority: floodHigh},
			{Name: "low", Profile: simulate.Step{From: 100, To: 2000, At: 15 * time.Second}, Priority: floodLow},
		},
		Service: simulate.Service{
			Replicas: 10, Min: 10, Max: 10, Concurrency: 10,
			ServiceTime: simulate.Fixed(100 * time.Millisecond), ColdStart: -1,
		},
	}
}

// ourFlood is the flood under this library's adaptive limit: Vegas, with the low
// class allowed 90% of the limit, so the high class keeps the last 10% (and takes
// the low class's share when it needs it).
func ourFlood() simulate.Scenario {
	sc := flood()
	sc.Adaptive = &middleware.AdaptiveConfig{
		Smoothing: 1, Window: 100 * time.Millisecond, MaxLimit: 1000, InitialLimit: floodInitial,
		Classes: []middleware.Class{{Priority: floodLow, Ceiling: 0.9}, {Priority: floodHigh, Ceiling: 1}},
	}
	return sc
}

// runFailsafe runs the flood with failsafe-go's adaptive limiter admitting, inside
// a synctest bubble: with its defaults but for the limits (the same bounds and start
// as ours), and with fast windows (recent window 100 ms to 1 s and 10 samples, as
// ours: 100 ms and 10) when fast is set.
func runFailsafe(t *testing.T, fast bool) *simulate.Result {
	var res *simulate.Result
	synctest.Test(t, func(t *testing.T) {
		b := adaptivelimiter.NewBuilder[any]().WithLimits(1, 1000, floodInitial)
		if fast {
			b = b.WithRecentWindow(100*time.Millisecond, time.Second, 10)
		}
		lim := b.Build()
		var err error
		res, err = simulate.Run(context.Background(), simulate.Config{
			Scenario: flood(), Policy: hold(), Seed: 1, Start: time.Now(),
			Admitter: &failsafeAdmitter{lim: lim},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	return res
}

// TestAgainstFailsafeGo runs the same flood, with the same seed (the same arrivals),
// under this library's adaptive limit per class and under failsafe-go's limiters,
// and reports goodput, admitted p99 and rejections per class. Ours must give the high
// class more goodput than each of them.
//
// failsafe-go's AdaptiveLimiter has one limit for every request and, by default, no
// queue (TryAcquirePermit); it runs with its default windows and with 100 ms
// windows like ours. Its PriorityLimiter adds a queue in which a request's priority
// decides whether it may wait (failsafeq_test.go).
func TestAgainstFailsafeGo(t *testing.T) {
	runs := []namedRun{
		{"autoscalelua, Vegas per class", run(t, ourFlood(), hold(), 1)},
		{"failsafe-go v0.9.8, defaults", runFailsafe(t, false)},
		{"failsafe-go v0.9.8, 100 ms windows", runFailsafe(t, true)},
		{"failsafe-go v0.9.8, PriorityLimiter", runFailsafeQueue(t)},
	}
	t.Logf("flood, same arrivals (seed 1):\n%s", floodTable(runs))
	ours := runs[0].res
	oh := ours.Summary.Tenants[0]
	for _, r := range runs {
		if r.res.Summary.Requests != ours.Summary.Requests {
			t.Fatalf("%s saw %d requests, ours %d: not the same arrivals", r.name, r.res.Summary.Requests, ours.Summary.Requests)
		}
		if th := r.res.Summary.Tenants[0]; th.Name != "high" {
			t.Fatalf("%s: tenant %q first, want high", r.name, th.Name)
		} else if r.res != ours && oh.Goodput <= th.Goodput {
			t.Errorf("high class goodput: ours %.0f/s, %s %.0f/s; want ours higher", oh.Goodput, r.name, th.Goodput)
		}
	}
	if ours.Summary.P99 >= halvingSLO {
		t.Errorf("our admitted p99 %v, want under the SLO %v", ours.Summary.P99, halvingSLO)
	}
}

type namedRun struct {
	name string
	res  *simulate.Result
}

// floodTable renders the runs per class, in markdown.
func floodTable(runs []namedRun) string {
	var b strings.Builder
	b.WriteString("| limiter | class | requests | goodput/s | admitted p99 | rejected |\n|---|---|---:|---:|---:|---:|\n")
	for _, nr := range runs {
		name, r := nr.name, nr.res
		for _, ts := range r.Summary.Tenants {
			fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.0f ms | %d |\n", name, ts.Name, ts.Requests, ts.Goodput,
				float64(ts.P99)/float64(time.Millisecond), ts.Shed)
		}
		s := r.Summary
		fmt.Fprintf(&b, "| %s | all | %d | %.0f | %.0f ms | %d |\n", name, s.Requests, s.Goodput(),
			float64(s.P99)/float64(time.Millisecond), s.Shed)
	}
	return b.String()
}
