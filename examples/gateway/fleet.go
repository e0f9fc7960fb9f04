package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/balancer"
)

// fleet is the demo's backend service: replicas that are real HTTP servers on
// loopback, each serving `concurrency` requests at once with a lognormal service time
// and queueing the rest, so latency grows with load. It is also the in-process
// actuator that scales it: a new replica listens at once but joins the balancer pool
// only after its cold start; a removed replica leaves the pool first and then drains.
type fleet struct {
	pool        *balancer.Pool
	concurrency int
	serviceTime time.Duration
	coldStart   time.Duration
	// onReady, when not nil, is told the ready count whenever it changes (the
	// activator's readiness); it is called with mu held and must not call the fleet.
	onReady func(ready int)

	mu       sync.Mutex
	replicas []*replica // oldest first
	seq      int
	closed   bool
	wg       sync.WaitGroup // serving and draining goroutines, cold-start timers
}

type replica struct {
	id    string
	url   string
	srv   *http.Server
	slots chan struct{}
	ready bool
	timer *time.Timer
	// slowdown multiplies the service time while above 1 (the soak's slow fault).
	slowdown atomic.Int64
}

var (
	_ actuator.Actuator      = (*fleet)(nil)
	_ actuator.ReplicaReader = (*fleet)(nil)
)

// Scale sets the number of replicas: "set to n", as every actuator does.
func (f *fleet) Scale(ctx context.Context, req actuator.Request) error {
	return f.scale(req.Replicas, f.coldStart)
}

// warm starts n replicas that serve at once: the fleet as it was before the demo.
func (f *fleet) warm(n int) error { return f.scale(n, 0) }

func (f *fleet) scale(n int, coldStart time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return actuator.Permanent(errors.New("fleet: closed"))
	}
	for len(f.replicas) < n {
		if err := f.startLocked(coldStart); err != nil {
			return err
		}
	}
	if len(f.replicas) > n {
		// Remove the newest first: they are the ones still starting, or the least warm.
		gone := f.replicas[n:]
		f.replicas = f.replicas[:n]
		f.updatePoolLocked()
		for _, r := range gone {
			f.stopLocked(r)
		}
	}
	return nil
}

// Replicas reports the replicas asked for, starting ones included, as a Deployment's
// scale subresource reports spec.replicas.
func (f *fleet) Replicas(ctx context.Context, _ actuator.Target) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.replicas), nil
}

// Ready returns the replicas that serve.
func (f *fleet) Ready() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.replicas {
		if r.ready {
			n++
		}
	}
	return n
}

func (f *fleet) startLocked(coldStart time.Duration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	f.seq++
	r := &replica{
		id:    fmt.Sprintf("backend-%d", f.seq),
		url:   "http://" + ln.Addr().String(),
		slots: make(chan struct{}, f.concurrency),
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve(f.serviceTime)), ReadHeaderTimeout: 5 * time.Second}
	f.replicas = append(f.replicas, r)
	f.wg.Go(func() { r.srv.Serve(ln) })
	f.wg.Add(1)
	r.timer = time.AfterFunc(coldStart, func() {
		defer f.wg.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.closed || !f.has(r) {
			return
		}
		r.ready = true
		f.updatePoolLocked()
	})
	return nil
}

func (f *fleet) has(r *replica) bool {
	for _, x := range f.replicas {
		if x == r {
			return true
		}
	}
	return false
}

// stopLocked stops r's cold-start timer and drains and closes its server.
func (f *fleet) stopLocked(r *replica) {
	if r.timer.Stop() {
		f.wg.Done() // the timer's function will not run
	}
	f.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.srv.Shutdown(ctx); err != nil {
			r.srv.Close()
		}
	})
}

func (f *fleet) updatePoolLocked() {
	var eps []balancer.Endpoint
	for _, r := range f.replicas {
		if r.ready {
			eps = append(eps, balancer.Endpoint{ID: r.id, URL: r.url})
		}
	}
	// The endpoints are made here and valid, so Update cannot fail.
	f.pool.Update(eps)
	if f.onReady != nil {
		f.onReady(len(eps))
	}
}

// kill makes the oldest ready replica fail as a crashed process does: its server
// closes at once, connections and all, while the pool still lists it (the balancer's
// outlier detection must find out). After restart, as a ReplicaSet would, the fleet
// drops it and starts a replacement, which serves after the cold start. It returns
// the replica's id, or "" if none is ready.
func (f *fleet) kill(restart time.Duration) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var r *replica
	for _, x := range f.replicas {
		if x.ready {
			r = x
			break
		}
	}
	if f.closed || r == nil {
		return ""
	}
	r.srv.Close()
	f.wg.Add(1)
	time.AfterFunc(restart, func() {
		defer f.wg.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		i := slices.Index(f.replicas, r)
		if f.closed || i < 0 {
			return // scaled away meanwhile
		}
		f.replicas = slices.Delete(f.replicas, i, i+1)
		f.stopLocked(r)
		f.updatePoolLocked()
		f.startLocked(f.coldStart) // on failure the loop scales back up
	})
	return r.id
}

// slow multiplies the service time of the newest ready replica by k (1 restores
// it) and returns its id, or "" if none is ready.
func (f *fleet) slow(k int64) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.replicas) - 1; i >= 0; i-- {
		if r := f.replicas[i]; r.ready {
			r.slowdown.Store(k)
			return r.id
		}
	}
	return ""
}

// unslow restores every replica's service time.
func (f *fleet) unslow() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.replicas {
		r.slowdown.Store(1)
	}
}

// Close stops every replica and waits for them.
func (f *fleet) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	for _, r := range f.replicas {
		f.stopLocked(r)
	}
	f.replicas = nil
	f.mu.Unlock()
	f.wg.Wait()
}

// serve is a replica's handler: wait for one of its slots, work for a lognormal
// service time (σ = 0.3) of the given mean, answer.
func (r *replica) serve(mean time.Duration) func(http.ResponseWriter, *http.Request) {
	sigma := 0.3
	mu := math.Log(float64(mean)) - sigma*sigma/2
	return func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		select {
		case r.slots <- struct{}{}:
		case <-req.Context().Done():
			return
		}
		defer func() { <-r.slots }()
		d := time.Duration(math.Exp(mu + sigma*rand.NormFloat64()))
		if k := r.slowdown.Load(); k > 1 {
			d *= time.Duration(k)
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-req.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "served by %s\n", r.id)
	}
}
