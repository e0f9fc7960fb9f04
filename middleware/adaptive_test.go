package middleware_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// driver runs windows of requests through an adaptive admission on explicit times:
// every request of a window is admitted at its start and ends rtt later.
type driver struct {
	t   testing.TB
	a   *middleware.Admission
	now time.Time
}

func newDriver(t testing.TB, cfg middleware.AdaptiveConfig, opts ...middleware.AdmissionOption) *driver {
	t.Helper()
	a := newAdmission(t, middleware.AdmissionConfig{}, append([]middleware.AdmissionOption{middleware.WithAdaptiveLimit(cfg)}, opts...)...)
	return &driver{t: t, a: a, now: t0}
}

// window sends n requests at once of priority prio and ends the admitted ones after
// rtt with outcome o; it returns how many were admitted.
func (d *driver) window(n, prio int, rtt time.Duration, o metrics.Outcome) int {
	var ps []middleware.Permit
	for range n {
		p, err := d.a.Admit(context.Background(), middleware.Info{Route: "/r", Priority: prio, Now: d.now})
		if err == nil {
			ps = append(ps, p)
		} else if !errors.Is(err, middleware.ErrLimited) {
			d.t.Fatalf("admit: %v", err)
		}
	}
	for _, p := range ps {
		p.DoneAt(d.now.Add(rtt), o)
	}
	d.now = d.now.Add(300 * time.Millisecond)
	return len(ps)
}

func (d *driver) limit() middleware.LimitState {
	d.t.Helper()
	ls := d.a.Limits()
	if len(ls) == 0 {
		d.t.Fatal("no limits")
	}
	return ls[len(ls)-1]
}

func TestAdaptiveGrowsAndShrinks(t *testing.T) {
	for name, algo := range map[string]func() middleware.LimitAlgorithm{
		"vegas":     nil,
		"gradient2": func() middleware.LimitAlgorithm { return &middleware.Gradient2{} },
		"aimd":      func() middleware.LimitAlgorithm { return &middleware.AIMD{Timeout: 50 * time.Millisecond} },
	} {
		t.Run(name, func(t *testing.T) {
			d := newDriver(t, middleware.AdaptiveConfig{Algorithm: algo, InitialLimit: 10, MaxLimit: 200})
			for range 20 {
				d.window(1000, 0, 10*time.Millisecond, metrics.OutcomeOK)
			}
			grown := d.limit().Limit
			if grown <= 10 {
				t.Fatalf("limit %d did not grow from 10 under flat latency", grown)
			}
			for range 30 {
				d.window(1000, 0, 100*time.Millisecond, metrics.OutcomeOK)
			}
			if got := d.limit().Limit; got >= grown {
				t.Errorf("limit %d did not shrink from %d when latency rose tenfold", got, grown)
			}
		})
	}
}

// windowSpread is window with latencies spread around rtt without any queue: the
// i-th admitted request takes rtt × (0.5 + i mod 11 / 10), a mean of rtt.
func (d *driver) windowSpread(n int, rtt time.Duration) int {
	var ps []middleware.Permit
	for range n {
		if p, err := d.a.Admit(context.Background(), middleware.Info{Route: "/r", Now: d.now}); err == nil {
			ps = append(ps, p)
		}
	}
	for i, p := range ps {
		p.DoneAt(d.now.Add(time.Duration(float64(rtt)*(0.5+float64(i%11)/10))), metrics.OutcomeOK)
	}
	d.now = d.now.Add(300 * time.Millisecond)
	return len(ps)
}

// Latencies that vary from request to request, with no queue behind them, are no
// reason to cut a Vegas limit: the no-load estimate is a mean over many requests,
// not the fastest one (which here is half the mean, and would read as a queue of half
// the limit).
func TestAdaptiveVegasHoldsUnderSpreadLatencies(t *testing.T) {
	d := newDriver(t, middleware.AdaptiveConfig{InitialLimit: 100, MaxLimit: 1000})
	for range 60 {
		d.windowSpread(2000, 100*time.Millisecond)
	}
	if got := d.limit().Limit; got < 100 {
		t.Errorf("limit %d sank from 100 under spread latencies without a queue", got)
	}
	if got := d.limit().NoLoadRTT; got < 90*time.Millisecond || got > 110*time.Millisecond {
		t.Errorf("no-load latency %v, want the mean of 100ms within 10%%", got)
	}
}

