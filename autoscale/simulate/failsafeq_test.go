package simulate_test

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/priority"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// failsafeQueue admits through failsafe-go's PriorityLimiter: its adaptive limit
// with a queue (by default up to 2-3× the limit) in which a request's priority
// level decides whether it may wait. A waiting Acquire blocks, so each request that
// cannot start at once waits on its own goroutine, inside the synctest bubble; the
// admitter tells the simulator of each decision (a simulate.WaitingAdmitter).
// Priority levels are drawn in failsafe-go's bands (low 100-199, high 300-399) from
// a seeded source, as failsafe-go's Priority.RandomLevel draws them from an unseeded
// one, so runs repeat. It runs with 100 ms windows, like ours, its prioritizer
// calibrated every 100 ms, and a request waits at most [middleware.DefaultMaxWait]
// (1 s), as in our admission's queue.
type failsafeQueue struct {
	lim      adaptivelimiter.PriorityLimiter[any]
	pr       priority.Prioritizer
	rng      *rand.Rand
	maxWait  time.Duration
	calEvery time.Duration
	nextCal  time.Time
	seq      uint64

	mu  sync.Mutex
	got []acquired // the waiting goroutines' results
}

type acquired struct {
	seq    uint64
	decide func(simulate.Release, error)
	p      adaptivelimiter.Permit
	err    error
}

var _ simulate.WaitingAdmitter = (*failsafeQueue)(nil)

// tryer is the non-blocking acquire the PriorityLimiter's implementation has (from
// the adaptive limiter it wraps) but its interface does not name.
type tryer interface {
	TryAcquirePermit() (adaptivelimiter.Permit, bool)
}

func newFailsafeQueue(start time.Time) *failsafeQueue {
	pr := adaptivelimiter.NewPrioritizer()
	return &failsafeQueue{
		lim: adaptivelimiter.NewBuilder[any]().WithLimits(1, 1000, floodInitial).
			WithRecentWindow(100*time.Millisecond, time.Second, 10).BuildPrioritized(pr),
		pr: pr, rng: rand.New(rand.NewPCG(1, 2)),
		maxWait: middleware.DefaultMaxWait, calEvery: 100 * time.Millisecond, nextCal: start,
	}
}

// advance moves the bubble's clock to to, calibrating the prioritizer every
// calEvery on the way (as its ScheduleCalibrations would), and hands the waiting
// goroutines' results to the simulator.
func (f *failsafeQueue) advance(to time.Time) {
	for !f.nextCal.After(to) {
		advance(f.nextCal)
		synctest.Wait()
		f.pr.Calibrate()
		f.nextCal = f.nextCal.Add(f.calEvery)
	}
	advance(to)
	synctest.Wait()
	f.deliver()
}

func (f *failsafeQueue) deliver() {
	f.mu.Lock()
	got := f.got
	f.got = nil
	f.mu.Unlock()
	// Goroutines woken together append in any order; the arrival order is fixed.
	slices.SortFunc(got, func(a, b acquired) int { return cmp.Compare(a.seq, b.seq) })
	for _, a := range got {
		if a.err != nil {
			a.decide(nil, a.err)
		} else {
			a.decide(queueRelease{f, a.p}, nil)
		}
	}
}

func (f *failsafeQueue) Admit(ctx context.Context, in middleware.Info) (simulate.Release, error) {
	panic("the simulator calls AdmitOrWait")
}

func (f *failsafeQueue) Limit() int { return f.lim.Limit() }

func (f *failsafeQueue) AdmitOrWait(_ context.Context, in middleware.Info, decide func(simulate.Release, error)) (simulate.Release, bool, error) {
	f.advance(in.Now)
	level := 100 + f.rng.IntN(100)
	if in.Priority >= floodHigh {
		level = 300 + f.rng.IntN(100)
	}
	if p, ok := f.lim.(tryer).TryAcquirePermit(); ok {
		return queueRelease{f, p}, false, nil
	}
	if !f.lim.CanAcquirePermitWithLevel(level) {
		return nil, false, adaptivelimiter.ErrExceeded
	}
	f.seq++
	seq := f.seq
	ctx, cancel := context.WithTimeout(context.Background(), f.maxWait)
	go func() {
		defer cancel()
		p, err := f.lim.AcquirePermitWithLevel(ctx, level)
		f.mu.Lock()
		f.got = append(f.got, acquired{seq: seq, decide: decide, p: p, err: err})
		f.mu.Unlock()
	}()
	synctest.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, a := range f.got {
		if a.seq == seq { // decided at once
			f.got = slices.Delete(f.got, k, k+1)
			if a.err != nil {
				return nil, false, a.err
			}
			return queueRelease{f, a.p}, false, nil
		}
	}
	return nil, true, nil
}

type queueRelease struct {
	f *failsafeQueue
	p adaptivelimiter.Permit
}

// DoneAt records or drops the permit, and lets the waiters it frees take it.
func (r queueRelease) DoneAt(end time.Time, o metrics.Outcome) {
	r.f.advance(end)
	if o == metrics.OutcomeOK {
		r.p.Record()
	} else {
		r.p.Drop()
	}
	synctest.Wait()
	r.f.deliver()
}

// runFailsafeQueue runs the flood under failsafe-go's PriorityLimiter.
func runFailsafeQueue(t *testing.T) *simulate.Result {
	var res *simulate.Result
	synctest.Test(t, func(t *testing.T) {
		var err error
		start := time.Now()
		f := newFailsafeQueue(start)
		res, err = simulate.Run(context.Background(), simulate.Config{
			Scenario: flood(), Policy: hold(), Seed: 1, Start: start, Admitter: f,
		})
		// Requests still waiting at the run's end give up after maxWait; the bubble
		// ends when their goroutines have.
		time.Sleep(2 * f.maxWait)
		if err != nil {
			t.Fatal(err)
		}
	})
	return res
}
