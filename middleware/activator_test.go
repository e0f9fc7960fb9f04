package middleware_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// wakes records an activator's wakes: a Scaler and ColdStarter.
type wakes struct {
	mu   sync.Mutex
	got  []int
	cold time.Duration
}

func (w *wakes) Wake(_ string, n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, n)
	return nil
}

func (w *wakes) ColdStart(string) (time.Duration, bool) { return w.cold, w.cold > 0 }

func (w *wakes) last() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.got) == 0 {
		return -1
	}
	return w.got[len(w.got)-1]
}

func newActivator(t *testing.T, s middleware.Scaler, cfg middleware.HoldConfig, clk metrics.Clock) *middleware.Activator {
	t.Helper()
	a, err := middleware.NewActivator(s, map[string]middleware.HoldConfig{"svc": cfg}, middleware.WithActivatorClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type acquired struct {
	id   int
	hold middleware.Hold
	err  error
}

// hold starts a held request on its own goroutine (the client's) and waits until the
// activator counts it.
func hold(t *testing.T, a *middleware.Activator, ctx context.Context, id, prio int, bytes int64, out chan<- acquired) {
	t.Helper()
	before, _ := a.Stats("svc")
	go func() {
		h, err := a.Acquire(ctx, "svc", prio, bytes)
		out <- acquired{id, h, err}
	}()
	for {
		s, _ := a.Stats("svc")
		if s.Held > before.Held || s.Full > before.Full {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func TestActivatorConfigErrors(t *testing.T) {
	_, err := middleware.NewActivator(nil, map[string]middleware.HoldConfig{
		"":  {Concurrency: 1},
		"b": {Concurrency: 0, MaxQueue: -1, MaxQueueBytes: -1, MaxWait: -time.Second, ColdStart: 2 * time.Hour},
	}, nil)
	for _, want := range []string{"nil scaler", "empty target name", "concurrency 0", "max queue -1", "max queue bytes -1", "max wait -1s", "cold start 2h0m0s", "nil option"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to name %q", err, want)
		}
	}
	a := newActivator(t, &wakes{}, middleware.HoldConfig{Concurrency: 1}, metrics.NewManualClock(t0))
	if _, err := a.Acquire(context.Background(), "nope", 0, 0); !errors.Is(err, middleware.ErrUnknownTarget) {
		t.Errorf("unknown target: %v", err)
	}
	if err := a.SetReady("svc", -1); err == nil {
		t.Error("negative ready accepted")
	}
	if _, err := a.Handler("svc", nil); err == nil {
		t.Error("nil handler accepted")
	}
}

// Held requests go by priority, then arrival, no more at once than ready replicas'
// concurrency; the first held request wakes the scaler with the demand.
func TestActivatorReleaseOrderAndPace(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	w := &wakes{}
	a := newActivator(t, w, middleware.HoldConfig{Concurrency: 2}, clk)
	out := make(chan acquired, 8)
	ctx := context.Background()
	for i, prio := range []int{0, 0, 5, 0, 5} {
		hold(t, a, ctx, i, prio, 0, out)
	}
	if got := w.last(); got != 3 {
		t.Errorf("wake asked for %d replicas, want 3 (5 held / 2 each)", got)
	}
	if err := a.SetReady("svc", 1); err != nil {
		t.Fatal(err)
	}
	var order []int
	next := func() acquired {
		r := <-out
		if r.err != nil {
			t.Fatalf("request %d: %v", r.id, r.err)
		}
		order = append(order, r.id)
		return r
	}
	r1, r2 := next(), next()
	select {
	case r := <-out:
		t.Fatalf("request %d released past the capacity of 1 replica × 2", r.id)
	case <-time.After(20 * time.Millisecond):
	}
	r1.hold.Done()
	r3 := next()
	r2.hold.Done()
	r3.hold.Done()
	r4 := next()
	r5 := next()
	r4.hold.Done()
	r5.hold.Done()
	// Within a batch released at once the goroutines race to report: compare sets.
	slices.Sort(order[:2])
	slices.Sort(order[3:])
	if want := []int{2, 4, 0, 1, 3}; !slices.Equal(order, want) {
		t.Errorf("release order %v, want %v (priority 5 first, then arrival)", order, want)
	}
	if s, _ := a.Stats("svc"); s.Forwarded != 5 || s.Waiting != 0 || s.InFlight != 0 {
		t.Errorf("stats %+v", s)
	}
	if got := w.last(); got != 0 {
		t.Errorf("last wake %d, want 0 once none are held", got)
	}
}

// A client that goes away leaves at once and its place goes to the next request.
func TestActivatorCancelFreesPlace(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	a := newActivator(t, &wakes{}, middleware.HoldConfig{Concurrency: 1, MaxQueue: 1}, clk)
	out := make(chan acquired, 4)
	ctx, cancel := context.WithCancel(context.Background())
	hold(t, a, ctx, 1, 0, 0, out)
	if _, err := a.Acquire(context.Background(), "svc", 0, 0); !errors.Is(err, middleware.ErrHoldFull) {
		t.Fatalf("second request in a queue of 1: %v", err)
	}
	cancel()
	if r := <-out; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled request: %v", r.err)
	}
	hold(t, a, context.Background(), 2, 0, 0, out)
	if s, _ := a.Stats("svc"); s.Waiting != 1 || s.Canceled != 1 || s.Full != 1 {
		t.Errorf("stats %+v", s)
	}
	if err := a.SetReady("svc", 1); err != nil {
		t.Fatal(err)
	}
	r := <-out
	if r.err != nil || r.id != 2 {
		t.Fatalf("request %d: %v", r.id, r.err)
	}
	r.hold.Done()
}

// The byte bound rejects, and Retry-After is the remaining cold start plus the drain
// time, on the activator's clock.
func TestActivatorBytesAndRetryAfter(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	w := &wakes{cold: 10 * time.Second}
	a := newActivator(t, w, middleware.HoldConfig{Concurrency: 1, MaxQueueBytes: 100, MaxWait: 30 * time.Second}, clk)
	out := make(chan acquired, 4)
	hold(t, a, context.Background(), 1, 0, 60, out)
	clk.Advance(4 * time.Second)
	h, err := a.Acquire(context.Background(), "svc", 0, 50)
	if !errors.Is(err, middleware.ErrHoldFull) {
		t.Fatalf("over the byte bound: %v", err)
	}
	if got := h.RetryAfter(); got != 6*time.Second {
		t.Errorf("Retry-After %v, want 6s (10s cold start, 4s gone, no service time yet)", got)
	}
	// Timeout on the manual clock.
	if err := clk.WaitTimers(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	r := <-out
	if !errors.Is(r.err, middleware.ErrHoldTimeout) {
		t.Fatalf("held past MaxWait: %v", r.err)
	}
	if s, _ := a.Stats("svc"); s.TimedOut != 1 || s.Waiting != 0 {
		t.Errorf("stats %+v", s)
	}
}

// BenchmarkActivatorWarm is the request path through a target with free capacity.
func BenchmarkActivatorWarm(b *testing.B) {
	a, err := middleware.NewActivator(&wakes{}, map[string]middleware.HoldConfig{"svc": {Concurrency: 1 << 20}})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.SetReady("svc", 1); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, err := a.Acquire(ctx, "svc", 0, 0)
			if err != nil {
				b.Fatal(err)
			}
			h.Done()
		}
	})
}

// BenchmarkActivatorHeld is a request held and released: one waits at a time on a
// target whose one slot is taken, then the slot is freed.
func BenchmarkActivatorHeld(b *testing.B) {
	a, err := middleware.NewActivator(&wakes{}, map[string]middleware.HoldConfig{"svc": {Concurrency: 1}})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.SetReady("svc", 1); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	first, err := a.Acquire(ctx, "svc", 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan middleware.Hold)
	go func() {
		for range b.N {
			h, err := a.Acquire(ctx, "svc", 0, 0)
			if err != nil {
				panic(err)
			}
			got <- h
		}
		close(got)
	}()
	b.ReportAllocs()
	b.ResetTimer()
	prev := first
	for range b.N {
		for s, _ := a.Stats("svc"); s.Waiting == 0; s, _ = a.Stats("svc") {
			// wait for the next request to be held
		}
		prev.Done()
		prev = <-got
	}
	prev.Done()
}
