package redislimit

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/internal/redistest"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// replica is one gateway: a middleware stack whose admission asks a cluster limiter.
type replica struct {
	lim *Limiter
	h   http.Handler
	// counts by outcome
	sent, served, throttled, shed, errored atomic.Int64
}

// newCluster starts n replicas sharing tenant "acme"'s limit through srv, each with
// its refresher running until the test ends.
func newCluster(t *testing.T, srv *redistest.Server, n int, lim Limit, cfg Config) []*replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	out := make([]*replica, n)
	for i := range out {
		c := cfg
		c.Replica = string(rune('a' + i))
		l := newLimiter(t, srv.Client(), c)
		if err := l.SetLimit("acme", lim); err != nil {
			t.Fatal(err)
		}
		adm, err := middleware.NewAdmission(middleware.AdmissionConfig{}, middleware.WithTenantLimiter(l))
		if err != nil {
			t.Fatal(err)
		}
		ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
		h, err := middleware.Wrap(ok, middleware.WithAdmission(adm))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = &replica{lim: l, h: h}
		wg.Go(func() { l.Run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() }) // before the clients close
	return out
}

// serve sends one request to r and counts its outcome; it returns how long it took.
func (r *replica) serve(req *http.Request) time.Duration {
	w := httptest.NewRecorder()
	start := time.Now()
	r.h.ServeHTTP(w, req)
	d := time.Since(start)
	r.sent.Add(1)
	switch {
	case w.Code == 200:
		r.served.Add(1)
	case w.Code == 429:
		r.throttled.Add(1)
	case w.Code == 503:
		r.shed.Add(1)
	default:
		r.errored.Add(1)
	}
	return d
}

// load runs clients that send requests until stop closes, each to replica i with
// probability weights[i]; pace is the pause between a client's requests. Each request's
// duration goes to record, when set.
func load(rs []*replica, clients int, weights []float64, pace time.Duration, stop <-chan struct{}, record func(time.Duration)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(c), 7))
			req := httptest.NewRequest("GET", "/api", nil)
			req.Header.Set(middleware.TenantHeader, "acme")
			for {
				select {
				case <-stop:
					return
				default:
				}
				x, i := rnd.Float64(), 0
				for i < len(weights)-1 && x >= weights[i] {
					x -= weights[i]
					i++
				}
				d := rs[i].serve(req)
				if record != nil {
					record(d)
				}
				if pace > 0 {
					time.Sleep(pace)
				}
			}
		})
	}
	return &wg
}

func checkAccounting(t *testing.T, rs []*replica) {
	t.Helper()
	for i, r := range rs {
		if s, sum := r.sent.Load(), r.served.Load()+r.throttled.Load()+r.shed.Load()+r.errored.Load(); s != sum {
			t.Errorf("replica %d: sent %d, served+throttled+shed+errored %d", i, s, sum)
		}
	}
}

// TestClusterLimit: three replicas share a 300 rps limit under 64 clients spread
// 80/15/5 %; the admitted requests stay within Burst + Rate×T + N×MaxBatch.
func TestClusterLimit(t *testing.T) {
	srv := redistest.Start(t)
	lim := Limit{Rate: 300, Burst: 300}
	cfg := Config{Refresh: 100 * time.Millisecond, Deadline: 100 * time.Millisecond}
	start := time.Now()
	rs := newCluster(t, srv, 3, lim, cfg)
	stop := make(chan struct{})
	wg := load(rs, 64, []float64{0.80, 0.15, 0.05}, 500*time.Microsecond, stop, nil)
	time.Sleep(2 * time.Second) // the length of the run, not a wait for a result
	close(stop)
	wg.Wait()
	T := time.Since(start).Seconds()

	var served, sent int64
	for _, r := range rs {
		served += r.served.Load()
		sent += r.sent.Load()
	}
	maxBatch := 300 * cfg.Refresh.Seconds()
	bound := float64(lim.Burst) + lim.Rate*T + 3*maxBatch
	t.Logf("served %d of %d in %.2fs (%.0f rps cluster-wide; bound %.0f); per replica: %d %d %d",
		served, sent, T, float64(served)/T, bound, rs[0].served.Load(), rs[1].served.Load(), rs[2].served.Load())
	if float64(served) > bound {
		t.Errorf("served %d > bound %.0f", served, bound)
	}
	// A loaded machine (the race detector, other tests) slows refreshes down, and a
	// refresh past its deadline falls back to local shares: half the limit is the floor.
	if float64(served) < 0.5*lim.Rate*T {
		t.Errorf("served %d, less than half the limit over %.2fs", served, T)
	}
	if sent < 10*served {
		t.Errorf("sent %d is not far above served %d: the clients did not push past the limit", sent, served)
	}
	checkAccounting(t, rs)
}

