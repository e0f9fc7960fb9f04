package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// The middleware records every request into its route's and tenant's windows. A manual
// clock, advanced by the handler, stands in for the time each request takes.
func ExampleNew() {
	clock := metrics.NewManualClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	reg, _ := metrics.NewRegistry(metrics.WithClock(clock))
	mw, err := middleware.New(middleware.WithRegistry(reg))
	if err != nil {
		fmt.Println(err)
		return
	}

	mux := http.NewServeMux()
	mux.Handle("GET /checkout", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clock.Advance(40 * time.Millisecond) // the work
		if r.URL.Query().Get("card") == "declined" {
			http.Error(w, "payment failed", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})))

	for _, url := range []string{"/checkout", "/checkout", "/checkout?card=declined", "/checkout"} {
		req := httptest.NewRequest(http.MethodGet, url, nil)
		req.Header.Set(middleware.TenantHeader, "acme")
		mux.ServeHTTP(httptest.NewRecorder(), req)
	}

	route, _ := reg.Lookup(metrics.ScopeRoute, "GET /checkout")
	s := route.Snapshot(time.Minute)
	fmt.Printf("route %q: %d requests, %d errors, mean %v\n", "GET /checkout", s.Count, s.Errors, s.Mean)
	tenant, _ := reg.Lookup(metrics.ScopeTenant, "acme")
	fmt.Printf("tenant %q: %d requests\n", "acme", tenant.Snapshot(time.Minute).Count)
	// Output:
	// route "GET /checkout": 4 requests, 1 errors, mean 40ms
	// tenant "acme": 4 requests
}

// Admission in front of a handler: a tenant over its token bucket gets 429, a shed
// route 503, each with a Retry-After; the scaling loop sets these rules at run time
// through its Throttle and Shed actions.
func ExampleNewAdmission() {
	clock := metrics.NewManualClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	adm, err := middleware.NewAdmission(middleware.AdmissionConfig{}, middleware.WithAdmissionClock(clock))
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = adm.Throttle("free", 1, 2) // 1 request per second, bursts of 2
	_ = adm.Shed("/search", 1, 30*time.Second)

	admit := func(route, tenant string) {
		p, err := adm.Admit(context.Background(), middleware.Info{Route: route, Tenant: tenant, Now: clock.Now()})
		if err != nil {
			fmt.Printf("%s %s: %d, retry after %v (%v)\n", route, tenant, middleware.StatusOf(err), p.RetryAfter(), err)
			return
		}
		defer p.Done()
		fmt.Printf("%s %s: admitted\n", route, tenant)
	}
	admit("/api", "free")
	admit("/api", "free")
	admit("/api", "free") // the bucket is empty
	clock.Advance(time.Second)
	admit("/api", "free") // one token back
	admit("/search", "acme")
	st := adm.Stats()
	fmt.Printf("admitted %d, throttled %d, shed %d\n", st.Admitted, st.Throttled, st.Shed)
	// Output:
	// /api free: admitted
	// /api free: admitted
	// /api free: 429, retry after 1s (middleware: tenant throttled)
	// /api free: admitted
	// /search acme: 503, retry after 30s (middleware: request shed)
	// admitted 3, throttled 1, shed 1
}
