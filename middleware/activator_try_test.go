package middleware_test

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// verdicts collects TryAcquire's verdicts by request id, in the order given.
type verdicts struct {
	mu    sync.Mutex
	order []int
	holds map[int]middleware.Hold
	errs  map[int]error
}

func newVerdicts() *verdicts {
	return &verdicts{holds: map[int]middleware.Hold{}, errs: map[int]error{}}
}

func (v *verdicts) notify(t *testing.T, id int) func(middleware.Hold, error) {
	return func(h middleware.Hold, err error) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if _, dup := v.holds[id]; dup {
			t.Errorf("request %d told twice", id)
		}
		v.order = append(v.order, id)
		v.holds[id], v.errs[id] = h, err
	}
}

// Held without a goroutine: the same order, pace, wake and Retry-After as Acquire,
// on one goroutine and a manual clock.
func TestActivatorTryAcquireReleaseOrderAndPace(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	w := &wakes{cold: 5 * time.Second}
	a := newActivator(t, w, middleware.HoldConfig{Concurrency: 2, MaxQueue: 5, MaxWait: 10 * time.Second}, clk)
	v := newVerdicts()
	tickets := map[int]middleware.Ticket{}
	for i, prio := range []int{0, 0, 5, 0, 5} {
		h, k, err := a.TryAcquire("svc", prio, 0, v.notify(t, i))
		if err != nil || k.IsZero() || h != (middleware.Hold{}) {
			t.Fatalf("request %d on a cold target: hold %+v, ticket zero %v, %v", i, h, k.IsZero(), err)
		}
		if got, want := k.Deadline(), t0.Add(10*time.Second); !got.Equal(want) {
			t.Errorf("deadline %v, want %v", got, want)
		}
		tickets[i] = k
	}
	if got := w.last(); got != 3 {
		t.Errorf("wake asked for %d replicas, want 3 (5 held / 2 each)", got)
	}
	h, k, err := a.TryAcquire("svc", 9, 0, v.notify(t, 99))
	if !errors.Is(err, middleware.ErrHoldFull) || !k.IsZero() {
		t.Fatalf("sixth request in a queue of 5: ticket zero %v, %v", k.IsZero(), err)
	}
	if got := h.RetryAfter(); got != 5*time.Second {
		t.Errorf("Retry-After %v, want the 5 s cold start", got)
	}
	if len(v.order) != 0 {
		t.Fatalf("verdicts before any replica was ready: %v", v.order)
	}
	clk.Advance(2 * time.Second)
	if err := a.SetReady("svc", 1); err != nil {
		t.Fatal(err)
	}
	if want := []int{2, 4}; !slices.Equal(v.order, want) {
		t.Fatalf("released %v on 1 replica × 2, want %v (priority 5 first)", v.order, want)
	}
	if got := v.holds[2].Waited(); got != 2*time.Second {
		t.Errorf("waited %v, want 2s", got)
	}
	if tickets[2].Cancel() || tickets[2].Expire() {
		t.Error("a released ticket canceled or expired")
	}
	v.holds[2].Done()
	v.holds[4].Done()
	if want := []int{2, 4, 0, 1}; !slices.Equal(v.order, want) {
		t.Fatalf("released %v, want %v (then arrival order)", v.order, want)
	}
	// The last one held times out on the manual clock, when the caller says so.
	if tickets[3].Expire() {
		t.Error("expired before its deadline")
	}
	clk.Advance(8 * time.Second)
	if !tickets[3].Expire() || tickets[3].Expire() {
		t.Fatal("expire at the deadline: want true once")
	}
	if err := v.errs[3]; !errors.Is(err, middleware.ErrHoldTimeout) {
		t.Fatalf("expired request: %v", err)
	}
	if got := v.holds[3].RetryAfter(); got != 0 {
		t.Errorf("Retry-After %v with a replica ready and nobody ahead, want 0", got)
	}
	v.holds[0].Done()
	v.holds[1].Done()
	s, _ := a.Stats("svc")
	want := middleware.HoldStats{Held: 5, Forwarded: 4, Full: 1, TimedOut: 1, Ready: 1}
	if s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
	if got := w.last(); got != 0 {
		t.Errorf("last wake %d, want 0 once none are held", got)
	}
	// Warm: straight through.
	h, k, err = a.TryAcquire("svc", 0, 0, v.notify(t, 100))
	if err != nil || !k.IsZero() || h.Waited() != 0 {
		t.Fatalf("warm request: ticket zero %v, %v", k.IsZero(), err)
	}
	h.Done()
}

