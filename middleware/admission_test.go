package middleware_test

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

func newAdmission(t testing.TB, cfg middleware.AdmissionConfig, opts ...middleware.AdmissionOption) *middleware.Admission {
	t.Helper()
	a, err := middleware.NewAdmission(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func seeded() middleware.AdmissionOption {
	return middleware.WithAdmissionRand(&lockedSource{src: rand.NewPCG(1, 2)})
}

// lockedSource makes a seeded source safe for concurrent use.
type lockedSource struct {
	mu  sync.Mutex
	src rand.Source
}

func (s *lockedSource) Uint64() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src.Uint64()
}

func TestNewAdmissionErrors(t *testing.T) {
	_, err := middleware.NewAdmission(middleware.AdmissionConfig{MaxConcurrency: -1, QueueSize: -2, MaxWait: -time.Second},
		middleware.WithAdmissionRand(nil), middleware.WithAdmissionClock(nil))
	if !errors.Is(err, middleware.ErrInvalidConfig) {
		t.Fatalf("error %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"max concurrency -1", "queue size -2", "max wait -1s", "nil random source", "nil clock"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
	a := newAdmission(t, middleware.AdmissionConfig{})
	for name, err := range map[string]error{
		"shed fraction":     a.Shed("/x", 1.5, 0),
		"shed NaN":          a.Shed("/x", math.NaN(), 0),
		"shed retry-after":  a.Shed("/x", 0.5, -time.Second),
		"priority fraction": a.ShedPriority(0, -0.1, 0),
		"throttle tenant":   a.Throttle("", 1, 1),
		"throttle rps":      a.Throttle("t", -1, 1),
		"throttle burst":    a.Throttle("t", 5, 0),
		"route empty":       a.Route("", "/b", 0.5),
		"route fraction":    a.Route("/a", "/b", 2),
		"concurrency":       a.SetMaxConcurrency(-3),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestShed(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	a := newAdmission(t, middleware.AdmissionConfig{}, seeded(), middleware.WithAdmissionClock(clk))
	if err := a.Shed("/checkout", 0.3, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Shed("*", 0.1, 7*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.ShedPriority(-1, 0.9, 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		route    string
		priority int
		want     float64
	}{
		{"/checkout", 0, 0.3}, // its own rule beats the weaker "*"
		{"/search", 0, 0.1},   // only "*"
		{"/search", -1, 0.9},  // the priority class is stronger
	}
	for _, tt := range tests {
		const n = 20000
		shed := 0
		for range n {
			p, err := a.Admit(context.Background(), middleware.Info{Route: tt.route, Priority: tt.priority, Now: clk.Now()})
			switch {
			case errors.Is(err, middleware.ErrShed):
				shed++
				if p.RetryAfter() < time.Second {
					t.Fatalf("shed with Retry-After %v", p.RetryAfter())
				}
			case err != nil:
				t.Fatal(err)
			default:
				p.Done()
			}
		}
		// Binomial: 5 standard deviations at n = 20000 is under 0.02.
		if got := float64(shed) / n; math.Abs(got-tt.want) > 0.02 {
			t.Errorf("%s priority %d: shed %.3f, want %.2f", tt.route, tt.priority, got, tt.want)
		}
	}
	// Stop shedding: everything passes.
	for _, stop := range []error{a.Shed("/checkout", 0, 0), a.Shed("*", 0, 0), a.ShedPriority(-1, 0, 0)} {
		if stop != nil {
			t.Fatal(stop)
		}
	}
	for range 1000 {
		p, err := a.Admit(context.Background(), middleware.Info{Route: "/checkout", Priority: -1, Now: clk.Now()})
		if err != nil {
			t.Fatalf("after stopping: %v", err)
		}
		p.Done()
	}
}

func TestShedRetryAfterFromState(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	a := newAdmission(t, middleware.AdmissionConfig{}, middleware.WithAdmissionClock(clk))
	a.Shed("/x", 1, 0)
	// 40 requests in flight; 10 complete per second.
	var held []middleware.Permit
	for range 40 {
		p, err := a.Admit(context.Background(), middleware.Info{Route: "/y", Now: clk.Now()})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, p)
	}
	if got := a.RetryAfterEstimate(clk.Now()); got != time.Second {
		t.Errorf("without a completion rate: %v, want 1s", got)
	}
	for range 10 {
		for range 10 {
			p, _ := a.Admit(context.Background(), middleware.Info{Route: "/y", Now: clk.Now()})
			p.Done()
		}
		clk.Advance(time.Second)
		a.RetryAfterEstimate(clk.Now())
	}
	p, err := a.Admit(context.Background(), middleware.Info{Route: "/x", Now: clk.Now()})
	if !errors.Is(err, middleware.ErrShed) {
		t.Fatal(err)
	}
	// A backlog of 40 at 10 per second drains in about 4 s.
	if p.RetryAfter() < 4*time.Second || p.RetryAfter() > 5*time.Second {
		t.Errorf("Retry-After %v, want 4-5s", p.RetryAfter())
	}
	for _, p := range held {
		p.Done()
	}
}

func TestThrottle(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	// Rules that never expire: the test advances the clock an hour.
	a := newAdmission(t, middleware.AdmissionConfig{RuleTTL: -1}, middleware.WithAdmissionClock(clk))
	if err := a.Throttle("acme", 10, 5); err != nil {
		t.Fatal(err)
	}
	admit := func(tenant string) error {
		p, err := a.Admit(context.Background(), middleware.Info{Tenant: tenant, Now: clk.Now()})
		if err == nil {
			p.Done()
		}
		return err
	}
	for i := range 5 {
		if err := admit("acme"); err != nil {
			t.Fatalf("burst request %d: %v", i, err)
		}
	}
	p, err := a.Admit(context.Background(), middleware.Info{Tenant: "acme", Now: clk.Now()})
	if !errors.Is(err, middleware.ErrThrottled) || middleware.StatusOf(err) != 429 {
		t.Fatalf("6th request: %v", err)
	}
	if p.RetryAfter() != time.Second {
		t.Errorf("Retry-After %v, want 1s (a token in 100 ms, rounded up to a second)", p.RetryAfter())
	}
	if err := admit("globex"); err != nil {
		t.Errorf("an unthrottled tenant: %v", err)
	}
	clk.Advance(200 * time.Millisecond) // two more tokens
	for i, want := range []bool{true, true, false} {
		if got := admit("acme") == nil; got != want {
			t.Errorf("after 200 ms, request %d admitted %v, want %v", i, got, want)
		}
	}
	a.Throttle("acme", 0, 0) // block
	clk.Advance(time.Hour)
	if err := admit("acme"); !errors.Is(err, middleware.ErrThrottled) {
		t.Errorf("blocked tenant: %v", err)
	}
	a.Throttle("acme", math.Inf(1), 0) // unlimited
	for range 100 {
		if err := admit("acme"); err != nil {
			t.Fatalf("unlimited tenant: %v", err)
		}
	}
	if st := a.Stats(); st.Throttled != 3 {
		t.Errorf("throttled %d, want 3", st.Throttled)
	}
}

// waitFor polls cond; the admission queue is driven by other goroutines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQueueOrder(t *testing.T) {
	a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: 1, QueueSize: 10, MaxWait: time.Minute})
	first, err := a.Admit(context.Background(), middleware.Info{})
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		name string
		p    middleware.Permit
	}
	order := make(chan got, 4)
	for i, w := range []struct {
		name string
		prio int
	}{{"low", 1}, {"high-1", 5}, {"mid", 3}, {"high-2", 5}} {
		go func() {
			p, err := a.Admit(context.Background(), middleware.Info{Priority: w.prio})
			if err != nil {
				t.Error(err)
			}
			order <- got{w.name, p}
		}()
		waitFor(t, "waiter "+w.name, func() bool { return a.Stats().Waiting == int64(i+1) })
	}
	first.Done()
	var names []string
	for range 4 {
		g := <-order
		names = append(names, g.name)
		if st := a.Stats(); st.InFlight != 1 {
			t.Errorf("in flight %d with a limit of 1", st.InFlight)
		}
		g.p.Done()
	}
	if strings.Join(names, ",") != "high-1,high-2,mid,low" {
		t.Errorf("served %v, want by priority then arrival", names)
	}
}

func TestQueueRejections(t *testing.T) {
	t.Run("no queue", func(t *testing.T) {
		a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: 2})
		p1, _ := a.Admit(context.Background(), middleware.Info{})
		p2, _ := a.Admit(context.Background(), middleware.Info{})
		if _, err := a.Admit(context.Background(), middleware.Info{}); !errors.Is(err, middleware.ErrQueueFull) {
			t.Errorf("third request: %v", err)
		}
		p1.Done()
		p3, err := a.Admit(context.Background(), middleware.Info{})
		if err != nil {
			t.Errorf("after a release: %v", err)
		}
		p2.Drop()
		p3.Done()
		if st := a.Stats(); st.InFlight != 0 {
			t.Errorf("in flight %d", st.InFlight)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		clk := metrics.NewManualClock(t0)
		a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: 1, QueueSize: 5, MaxWait: 20 * time.Millisecond},
			middleware.WithAdmissionClock(clk))
		p, _ := a.Admit(context.Background(), middleware.Info{})
		defer p.Done()
		errc := make(chan error, 1)
		go func() {
			_, err := a.Admit(context.Background(), middleware.Info{})
			errc <- err
		}()
		if err := clk.WaitTimers(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(19 * time.Millisecond)
		select {
		case err := <-errc:
			t.Fatalf("gave up before MaxWait: %v", err)
		default:
		}
		clk.Advance(time.Millisecond)
		if err := <-errc; !errors.Is(err, middleware.ErrQueueTimeout) || middleware.StatusOf(err) != 503 {
			t.Errorf("waiting past the deadline: %v", err)
		}
		if a.Stats().Waiting != 0 {
			t.Error("a timed-out waiter is still queued")
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: 1, QueueSize: 5, MaxWait: time.Hour})
		p, _ := a.Admit(context.Background(), middleware.Info{})
		defer p.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if _, err := a.Admit(ctx, middleware.Info{}); !errors.Is(err, middleware.ErrQueueTimeout) {
			t.Errorf("waiting past the context's deadline: %v", err)
		}
		if st := a.Stats(); st.QueueTimeout != 1 || st.Canceled != 0 {
			t.Errorf("queue timeouts %d, canceled %d; want 1, 0", st.QueueTimeout, st.Canceled)
		}
	})
	t.Run("canceled client frees its slot at once", func(t *testing.T) {
		a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: 1, QueueSize: 1, MaxWait: time.Hour})
		p, _ := a.Admit(context.Background(), middleware.Info{})
		defer p.Done()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error)
		go func() {
			_, err := a.Admit(ctx, middleware.Info{})
			errc <- err
		}()
		waitFor(t, "the waiter", func() bool { return a.Stats().Waiting == 1 })
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("canceled waiter: %v", err)
		}
		if a.Stats().Waiting != 0 {
			t.Error("the canceled waiter still holds its queue slot")
		}
		// Its slot is free: another request can queue.
		go func() {
			_, err := a.Admit(context.Background(), middleware.Info{})
			errc <- err
		}()
		waitFor(t, "a new waiter", func() bool { return a.Stats().Waiting == 1 })
		p.Done()
		if err := <-errc; err != nil {
			t.Errorf("new waiter: %v", err)
		}
	})
	t.Run("full queue pushes out the least important", func(t *testing.T) {
		a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: 1, QueueSize: 1, MaxWait: time.Hour})
		p, _ := a.Admit(context.Background(), middleware.Info{})
		lowErr := make(chan error)
		go func() {
			_, err := a.Admit(context.Background(), middleware.Info{Priority: 0})
			lowErr <- err
		}()
		waitFor(t, "the low waiter", func() bool { return a.Stats().Waiting == 1 })
		// Equal priority cannot push it out.
		if _, err := a.Admit(context.Background(), middleware.Info{Priority: 0}); !errors.Is(err, middleware.ErrQueueFull) {
			t.Errorf("equal priority into a full queue: %v", err)
		}
		highDone := make(chan middleware.Permit)
		go func() {
			p, err := a.Admit(context.Background(), middleware.Info{Priority: 9})
			if err != nil {
				t.Error(err)
			}
			highDone <- p
		}()
		if err := <-lowErr; !errors.Is(err, middleware.ErrQueueFull) {
			t.Errorf("pushed-out waiter: %v", err)
		}
		p.Done()
		(<-highDone).Done()
	})
}