func TestAdaptiveFastFailuresDoNotGrow(t *testing.T) {
	for name, algo := range map[string]func() middleware.LimitAlgorithm{
		"vegas":     nil,
		"gradient2": func() middleware.LimitAlgorithm { return &middleware.Gradient2{} },
		"aimd":      func() middleware.LimitAlgorithm { return &middleware.AIMD{} },
	} {
		t.Run(name, func(t *testing.T) {
			d := newDriver(t, middleware.AdaptiveConfig{Algorithm: algo, InitialLimit: 50})
			for range 20 {
				d.window(1000, 0, 10*time.Millisecond, metrics.OutcomeOK)
			}
			before := d.limit().Limit
			for range 20 {
				d.window(1000, 0, time.Microsecond, metrics.OutcomeError)
			}
			if got := d.limit().Limit; got > before {
				t.Errorf("limit grew from %d to %d on instant errors", before, got)
			}
		})
	}
}

func TestAdaptiveBadSamples(t *testing.T) {
	d := newDriver(t, middleware.AdaptiveConfig{InitialLimit: 10})
	for _, rtt := range []time.Duration{0, -time.Second, 3 * time.Hour} {
		for range 5 {
			d.window(10, 0, rtt, metrics.OutcomeOK)
		}
	}
	st := d.limit()
	if st.Limit != 10 || st.Invalid != 150 {
		t.Errorf("after bad samples: limit %d invalid %d, want 10 and 150", st.Limit, st.Invalid)
	}
	// A clock that jumps back starts a new window and learns nothing from it.
	d.window(10, 0, 10*time.Millisecond, metrics.OutcomeOK)
	d.now = d.now.Add(-time.Hour)
	d.window(10, 0, 10*time.Millisecond, metrics.OutcomeOK)
	if got := d.limit().Limit; got != 10 {
		t.Errorf("limit %d after a clock jump back, want 10", got)
	}
	// An algorithm that answers NaN keeps the limit.
	nan := newDriver(t, middleware.AdaptiveConfig{InitialLimit: 10, Algorithm: func() middleware.LimitAlgorithm {
		return middleware.LimitAlgorithmFunc(func(float64, middleware.LimitSample) float64 { return math.NaN() })
	}})
	for range 5 {
		nan.window(10, 0, 10*time.Millisecond, metrics.OutcomeOK)
	}
	if got := nan.limit().Limit; got != 10 {
		t.Errorf("limit %d after NaN proposals, want 10", got)
	}
}

func TestAdaptiveClassesShareTheLimit(t *testing.T) {
	d := newDriver(t, middleware.AdaptiveConfig{InitialLimit: 10, MaxLimit: 10,
		Classes: []middleware.Class{{Priority: 0, Ceiling: 0.5}, {Priority: 10, Ceiling: 1}}})
	ctx := context.Background()
	admit := func(prio int) error {
		_, err := d.a.Admit(ctx, middleware.Info{Route: "/r", Priority: prio, Now: t0})
		return err
	}
	for i := range 5 {
		if err := admit(-3); err != nil { // below every class: the lowest
			t.Fatalf("low %d: %v", i, err)
		}
	}
	if err := admit(0); !errors.Is(err, middleware.ErrLimited) {
		t.Errorf("low class past its ceiling: %v, want ErrLimited", err)
	}
	for i := range 5 {
		if err := admit(20); err != nil {
			t.Fatalf("high %d: %v", i, err)
		}
	}
	if err := admit(10); !errors.Is(err, middleware.ErrLimited) {
		t.Errorf("high class past the whole limit: %v, want ErrLimited", err)
	}
	ls := d.a.Limits()
	if len(ls) != 2 || ls[0].Class != 0 || ls[0].Limit != 5 || ls[0].Rejected != 1 || ls[1].Limit != 10 || ls[1].InFlight != 10 {
		t.Errorf("limits %+v", ls)
	}
	if st := d.a.Stats(); st.Limited != 2 {
		t.Errorf("stats: limited %d, want 2", st.Limited)
	}
}

