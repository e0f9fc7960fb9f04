package middleware_test

import (
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

func TestWindows(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	w := middleware.WindowsOf(reg, middleware.Keys{Route: "api", Tenant: "acme"})
	if w.Route == nil || w.Tenant == nil || w.Model != nil {
		t.Fatalf("WindowsOf = %+v, want route and tenant windows and no model window", w)
	}
	w.Start(t0)
	if got := w.Route.InFlight() + w.Tenant.InFlight(); got != 2 {
		t.Fatalf("in flight after Start = %d, want 1 in each window", got)
	}
	w.Done(t0.Add(50*time.Millisecond), metrics.Observation{Latency: 50 * time.Millisecond, Outcome: metrics.OutcomeError})
	w.Reject(t0.Add(60 * time.Millisecond))
	clk.Set(t0.Add(100 * time.Millisecond))
	for _, win := range []*metrics.Window{w.Route, w.Tenant} {
		s := win.Snapshot(0)
		if s.InFlight != 0 || s.Count != 2 || s.Errors != 1 || s.Rejected != 1 {
			t.Errorf("%s: in flight %d, count %d, errors %d, rejected %d; want 0, 2, 1, 1",
				win.Scope(), s.InFlight, s.Count, s.Errors, s.Rejected)
		}
	}
	if n := len(reg.Keys(metrics.ScopeModel)); n != 0 {
		t.Errorf("model scope has %d windows, want none for an empty key", n)
	}
}

// BenchmarkWindows is one request's recording in three windows, as the middleware
// does it: start, then done.
func BenchmarkWindows(b *testing.B) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	w := middleware.WindowsOf(reg, middleware.Keys{Route: "api", Tenant: "acme", Model: "m"})
	now := time.Now()
	o := metrics.Observation{Latency: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		w.Start(now)
		w.Done(now, o)
	}
}
