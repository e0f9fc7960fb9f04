package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// Noisy neighbour over real HTTP: one tenant sends ten times its share into a route
// whose limit is held at 10; usage shedding turns it away first, and the quiet
// tenants' requests succeed. The backend's 2 ms is a real sleep: the test counts
// outcomes, not times, so a loaded machine only slows it.
func TestNoisyNeighbourOverHTTP(t *testing.T) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	a := newAdmission(t, middleware.AdmissionConfig{}, middleware.WithAdmissionRegistry(reg),
		middleware.WithAdaptiveLimit(middleware.AdaptiveConfig{InitialLimit: 10, MinLimit: 10, MaxLimit: 10,
			Usage: &middleware.UsageShedding{Refresh: 100 * time.Millisecond}}))
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
	}), middleware.WithRegistry(reg), middleware.WithAdmission(a))
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	const perWorker = 100
	type tally struct{ ok, shed, other atomic.Int64 }
	send := func(tenant string, n int, tl *tally) {
		for range n {
			req, _ := http.NewRequest("GET", srv.URL+"/api", nil)
			req.Header.Set(middleware.TenantHeader, tenant)
			resp, err := client.Do(req)
			if err != nil {
				tl.other.Add(1)
				continue
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				tl.ok.Add(1)
			case resp.Header.Get(middleware.RejectedHeader) == "limit":
				tl.shed.Add(1)
			default:
				tl.other.Add(1)
			}
		}
	}
	var noisy tally
	quiet := make([]tally, 3)
	var wg sync.WaitGroup
	for range 10 { // ten times each quiet tenant's one worker, over a limit of 10
		wg.Go(func() { send("noisy", perWorker, &noisy) })
	}
	for i := range quiet {
		wg.Go(func() { send(fmt.Sprintf("quiet-%d", i), perWorker, &quiet[i]) })
	}
	wg.Wait()
	for i := range quiet {
		q := &quiet[i]
		total := q.ok.Load() + q.shed.Load() + q.other.Load()
		if total != perWorker || float64(q.ok.Load()) < 0.99*float64(total) {
			t.Errorf("quiet-%d: %d of %d succeeded (%d shed, %d other), want >= 99%%", i, q.ok.Load(), total, q.shed.Load(), q.other.Load())
		}
	}
	if noisy.shed.Load() == 0 || noisy.other.Load() != 0 {
		t.Errorf("noisy: %d ok, %d shed, %d other; want some shed", noisy.ok.Load(), noisy.shed.Load(), noisy.other.Load())
	}
	t.Logf("noisy: %d ok, %d shed; quiet: %d, %d, %d ok of %d each", noisy.ok.Load(), noisy.shed.Load(),
		quiet[0].ok.Load(), quiet[1].ok.Load(), quiet[2].ok.Load(), perWorker)
}
