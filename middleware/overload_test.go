package middleware_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// Over its open-requests limit, the gateway sheds the lowest class first, then the
// next; under the recovery mark it lets them back one refresh at a time.
func TestSelfProtectionShedsLowestFirst(t *testing.T) {
	a := newAdmission(t, middleware.AdmissionConfig{}, middleware.WithSelfProtection(middleware.SelfProtection{
		MaxOpen: 2, Priorities: []int{5, 0}, Refresh: time.Second}))
	ctx := context.Background()
	now := t0
	admit := func(prio int) (middleware.Permit, error) {
		return a.Admit(ctx, middleware.Info{Route: "/r", Priority: prio, Now: now})
	}
	var held []middleware.Permit
	for range 3 {
		p, err := admit(0)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, p)
	}
	type want struct{ low, mid, high bool } // shed?
	check := func(step string, w want) {
		t.Helper()
		for prio, shed := range map[int]bool{-1: w.low, 3: w.mid, 9: w.high} {
			p, err := admit(prio)
			if got := errors.Is(err, middleware.ErrOverloaded); got != shed {
				t.Errorf("%s: priority %d shed %v, want %v (%v)", step, prio, got, shed, err)
			}
			if err == nil {
				p.Done()
			} else if r := middleware.OverloadReason(err); r != "open-requests" {
				t.Errorf("%s: reason %q", step, r)
			}
		}
	}
	now = now.Add(time.Second)
	check("first refresh over the limit", want{low: true})
	now = now.Add(time.Second)
	check("second refresh", want{low: true, mid: true})
	for _, p := range held {
		p.Done()
	}
	now = now.Add(time.Second)
	check("under the mark", want{low: true})
	now = now.Add(time.Second)
	check("recovered", want{})
	if st := a.Stats(); st.Overloaded != 4 {
		t.Errorf("stats: overloaded %d, want 4", st.Overloaded)
	}
}

func TestSelfProtectionOverHTTP(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	a := newAdmission(t, middleware.AdmissionConfig{}, middleware.WithAdmissionClock(clk),
		middleware.WithSelfProtection(middleware.SelfProtection{MaxGoroutines: 1, MaxHeap: 1}))
	h := mustWrap(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), middleware.WithAdmission(a), middleware.WithClock(clk))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 503 || rec.Header().Get(middleware.RejectedHeader) != "overload" || rec.Header().Get(middleware.OverloadHeader) != "heap" {
		t.Errorf("over the heap limit: %d %v", rec.Code, rec.Header())
	}
	if _, err := middleware.NewAdmission(middleware.AdmissionConfig{}, middleware.WithSelfProtection(middleware.SelfProtection{})); !errors.Is(err, middleware.ErrInvalidConfig) {
		t.Errorf("no limit: %v", err)
	}
}
