package middleware_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// coldFleet is an in-process actuator: asked for more replicas, it starts them as
// httptest servers after coldStart, on a goroutine it owns, then reports them ready.
// The cold start runs on real time: the servers and the clients are real.
type coldFleet struct {
	t         *testing.T
	coldStart time.Duration
	act       *middleware.Activator
	fail      bool // never start replicas

	mu       sync.Mutex
	replicas []*httptest.Server
	wg       sync.WaitGroup
	readyAt  atomic.Int64 // unix ns of the first readiness
	first    atomic.Int64 // unix ns of the first request a replica served
	rr       atomic.Uint64
	started  atomic.Int32
	asked    atomic.Int32
	stopping chan struct{}
}

func (f *coldFleet) Scale(ctx context.Context, req actuator.Request) error {
	f.asked.Store(int32(req.Replicas))
	if f.fail {
		return actuator.Permanent(errTestStart)
	}
	f.mu.Lock()
	n := req.Replicas - int(f.started.Load())
	f.mu.Unlock()
	if n <= 0 {
		return nil
	}
	f.started.Add(int32(n))
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		select {
		case <-time.After(f.coldStart):
		case <-f.stopping:
			return
		}
		f.mu.Lock()
		for range n {
			f.replicas = append(f.replicas, httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				f.first.CompareAndSwap(0, time.Now().UnixNano())
				time.Sleep(5 * time.Millisecond)
				_, _ = w.Write([]byte("ok"))
			})))
		}
		ready := len(f.replicas)
		f.mu.Unlock()
		f.readyAt.CompareAndSwap(0, time.Now().UnixNano())
		if err := f.act.SetReady("svc", ready); err != nil {
			f.t.Error(err)
		}
	}()
	return nil
}

var errTestStart = &startError{}

type startError struct{}

func (*startError) Error() string { return "test: replicas cannot start" }

func (f *coldFleet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if len(f.replicas) == 0 {
		f.mu.Unlock()
		http.Error(w, "no replica", http.StatusBadGateway)
		return
	}
	s := f.replicas[int(f.rr.Add(1))%len(f.replicas)]
	f.mu.Unlock()
	u, _ := url.Parse(s.URL)
	httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
}

func (f *coldFleet) close() {
	close(f.stopping)
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.replicas {
		s.Close()
	}
}

type coldResult struct {
	status     int
	retryAfter string
	hold       string
	waited     string
	at         time.Time
}

// runCold puts a target at zero behind an activator and a running loop whose tick is an
// hour (so only the wake can step it), fires n concurrent requests and returns what each
// got.
func runCold(t *testing.T, n int, cfg middleware.HoldConfig, fail bool) ([]coldResult, *coldFleet, *autoscale.Loop) {
	t.Helper()
	fleet := &coldFleet{t: t, coldStart: 2 * time.Second, fail: fail, stopping: make(chan struct{})}
	loop, err := autoscale.NewLoop(
		autoscale.WithPolicy(autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) { return nil, nil })),
		autoscale.WithTargets(autoscale.Target{Name: "svc", Min: 0, Max: 10, Actuator: fleet, ColdStart: 2 * time.Second}),
		autoscale.WithTick(time.Hour),
		autoscale.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		t.Fatal(err)
	}
	act, err := middleware.NewActivator(loop, map[string]middleware.HoldConfig{"svc": cfg})
	if err != nil {
		t.Fatal(err)
	}
	fleet.act = act
	h, err := act.Handler("svc", fleet)
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(h)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- loop.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
		gw.Close()
		fleet.close()
	})

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res := make([]coldResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := client.Get(gw.URL)
			if err != nil {
				t.Error(err)
				return
			}
			_ = resp.Body.Close()
			res[i] = coldResult{
				status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"),
				hold: resp.Header.Get(middleware.HoldHeader), waited: resp.Header.Get(middleware.ColdStartHeader),
				at: time.Now(),
			}
		})
	}
	wg.Wait()
	return res, fleet, loop
}

func TestActivatorScaleFromZero(t *testing.T) {
	t.Parallel()
	res, fleet, loop := runCold(t, 200, middleware.HoldConfig{Concurrency: 50, MaxQueue: 200, MaxWait: 8 * time.Second}, false)
	for i, r := range res {
		if r.status != http.StatusOK || r.waited == "" {
			t.Fatalf("request %d: status %d, %s %q", i, r.status, middleware.ColdStartHeader, r.waited)
		}
	}
	lag := time.Duration(fleet.first.Load() - fleet.readyAt.Load())
	t.Logf("first forwarded %v after readiness", lag)
	if lag < 0 || lag > 100*time.Millisecond {
		t.Errorf("first request forwarded %v after readiness, want within 100ms", lag)
	}
	if got := fleet.asked.Load(); got != 4 {
		t.Errorf("asked for %d replicas, want 4 (200 held / 50 each)", got)
	}
	var woke bool
	for _, d := range loop.Decisions() {
		for _, s := range d.Steps {
			if s.Name == autoscale.StepWake && s.After == 4 {
				woke = true
			}
		}
	}
	if !woke {
		t.Errorf("no decision with a wake step to 4: %+v", loop.Decisions())
	}
	if cs, ok := loop.ColdStart("svc"); !ok || cs < 2*time.Second || cs > 3*time.Second {
		t.Errorf("observed cold start %v %v, want about 2s", cs, ok)
	}
}

func TestActivatorScaleFromZeroOverflow(t *testing.T) {
	t.Parallel()
	res, fleet, _ := runCold(t, 200, middleware.HoldConfig{Concurrency: 50, MaxQueue: 50, MaxWait: 8 * time.Second}, false)
	readyAt := time.Unix(0, fleet.readyAt.Load())
	var ok, full int
	for i, r := range res {
		switch r.status {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			full++
			if r.hold != "queue-full" {
				t.Errorf("request %d: %s %q", i, middleware.HoldHeader, r.hold)
			}
			ra, err := strconv.Atoi(r.retryAfter)
			if err != nil {
				t.Fatalf("request %d: Retry-After %q", i, r.retryAfter)
			}
			remaining := readyAt.Sub(r.at)
			if d := time.Duration(ra)*time.Second - remaining; d < -time.Second || d > time.Second {
				t.Errorf("request %d: Retry-After %ds, true remaining cold start %v", i, ra, remaining)
			}
		default:
			t.Errorf("request %d: status %d", i, r.status)
		}
	}
	if ok != 50 || full != 150 {
		t.Errorf("%d served, %d rejected; want 50 and 150", ok, full)
	}
}

func TestActivatorReplicasNeverStart(t *testing.T) {
	t.Parallel()
	res, _, loop := runCold(t, 20, middleware.HoldConfig{Concurrency: 5, MaxQueue: 20, MaxWait: 300 * time.Millisecond, ColdStart: time.Second}, true)
	for i, r := range res {
		if r.status != http.StatusServiceUnavailable || r.hold != "timeout" || r.retryAfter == "" {
			t.Errorf("request %d: status %d, %s %q, Retry-After %q", i, r.status, middleware.HoldHeader, r.hold, r.retryAfter)
		}
	}
	if err := loop.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var failed bool
	for _, d := range loop.Decisions() {
		failed = failed || d.Actuation.Err != ""
	}
	if !failed {
		t.Error("no decision records the actuator's failure")
	}
}
