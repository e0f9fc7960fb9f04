package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// TestPriorityQueue checks that the demo's admission queues requests once its
// concurrency limit is reached and that access.lua's priorities order the queue: with
// every slot held, a free-tier request that arrived first waits behind a paying
// tenant's. Over real HTTP, through the demo's own frontend and access.lua.
func TestPriorityQueue(t *testing.T) {
	adm, err := newAdmission(1, nil) // one replica's worth of slots
	if err != nil {
		t.Fatal(err)
	}
	access, err := luabind.New(luabind.FromString("access.lua", accessScript))
	if err != nil {
		t.Fatal(err)
	}
	defer access.Close()
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var releaseAll sync.Once
	done := func() { releaseAll.Do(func() { close(release) }) }
	var (
		mu    sync.Mutex
		order []string
	)
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		order = append(order, r.Header.Get(middleware.TenantHeader)+" "+r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/hold" {
			<-release
		}
	})
	front, err := frontend(reg, adm, access, slog.New(slog.DiscardHandler), backend)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(front)
	defer srv.Close()
	defer done() // before the server closes, so that a failing test still ends

	var wg sync.WaitGroup
	send := func(tenant, path string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			req.Header.Set(middleware.TenantHeader, tenant)
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Errorf("%s %s: status %d", tenant, path, res.StatusCode)
			}
		}()
	}
	// waitFor waits until cond holds, polling: it waits for requests to arrive, not
	// for a result.
	waitFor := func(what string, cond func(middleware.AdmissionStats, int) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := len(order)
			mu.Unlock()
			st := adm.Stats()
			if cond(st, n) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v, %d served", what, st, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	queued := func(w int64) func(middleware.AdmissionStats, int) bool {
		return func(st middleware.AdmissionStats, _ int) bool { return st.InFlight == concurrency && st.Waiting == w }
	}
	for range concurrency {
		send("acme", "/hold")
	}
	waitFor("the slots to fill", queued(0))
	send("free", "/free") // first in line, but priority -1 (access.lua)
	waitFor("the free request to queue", queued(1))
	send("acme", "/paid")
	waitFor("the paid request to queue", queued(2))
	release <- struct{}{} // one slot frees: the queued requests pass through it in turn
	waitFor("the queued requests", func(_ middleware.AdmissionStats, n int) bool { return n == concurrency+2 })
	done()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"acme /paid", "free /free"}, order[concurrency:]); diff != "" {
		t.Errorf("order after the held requests (-want +got):\n%s", diff)
	}
	if st := adm.Stats(); st.QueueFull != 0 || st.QueueTimeout != 0 {
		t.Errorf("queue rejected requests: %+v", st)
	}
}