func TestRaiseLimitAdmitsWaiters(t *testing.T) {
	a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: 1, QueueSize: 3, MaxWait: time.Hour})
	p, _ := a.Admit(context.Background(), middleware.Info{})
	admitted := make(chan middleware.Permit, 3)
	for range 3 {
		go func() {
			q, err := a.Admit(context.Background(), middleware.Info{})
			if err != nil {
				t.Error(err)
			}
			admitted <- q
		}()
	}
	waitFor(t, "three waiters", func() bool { return a.Stats().Waiting == 3 })
	if err := a.SetMaxConcurrency(0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		(<-admitted).Done()
	}
	p.Done()
}

func TestAdmissionConcurrencyBound(t *testing.T) {
	const limit = 4
	a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: limit, QueueSize: 64, MaxWait: time.Minute})
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 300 {
				p, err := a.Admit(context.Background(), middleware.Info{Priority: (g + i) % 3})
				if err != nil {
					if !errors.Is(err, middleware.ErrQueueFull) {
						t.Error(err)
					}
					continue
				}
				n := cur.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				cur.Add(-1)
				p.Done()
			}
		})
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Errorf("peak concurrency %d over the limit %d", peak.Load(), limit)
	}
	if st := a.Stats(); st.InFlight != 0 || st.Waiting != 0 {
		t.Errorf("after all: %+v", st)
	}
}