// A canceled ticket leaves at once and is not told; its place goes to the next.
func TestActivatorTryAcquireCancel(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	a := newActivator(t, &wakes{}, middleware.HoldConfig{Concurrency: 1, MaxQueue: 1}, clk)
	v := newVerdicts()
	_, k1, err := a.TryAcquire("svc", 0, 0, v.notify(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.TryAcquire("svc", 0, 0, v.notify(t, 2)); !errors.Is(err, middleware.ErrHoldFull) {
		t.Fatalf("second in a queue of 1: %v", err)
	}
	if !k1.Cancel() || k1.Cancel() {
		t.Fatal("cancel: want true once")
	}
	_, k3, err := a.TryAcquire("svc", 0, 0, v.notify(t, 3))
	if err != nil || k3.IsZero() {
		t.Fatalf("after a cancel: %v", err)
	}
	clk.Advance(time.Hour)
	if err := a.SetReady("svc", 1); err != nil {
		t.Fatal(err)
	}
	if want := []int{3}; !slices.Equal(v.order, want) {
		t.Fatalf("told %v, want %v", v.order, want)
	}
	if k3.Expire() {
		t.Error("a released ticket expired")
	}
	v.holds[3].Done()
	if s, _ := a.Stats("svc"); s.Canceled != 1 || s.Forwarded != 1 || s.Waiting != 0 || s.InFlight != 0 {
		t.Errorf("stats %+v", s)
	}
	var zero middleware.Ticket
	if zero.Cancel() || zero.Expire() || !zero.IsZero() {
		t.Error("the zero ticket did something")
	}
	if _, _, err := a.TryAcquire("svc", 0, 0, nil); err == nil {
		t.Error("nil notify accepted")
	}
	if _, _, err := a.TryAcquire("nope", 0, 0, v.notify(t, 4)); !errors.Is(err, middleware.ErrUnknownTarget) {
		t.Errorf("unknown target: %v", err)
	}
}

// Under concurrent callers, releases and cancels, every request gets exactly one
// verdict (a Hold straight away, or one notify) and nothing stays counted.
func TestActivatorTryAcquireConcurrent(t *testing.T) {
	a := newActivator(t, &wakes{}, middleware.HoldConfig{Concurrency: 2, MaxQueue: 10_000}, metrics.NewSystemClock())
	const callers, each = 8, 200
	var done, direct, told, canceled atomic.Int64
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				var once atomic.Bool
				h, k, err := a.TryAcquire("svc", i%3, 0, func(h middleware.Hold, err error) {
					if !once.CompareAndSwap(false, true) {
						t.Error("told twice")
					}
					told.Add(1)
					if err == nil {
						h.Done()
						done.Add(1)
					}
				})
				switch {
				case err != nil:
					t.Error(err)
				case k.IsZero():
					h.Done()
					done.Add(1)
					direct.Add(1)
				case (c+i)%5 == 0 && k.Cancel():
					canceled.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			_ = a.SetReady("svc", i%3)
		}
		_ = a.SetReady("svc", 1)
	})
	wg.Wait()
	// Whatever is still held drains on the ready replica.
	for s, _ := a.Stats("svc"); s.Waiting > 0 || s.InFlight > 0; s, _ = a.Stats("svc") {
		time.Sleep(time.Millisecond)
	}
	s, _ := a.Stats("svc")
	if got := done.Load() + canceled.Load(); got != callers*each {
		t.Errorf("%d done + %d canceled, want %d requests", done.Load(), canceled.Load(), callers*each)
	}
	// Told, canceled, or decided within TryAcquire (straight through, or held and
	// handed a slot before it returned): each request exactly one way.
	if got := direct.Load() + told.Load() + canceled.Load(); got != callers*each || s.Canceled != uint64(canceled.Load()) {
		t.Errorf("%d direct + %d told + %d canceled, want %d; stats %+v", direct.Load(), told.Load(), canceled.Load(), callers*each, s)
	}
	if s.Forwarded+s.Canceled != s.Held || s.TimedOut+s.Full != 0 {
		t.Errorf("stats %+v: want every held request forwarded or canceled", s)
	}
}

// BenchmarkActivatorTryAcquireHeld is a request held without a goroutine and
// released: the target's one slot is taken, a request is held, the slot is freed.
func BenchmarkActivatorTryAcquireHeld(b *testing.B) {
	a, err := middleware.NewActivator(&wakes{}, map[string]middleware.HoldConfig{"svc": {Concurrency: 1}})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.SetReady("svc", 1); err != nil {
		b.Fatal(err)
	}
	prev, _, err := a.TryAcquire("svc", 0, 0, func(middleware.Hold, error) {})
	if err != nil {
		b.Fatal(err)
	}
	var next middleware.Hold
	notify := func(h middleware.Hold, err error) { next = h }
	b.ReportAllocs()
	for b.Loop() {
		if _, k, err := a.TryAcquire("svc", 0, 0, notify); err != nil || k.IsZero() {
			b.Fatalf("not held: %v", err)
		}
		prev.Done()
		prev = next
	}
	prev.Done()
}

// Once a forwarded request has ended, a wake asks for the replicas that serve the held
// requests' arrival rate and drain them within a second, by the service time, not a
// slot per held request: 150 rps held for a 3 s cold start at 80 ms a request, 10 to
// a replica, is (150 + 450 / 1 s) × 0.08 s / 10 = 4.8 -> 5 replicas, not 45.
func TestActivatorWakeSizesFromTheRate(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	w := &wakes{}
	a := newActivator(t, w, middleware.HoldConfig{Concurrency: 10, MaxQueue: 1000, MaxWait: 10 * time.Second}, clk)
	v := newVerdicts()
	// Before any request has been served, each held request gets a slot.
	for i := range 30 {
		if _, _, err := a.TryAcquire("svc", 0, 0, v.notify(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.last(); got != 3 {
		t.Errorf("first wake asked for %d replicas, want 3 (30 held / 10 each)", got)
	}
	if err := a.SetReady("svc", 3); err != nil {
		t.Fatal(err)
	}
	clk.Advance(80 * time.Millisecond)
	for i := range 30 {
		v.holds[i].Done()
	}
	if got := w.last(); got != 0 {
		t.Errorf("with nothing held the wake is %d, want 0", got)
	}
	// Idle, scaled to zero; then 150 rps for 3 s.
	if err := a.SetReady("svc", 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	for i := range 450 {
		clk.Advance(time.Second / 150)
		if _, k, err := a.TryAcquire("svc", 0, 0, v.notify(t, 100+i)); err != nil || k.IsZero() {
			t.Fatalf("request %d: ticket zero %v, %v", i, k.IsZero(), err)
		}
	}
	if got := w.last(); got != 5 {
		t.Errorf("wake asked for %d replicas, want 5 ((150 rps + 450 / 1 s) × 80 ms / 10)", got)
	}
}
