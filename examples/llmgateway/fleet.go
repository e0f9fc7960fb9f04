package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/balancer"
)

// fleet runs the simulated model servers: per model, replicas that are real HTTP
// servers on loopback. A new replica listens at once and joins the balancer pool,
// labelled with its model (and its model's economy lane), only after its cold start;
// a removed one leaves the pool first, then drains. Each model is one target of the
// loop, scaled through [fleet.actuator]. A fleet is safe for concurrent use.
type fleet struct {
	pool  *balancer.Pool
	specs map[string]*modelSpec
	lane  string

	mu      sync.Mutex
	models  map[string][]*replica // oldest first
	seq     int
	closed  bool
	wakeups map[string][]chan struct{} // closed when the model has a ready replica
	wg      sync.WaitGroup
}

type replica struct {
	id     string
	model  string
	url    string
	srv    *http.Server
	engine *modelServer
	ready  bool
	timer  *time.Timer
}

func newFleet(pool *balancer.Pool, specs []*modelSpec, lane string) *fleet {
	f := &fleet{pool: pool, specs: map[string]*modelSpec{}, lane: lane, models: map[string][]*replica{}, wakeups: map[string][]chan struct{}{}}
	for _, s := range specs {
		f.specs[s.name] = s
	}
	return f
}

// modelActuator scales one model's replicas.
type modelActuator struct {
	f     *fleet
	model string
}

var (
	_ actuator.Actuator      = modelActuator{}
	_ actuator.ReplicaReader = modelActuator{}
)

func (f *fleet) actuator(model string) modelActuator { return modelActuator{f, model} }

// Scale sets the model's replicas, "set to n".
func (a modelActuator) Scale(_ context.Context, req actuator.Request) error {
	return a.f.scale(a.model, req.Replicas, a.f.specs[a.model].coldStart)
}

// Replicas reports the replicas asked for, starting ones included.
func (a modelActuator) Replicas(context.Context, actuator.Target) (int, error) {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	return len(a.f.models[a.model]), nil
}

// warm starts n replicas of model that serve at once.
func (f *fleet) warm(model string, n int) error { return f.scale(model, n, 0) }

func (f *fleet) scale(model string, n int, coldStart time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return actuator.Permanent(errors.New("fleet: closed"))
	}
	if f.specs[model] == nil {
		return actuator.Permanent(fmt.Errorf("fleet: unknown model %q", model))
	}
	for len(f.models[model]) < n {
		if err := f.startLocked(model, coldStart); err != nil {
			return err
		}
	}
	if rs := f.models[model]; len(rs) > n {
		gone := rs[n:]
		f.models[model] = rs[:n:n]
		f.updatePoolLocked()
		for _, r := range gone {
			f.stopLocked(r)
		}
	}
	return nil
}

// wake asks for one replica of a cold model at once, as a simple activator does, and
// returns a channel closed when the model has a ready replica; nil when it has one
// already.
func (f *fleet) wake(model string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.specs[model] == nil {
		return nil
	}
	for _, r := range f.models[model] {
		if r.ready {
			return nil
		}
	}
	ch := make(chan struct{})
	if len(f.models[model]) == 0 {
		if err := f.startLocked(model, f.specs[model].coldStart); err != nil {
			close(ch)
			return ch
		}
	}
	f.wakeups[model] = append(f.wakeups[model], ch)
	return ch
}

// ready returns the model's replicas that serve and those asked for.
func (f *fleet) ready(model string) (ready, asked int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.models[model] {
		if r.ready {
			ready++
		}
	}
	return ready, len(f.models[model])
}

// engineLoad sums the model's replicas' batch slots and KV cache in use, and queues.
func (f *fleet) engineLoad(model string) (running, kvUsed, kvCap, queued int) {
	f.mu.Lock()
	rs := slices.Clone(f.models[model])
	f.mu.Unlock()
	for _, r := range rs {
		a, b, c := r.engine.load()
		running, kvUsed, queued = running+a, kvUsed+b, queued+c
		kvCap += f.specs[model].kvTokens
	}
	return
}

func (f *fleet) startLocked(model string, coldStart time.Duration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	f.seq++
	r := &replica{id: fmt.Sprintf("%s-%d", model, f.seq), model: model, url: "http://" + ln.Addr().String()}
	r.engine = &modelServer{spec: f.specs[model], id: r.id}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/chat/completions", r.engine)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	f.models[model] = append(f.models[model], r)
	f.wg.Go(func() { r.srv.Serve(ln) })
	f.wg.Add(1)
	r.timer = time.AfterFunc(coldStart, func() {
		defer f.wg.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.closed || !slices.Contains(f.models[model], r) {
			return
		}
		r.ready = true
		f.updatePoolLocked()
		for _, ch := range f.wakeups[model] {
			close(ch)
		}
		delete(f.wakeups, model)
	})
	return nil
}

func (f *fleet) stopLocked(r *replica) {
	if r.timer.Stop() {
		f.wg.Done()
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
	for model, rs := range f.models {
		serves := model
		if f.specs[model].cheaper != "" {
			serves += "," + model + f.lane
		}
		for _, r := range rs {
			if r.ready {
				eps = append(eps, balancer.Endpoint{ID: r.id, URL: r.url, Labels: map[string]string{balancer.LabelModel: serves}})
			}
		}
	}
	f.pool.Update(eps) // made here and valid: cannot fail
}

// Close stops every replica and waits for them.
func (f *fleet) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	for _, rs := range f.models {
		for _, r := range rs {
			f.stopLocked(r)
		}
	}
	f.models = map[string][]*replica{}
	for _, chs := range f.wakeups {
		for _, ch := range chs {
			close(ch)
		}
	}
	f.wakeups = nil
	f.mu.Unlock()
	f.wg.Wait()
}