func TestAdaptiveWindowsAndBounds(t *testing.T) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, middleware.AdaptiveConfig{InitialLimit: 10, MaxLimit: 10}, middleware.WithAdmissionRegistry(reg))
	for range 5 {
		d.window(20, 0, 10*time.Millisecond, metrics.OutcomeOK)
	}
	w, ok := reg.Lookup(metrics.ScopeLimit, metrics.ClassKey("/r", 0, ""))
	if !ok {
		t.Fatal("no limit window")
	}
	s := w.SnapshotAt(d.now, 0)
	if s.Rejected != 50 || s.Count == s.Rejected || s.Value/float64(s.Count-s.Rejected) != 10 {
		t.Errorf("limit window: %+v, want 50 rejected and a mean limit of 10", s)
	}
	if err := d.a.SetLimitBounds("*", 2, 4); err != nil {
		t.Fatal(err)
	}
	if st := d.limit(); st.Limit != 4 || st.Min != 2 || st.Max != 4 {
		t.Errorf("after bounds [2, 4]: %+v", st)
	}
	if got := d.window(20, 0, 10*time.Millisecond, metrics.OutcomeOK); got != 4 {
		t.Errorf("%d admitted under a max of 4", got)
	}
	for _, bad := range [][2]int{{-1, 3}, {5, 3}} {
		if err := d.a.SetLimitBounds("/r", bad[0], bad[1]); err == nil {
			t.Errorf("bounds %v accepted", bad)
		}
	}
	if err := newAdmission(t, middleware.AdmissionConfig{}).SetLimitBounds("/r", 1, 2); err == nil {
		t.Error("bounds accepted without adaptive limits")
	}
}

func TestAdaptivePerTenantAndOverflow(t *testing.T) {
	d := newDriver(t, middleware.AdaptiveConfig{InitialLimit: 1, MaxLimit: 1, PerTenant: true, MaxKeys: 2})
	ctx := context.Background()
	// "/r" and ("/r", "a") fill MaxKeys; b, c and d share the overflow limit of 1.
	for _, c := range []struct {
		tenant string
		want   []error
	}{
		{"a", []error{nil, middleware.ErrLimited}},
		{"b", []error{nil}},
		{"c", []error{middleware.ErrLimited}},
	} {
		for i, want := range c.want {
			if _, err := d.a.Admit(ctx, middleware.Info{Route: "/r", Tenant: c.tenant, Now: t0}); !errors.Is(err, want) {
				t.Errorf("tenant %s, request %d: %v, want %v", c.tenant, i, err, want)
			}
		}
	}
	var tenants []string
	for _, l := range d.a.Limits() {
		tenants = append(tenants, l.Route+"/"+l.Tenant)
	}
	if got := strings.Join(tenants, ","); got != "(overflow)/,/r/,/r/a" {
		t.Errorf("limits %s", got)
	}
}

func TestAdaptiveConfigErrors(t *testing.T) {
	_, err := middleware.NewAdmission(middleware.AdmissionConfig{}, middleware.WithAdaptiveLimit(middleware.AdaptiveConfig{
		MinLimit: 5, MaxLimit: 2, Smoothing: 2, Window: -1, ErrorThreshold: math.NaN(),
		Classes:   []middleware.Class{{Priority: 1, Ceiling: 0.8}, {Priority: 2, Ceiling: 0.5}},
		Algorithm: func() middleware.LimitAlgorithm { return &middleware.AIMD{Backoff: 2} },
	}), middleware.WithAdmissionRegistry(nil))
	if !errors.Is(err, middleware.ErrInvalidConfig) {
		t.Fatalf("error %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"min limit 5 above max limit 2", "smoothing 2", "negative window", "error threshold NaN",
		"ceiling 0.5 below", "highest class's ceiling is 0.5", "aimd: backoff", "nil registry"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}

func TestQueueWindow(t *testing.T) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	clk := metrics.NewManualClock(t0)
	a := newAdmission(t, middleware.AdmissionConfig{MaxConcurrency: 1, QueueSize: 4, MaxWait: time.Second},
		middleware.WithAdmissionRegistry(reg), middleware.WithAdmissionClock(clk))
	first, err := a.Admit(context.Background(), middleware.Info{Route: "/q", Priority: 2, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		p, err := a.Admit(context.Background(), middleware.Info{Route: "/q", Priority: 2, Now: t0})
		got <- err
		p.Done()
	}()
	if err := clk.WaitTimers(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	w, ok := reg.Lookup(metrics.ScopeQueue, metrics.ClassKey("/q", 2, ""))
	if !ok || w.InFlight() != 1 {
		t.Fatalf("queue window: found %v, depth %d, want 1", ok, w.InFlight())
	}
	clk.Advance(300 * time.Millisecond)
	first.Done()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	s := w.SnapshotAt(clk.Now(), 0)
	if s.InFlight != 0 || s.Count != 1 || s.Max != 300*time.Millisecond {
		t.Errorf("queue window after the wait: %+v", s)
	}
}
