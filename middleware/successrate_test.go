package middleware_test

import (
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// A backend that fails is sent less, by the SRE book's formula, and again all once it
// recovers.
func TestSuccessRate(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	a := newAdmission(t, middleware.AdmissionConfig{}, seeded(), middleware.WithAdmissionClock(clk),
		middleware.WithAdmissionRegistry(reg), middleware.WithSuccessRate(middleware.SuccessRateConfig{Window: 10 * time.Second}))
	var failing atomic.Bool
	failing.Store(true)
	var reached atomic.Int64
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if failing.Load() {
			w.WriteHeader(500)
		}
	}), middleware.WithRegistry(reg), middleware.WithAdmission(a), middleware.WithClock(clk))
	send := func(n int) (codes map[int]int) {
		codes = map[int]int{}
		for range n {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/b", nil))
			codes[rec.Code]++
			if rec.Code == 503 && rec.Header().Get(middleware.RejectedHeader) != "backoff" {
				t.Fatalf("503 with reason %q", rec.Header().Get(middleware.RejectedHeader))
			}
			clk.Advance(10 * time.Millisecond)
		}
		return codes
	}
	first := send(100) // one refresh second: everything reaches the failing backend
	if first[500] != 100 {
		t.Fatalf("first second: %v", first)
	}
	clk.Advance(time.Second)
	codes := send(100)
	if p, want := a.SuccessRate("/b"), 100.0/101; math.Abs(p-want) > 0.1 {
		t.Errorf("rejection probability %v, want about %v", p, want)
	}
	if codes[503] < 70 || codes[500] == 0 {
		t.Errorf("failing backend: %v, want most rejected client-side and a few let through", codes)
	}
	if st := a.Stats(); st.Backoff != uint64(codes[503]) {
		t.Errorf("stats: backoff %d, want %d", st.Backoff, codes[503])
	}
	failing.Store(false)
	clk.Advance(11 * time.Second) // the failures leave the 10 s span
	send(50)
	if p := a.SuccessRate("/b"); p != 0 {
		t.Errorf("recovered backend: rejection probability %v, want 0", p)
	}
	for want, cfg := range map[string]middleware.SuccessRateConfig{"K 0.5 below 1": {K: 0.5}, "no registry": {}} {
		_, err = middleware.NewAdmission(middleware.AdmissionConfig{}, middleware.WithSuccessRate(cfg))
		if !errors.Is(err, middleware.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("config %+v: %v, want %q", cfg, err, want)
		}
	}
}