func TestMiddlewareAdmission(t *testing.T) {
	reg, clk := newRegistry(t)
	a := newAdmission(t, middleware.AdmissionConfig{}, seeded(), middleware.WithAdmissionClock(clk))
	a.Shed("/api", 0.25, 3*time.Second)
	a.Throttle("noisy", 0, 0)
	a.Route("/old", "/new", 1)
	served := 0
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		if rt, ok := middleware.RouteFrom(r.Context()); ok {
			io.WriteString(w, "rerouted to "+rt)
		}
	}), middleware.WithRegistry(reg), middleware.WithAdmission(a))

	const sent = 2000
	codes := map[int]int{}
	for i := range sent {
		req := httptest.NewRequest("GET", "/api", nil)
		if i%10 == 0 {
			req.Header.Set("X-Tenant-ID", "noisy")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		codes[rec.Code]++
		switch rec.Code {
		case 503:
			if rec.Header().Get("Retry-After") != "3" || rec.Body.String() != "Service Unavailable\n" || rec.Header().Get(middleware.RejectedHeader) != "shed" {
				t.Fatalf("shed response: Retry-After %q body %q", rec.Header().Get("Retry-After"), rec.Body)
			}
		case 429:
			if rec.Header().Get("Retry-After") != "60" || rec.Body.String() != "Too Many Requests\n" || rec.Header().Get(middleware.RejectedHeader) != "throttled" {
				t.Fatalf("throttled response: Retry-After %q body %q", rec.Header().Get("Retry-After"), rec.Body)
			}
		}
	}
	st := a.Stats()
	if got := uint64(served) + st.Shed + st.Throttled; got != sent {
		t.Errorf("served %d + shed %d + throttled %d = %d, want %d", served, st.Shed, st.Throttled, got, sent)
	}
	if codes[200] != served || uint64(codes[503]) != st.Shed || uint64(codes[429]) != st.Throttled {
		t.Errorf("codes %v, stats %+v", codes, st)
	}
	s := snapshot(t, reg, metrics.ScopeRoute, "/api")
	if s.Count != sent || s.Rejected != st.Shed+st.Throttled {
		t.Errorf("route window: count %d rejected %d", s.Count, s.Rejected)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/old", nil))
	if rec.Body.String() != "rerouted to /new" {
		t.Errorf("re-routed request: %q", rec.Body)
	}
	if s := snapshot(t, reg, metrics.ScopeRoute, "/new"); s.Count != 1 {
		t.Errorf("the re-routed request was not recorded under its new route")
	}
}

func TestHook(t *testing.T) {
	reg, _ := newRegistry(t)
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		middleware.WithRegistry(reg),
		middleware.WithHook(func(r *http.Request, k middleware.Keys) (middleware.Keys, middleware.Verdict) {
			if r.URL.Query().Get("block") != "" {
				return k, middleware.Verdict{Status: 403, Body: "blocked by policy", RetryAfter: 1500 * time.Millisecond}
			}
			k.Tenant = "from-hook"
			return k, middleware.Verdict{Header: http.Header{"X-Policy": {"allow"}}}
		}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/h?block=1", nil))
	if rec.Code != 403 || rec.Body.String() != "blocked by policy\n" || rec.Header().Get("Retry-After") != "2" || rec.Header().Get(middleware.RejectedHeader) != "hook" {
		t.Errorf("rejected: %d %q Retry-After %q", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/h", nil))
	if rec.Code != 200 || rec.Header().Get("X-Policy") != "allow" {
		t.Errorf("allowed: %d headers %v", rec.Code, rec.Header())
	}
	if s := snapshot(t, reg, metrics.ScopeTenant, "from-hook"); s.Count != 1 {
		t.Errorf("hook's tenant not recorded")
	}
	if s := snapshot(t, reg, metrics.ScopeRoute, "/h"); s.Rejected != 1 || s.Count != 2 {
		t.Errorf("route: count %d rejected %d", s.Count, s.Rejected)
	}
}

func BenchmarkAdmit(b *testing.B) {
	ctx := context.Background()
	in := middleware.Info{Route: "/api", Tenant: "acme", Now: t0}
	for _, bc := range []struct {
		name string
		cfg  middleware.AdmissionConfig
		set  func(a *middleware.Admission)
	}{
		{"no-rules", middleware.AdmissionConfig{}, func(*middleware.Admission) {}},
		{"limit", middleware.AdmissionConfig{MaxConcurrency: 1000, QueueSize: 100}, func(*middleware.Admission) {}},
		{"shed-other-route", middleware.AdmissionConfig{}, func(a *middleware.Admission) { a.Shed("/other", 0.5, 0) }},
		{"throttled-tenant", middleware.AdmissionConfig{}, func(a *middleware.Admission) { a.Throttle("acme", math.MaxFloat64, 1) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := newAdmission(b, bc.cfg)
			bc.set(a)
			b.ReportAllocs()
			for b.Loop() {
				p, err := a.Admit(ctx, in)
				if err != nil {
					b.Fatal(err)
				}
				p.Done()
			}
		})
	}
}

// countLimiter admits the first n requests of tenant "a" and no others of it.
type countLimiter struct {
	left atomic.Int64
	asks atomic.Int64
}

func (c *countLimiter) AllowN(tenant string, _ time.Time, n int) (bool, time.Duration) {
	c.asks.Add(1)
	if tenant != "a" {
		return true, 0
	}
	if c.left.Add(-int64(n)) >= 0 {
		return true, 0
	}
	return false, 3 * time.Second
}

func TestTenantLimiter(t *testing.T) {
	if _, err := middleware.NewAdmission(middleware.AdmissionConfig{}, middleware.WithTenantLimiter(nil)); err == nil {
		t.Error("a nil tenant limiter was accepted")
	}
	l := new(countLimiter)
	l.left.Store(2)
	a := newAdmission(t, middleware.AdmissionConfig{}, middleware.WithTenantLimiter(l))
	now := time.Unix(1, 0)
	for i, want := range []error{nil, nil, middleware.ErrThrottled} {
		p, err := a.Admit(context.Background(), middleware.Info{Tenant: "a", Now: now})
		if !errors.Is(err, want) {
			t.Fatalf("request %d: err %v, want %v", i, err, want)
		}
		if err != nil && p.RetryAfter() != 3*time.Second {
			t.Errorf("retry-after %v, want the limiter's 3s", p.RetryAfter())
		}
		p.Done()
	}
	if _, err := a.Admit(context.Background(), middleware.Info{Tenant: "b", Now: now}); err != nil {
		t.Errorf("tenant b: %v", err)
	}
	if _, err := a.Admit(context.Background(), middleware.Info{Now: now}); err != nil {
		t.Errorf("no tenant: %v", err)
	}
	if got := l.asks.Load(); got != 4 {
		t.Errorf("limiter asked %d times, want 4 (never for a request without a tenant)", got)
	}
	if st := a.Stats(); st.Throttled != 1 || st.Admitted != 4 {
		t.Errorf("stats %+v, want 1 throttled and 4 admitted", st)
	}
}
