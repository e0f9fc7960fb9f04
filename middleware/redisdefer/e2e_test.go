package redisdefer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/internal/redistest"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// gateway is one gateway replica: its admission, its deferrer on the shared store,
// and the middleware in front of a handler that answers "done " and the body.
type gateway struct {
	adm *middleware.Admission
	d   *middleware.Deferrer
	srv *httptest.Server
}

func newGateway(t *testing.T, store *Store, run bool) *gateway {
	t.Helper()
	adm, err := middleware.NewAdmission(middleware.AdmissionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := middleware.NewDeferrer(middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "/batch"}}, RetryInterval: time.Millisecond},
		middleware.WithDeferStore(store))
	if err != nil {
		t.Fatal(err)
	}
	h, err := middleware.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "done %s", b)
	}), middleware.WithAdmission(adm), middleware.WithDeferrer(d))
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{adm: adm, d: d, srv: httptest.NewServer(h)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if run {
		go func() { done <- d.Run(ctx) }()
	} else {
		done <- context.Canceled
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
		g.srv.Close()
	})
	return g
}

func (g *gateway) do(t *testing.T, method, path, tenant, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, g.srv.URL+path, strings.NewReader(body))
	req.Header.Set(middleware.TenantHeader, tenant)
	res, err := g.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

// Two gateways share a Redis store: requests deferred on one during an overload are
// replayed once capacity returns, and the other gateway answers their polls — each
// with its own result, 404 to another tenant — with exact counts.
func TestTwoGatewaysShareDeferredWork(t *testing.T) {
	const n = 200
	store := newStore(t, redistest.Start(t), Config{})
	a, b := newGateway(t, store, true), newGateway(t, store, false)

	a.adm.Shed("*", 1, 0) // overload
	locs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			code, _, h := a.do(t, http.MethodPost, "/batch", "t"+strconv.Itoa(i%5), "job"+strconv.Itoa(i))
			if code != http.StatusAccepted {
				t.Errorf("request %d: %d, want 202", i, code)
			}
			locs[i] = h.Get("Location")
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if code, _, _ := b.do(t, http.MethodGet, locs[0], "t0", ""); code != http.StatusAccepted {
		t.Errorf("poll on the other gateway while pending: %d, want 202", code)
	}
	a.adm.Shed("*", 0, 0) // capacity returns
	for deadline := time.Now().Add(10 * time.Second); a.d.Stats().Completed < n; {
		if time.Now().After(deadline) {
			t.Fatalf("not all replayed: %+v", a.d.Stats())
		}
		time.Sleep(5 * time.Millisecond) // waiting on the workers, not on time
	}
	for i, loc := range locs {
		tenant := "t" + strconv.Itoa(i%5)
		if code, body, _ := b.do(t, http.MethodGet, loc, tenant, ""); code != http.StatusOK || body != "done job"+strconv.Itoa(i) {
			t.Fatalf("poll %d on the other gateway: %d %q", i, code, body)
		}
		if code, _, _ := b.do(t, http.MethodGet, loc, tenant+"x", ""); code != http.StatusNotFound {
			t.Fatalf("poll %d by another tenant: %d, want 404", i, code)
		}
	}
	if s := a.d.Stats(); s.Accepted != n || s.Completed != n || s.Pending != 0 || s.Running != 0 || s.StoreErrors != 0 {
		t.Errorf("stats %+v", s)
	}
	if cnt, _, err := store.Len(context.Background()); err != nil || cnt != n {
		t.Errorf("store holds %d (%v), want %d results", cnt, err, n)
	}
}