// TestFaults pauses Redis (SIGSTOP), kills it (SIGKILL) and restarts it under load:
// the request path's p99 does not move by more than 1 ms while Redis hangs, limits
// fall back to local shares and return, and every request is accounted for.
func TestFaults(t *testing.T) {
	srv := redistest.Start(t)
	lim := Limit{Rate: 300, Burst: 30}
	rs := newCluster(t, srv, 3, lim, Config{Refresh: 50 * time.Millisecond, Deadline: 40 * time.Millisecond})

	var mu sync.Mutex
	var durs []time.Duration
	record := func(d time.Duration) {
		mu.Lock()
		durs = append(durs, d)
		mu.Unlock()
	}
	phase := func(d time.Duration) []time.Duration {
		mu.Lock()
		durs = durs[:0]
		mu.Unlock()
		time.Sleep(d) // the length of the phase
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(durs)
	}
	p99 := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		if len(ds) == 0 {
			return 0
		}
		return ds[len(ds)*99/100]
	}
	served := func() (n int64) {
		for _, r := range rs {
			n += r.served.Load()
		}
		return n
	}

	stop := make(chan struct{})
	wg := load(rs, 4, []float64{0.80, 0.15, 0.05}, 200*time.Microsecond, stop, record)
	healthy := p99(phase(500 * time.Millisecond))

	srv.Pause()
	before := served()
	hung := phase(800 * time.Millisecond)
	fallbackServed := served() - before
	for i, r := range rs {
		if st := r.lim.Stats(); !st.Fallback || st.Replicas != 3 {
			t.Errorf("replica %d with redis paused: %+v, want fallback with 3 replicas", i, st)
		}
	}
	if d := p99(hung) - healthy; d > time.Millisecond {
		t.Errorf("p99 %v with redis paused, %v healthy: moved by %v > 1ms", p99(hung), healthy, d)
	}
	t.Logf("p99 healthy %v, redis paused %v (%d requests); served while paused %d", healthy, p99(hung), len(hung), fallbackServed)
	srv.Resume()
	waitHealthy(t, rs)

	srv.Kill()
	phase(300 * time.Millisecond)
	for i, r := range rs {
		if st := r.lim.Stats(); !st.Fallback {
			t.Errorf("replica %d with redis killed: %+v, want fallback", i, st)
		}
	}
	srv.Restart()
	waitHealthy(t, rs)
	close(stop)
	wg.Wait()
	for i, r := range rs {
		// A busy machine may push a refresh past the deadline now and then: each is
		// a fallback too, so at least the two faults.
		if st := r.lim.Stats(); st.Fallbacks < 2 {
			t.Errorf("replica %d: %d fallbacks, want at least 2 (pause, kill)", i, st.Fallbacks)
		} else {
			t.Logf("replica %d: %+v", i, st)
		}
	}
	checkAccounting(t, rs)
}

// waitHealthy waits until every replica's limiter is out of fallback: within a
// refresh or two of Redis answering again (after an abandoned call returns).
func waitHealthy(t *testing.T, rs []*replica) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, r := range rs {
		start := r.lim.Stats().Refreshes
		for r.lim.Stats().Fallback {
			if time.Now().After(deadline) {
				t.Fatalf("a replica stayed in fallback after redis returned: %+v", r.lim.Stats())
			}
			time.Sleep(5 * time.Millisecond) // polling a background refresher
		}
		if n := r.lim.Stats().Refreshes - start; n > 3 {
			t.Errorf("converged after %d refreshes, want within a refresh of redis answering", n)
		}
	}
}
