package middleware_test

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// deferClassifier keys a request by path, X-Tenant-ID and X-Priority.
func deferClassifier(r *http.Request) middleware.Keys {
	p, _ := strconv.Atoi(r.Header.Get("X-Priority"))
	return middleware.Keys{Route: r.URL.Path, Tenant: r.Header.Get("X-Tenant-ID"), Priority: p}
}

type deferRig struct {
	srv *httptest.Server
	d   *middleware.Deferrer
	adm *middleware.Admission
	reg *metrics.Registry
}

// newDeferRig serves next behind an admission and a deferrer over real HTTP, with the
// deferrer's workers running until the test ends.
func newDeferRig(t *testing.T, cfg middleware.DeferConfig, acfg middleware.AdmissionConfig, clk metrics.Clock, next http.Handler) *deferRig {
	t.Helper()
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	adm := newAdmission(t, acfg, middleware.WithAdmissionClock(clk))
	d, err := middleware.NewDeferrer(cfg, middleware.WithDeferClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	h := mustWrap(t, next, middleware.WithRegistry(reg), middleware.WithAdmission(adm),
		middleware.WithDeferrer(d), middleware.WithClassifier(deferClassifier), middleware.WithClock(clk))
	srv := httptest.NewServer(h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		srv.Close()
	})
	return &deferRig{srv: srv, d: d, adm: adm, reg: reg}
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (g *deferRig) do(t *testing.T, method, path, tenant string, prio int, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, g.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	req.Header.Set("X-Priority", strconv.Itoa(prio))
	res, err := g.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{res.StatusCode, res.Header, string(b)}
}

func (g *deferRig) poll(t *testing.T, loc, tenant string) reply {
	t.Helper()
	return g.do(t, http.MethodGet, loc, tenant, 0, "")
}

// waitStats waits (for goroutines, not for time to pass) until ok(stats).
func waitStats(t *testing.T, d *middleware.Deferrer, ok func(middleware.DeferStats) bool) middleware.DeferStats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := d.Stats()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never got there: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
}

// echo answers "<method> <uri> <body>" with a header and status 201.
func echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo", r.Header.Get("X-Tenant-ID"))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	})
}

func TestDeferConfigErrors(t *testing.T) {
	_, err := middleware.NewDeferrer(middleware.DeferConfig{
		Routes:         []middleware.DeferRoute{{Route: ""}, {Route: "/a"}, {Route: "/a"}},
		Path:           "nope",
		MaxRequests:    -1,
		MaxBytes:       -1,
		MaxBodyBytes:   -1,
		MaxResultBytes: 2 << 30,
		TTL:            -time.Second,
		Workers:        2000,
		RetryInterval:  time.Microsecond,
		PollAfter:      time.Millisecond,
	}, nil, middleware.WithDeferClock(nil), middleware.WithDeferStore(nil), middleware.WithDeferLogger(nil))
	if !errors.Is(err, middleware.ErrInvalidConfig) {
		t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
	}
	for _, want := range []string{
		"empty route", `route "/a" twice`, `path "nope"`, "max requests -1", "max bytes -1",
		"max body bytes -1", "max result bytes 2147483648", "ttl -1s", "workers 2000",
		"retry interval 1µs", "poll after 1ms", "nil option", "nil clock", "nil store", "nil logger",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if _, err := middleware.NewDeferrer(middleware.DeferConfig{}); !errors.Is(err, middleware.ErrInvalidConfig) || !strings.Contains(err.Error(), "no deferrable routes") {
		t.Errorf("no routes: %v", err)
	}
	s, _ := middleware.NewMemoryStore(0, 0)
	if _, err := middleware.NewDeferrer(middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "*"}}, MaxRequests: 5}, middleware.WithDeferStore(s)); !errors.Is(err, middleware.ErrInvalidConfig) {
		t.Errorf("bounds with a custom store: %v", err)
	}
	if _, err := middleware.NewMemoryStore(-1, -1); !errors.Is(err, middleware.ErrInvalidConfig) || !strings.Contains(err.Error(), "max bytes") {
		t.Errorf("memory store: %v", err)
	}
	if _, err := middleware.New(middleware.WithDeferrer(nil)); !errors.Is(err, middleware.ErrInvalidConfig) {
		t.Errorf("nil deferrer: %v", err)
	}
}

// A deferred request polls 202 pending, 202 running, then its real response; the
// result expires TTL after the replay ended (on the manual clock) and is 404 then.
func TestDeferPollLifecycle(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	entered, release := make(chan struct{}), make(chan struct{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		echo().ServeHTTP(w, r)
	})
	g := newDeferRig(t, middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "/jobs"}}, TTL: time.Minute, Workers: 1},
		middleware.AdmissionConfig{}, clk, next)
	if err := g.adm.Shed("*", 1, 0); err != nil {
		t.Fatal(err)
	}
	acc := g.do(t, http.MethodPost, "/jobs?x=1", "acme", 0, "payload")
	loc := acc.header.Get("Location")
	if acc.status != http.StatusAccepted || !strings.HasPrefix(loc, middleware.DefaultDeferPath) ||
		acc.header.Get("Retry-After") != "1" || acc.header.Get(middleware.DeferredHeader) != "accepted" {
		t.Fatalf("defer: %d %v", acc.status, acc.header)
	}
	// Pending until a worker claims it; running while the worker waits for a permit.
	if p := g.poll(t, loc, "acme"); p.status != http.StatusAccepted || p.header.Get("Retry-After") != "1" ||
		p.header.Get(middleware.DeferredHeader) != "pending" && p.header.Get(middleware.DeferredHeader) != "running" {
		t.Fatalf("poll while waiting: %d %v", p.status, p.header)
	}
	// The worker asked the admission, was refused, and waits RetryInterval (its timer
	// and Run's sweep timer are armed).
	waitStats(t, g.d, func(s middleware.DeferStats) bool { return s.Retries == 1 })
	if err := clk.WaitTimers(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if err := g.adm.Shed("*", 0, 0); err != nil { // capacity returns
		t.Fatal(err)
	}
	clk.Advance(middleware.DefaultDeferRetry)
	<-entered
	if p := g.poll(t, loc, "acme"); p.status != http.StatusAccepted || p.header.Get(middleware.DeferredHeader) != "running" {
		t.Fatalf("poll while running: %d %v", p.status, p.header)
	}
	close(release)
	waitStats(t, g.d, func(s middleware.DeferStats) bool { return s.Completed == 1 })
	for range 2 { // a result can be read more than once
		p := g.poll(t, loc, "acme")
		if p.status != http.StatusCreated || p.body != "POST /jobs?x=1 payload" || p.header.Get("X-Echo") != "acme" || p.header.Get(middleware.DeferredHeader) != "done" {
			t.Fatalf("poll when done: %d %v %q", p.status, p.header, p.body)
		}
	}
	clk.Advance(59 * time.Second)
	if p := g.poll(t, loc, "acme"); p.status != http.StatusCreated {
		t.Fatalf("result gone before its TTL: %d", p.status)
	}
	clk.Advance(time.Second)
	if p := g.poll(t, loc, "acme"); p.status != http.StatusNotFound {
		t.Fatalf("expired result: %d, want 404", p.status)
	}
	if n, err := g.d.Sweep(context.Background()); n != 1 || err != nil {
		t.Fatalf("sweep: %d %v", n, err)
	}
	want := middleware.DeferStats{Accepted: 1, Completed: 1, Expired: 1, Retries: 1}
	if got := g.d.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	if p := g.poll(t, loc, "acme"); p.status != http.StatusNotFound {
		t.Fatalf("swept result: %d, want 404", p.status)
	}
	if s := g.reg.Window(metrics.ScopeDeferred, "/jobs").Snapshot(time.Hour); s.Count != 1 || g.reg.Window(metrics.ScopeDeferred, "/jobs").InFlight() != 0 {
		t.Errorf("deferred window: count %d in flight %d", s.Count, g.reg.Window(metrics.ScopeDeferred, "/jobs").InFlight())
	}
}

// 1,000 deferrable requests arrive while the backend's slots are all taken; every one
// is accepted, and once capacity returns every one is replayed exactly once, never
// more at once than the admission allows, and its poll returns its own result.
func TestDeferThousandDuringOverload(t *testing.T) {
	const n, limit = 1000, 4
	var inFlight, peak atomic.Int64
	var mu sync.Mutex
	served := map[string]int{}
	block := make(chan struct{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); v > p && !peak.CompareAndSwap(p, v); p = peak.Load() {
		}
		if r.URL.Path == "/live" {
			<-block
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		served[string(b)]++
		mu.Unlock()
		fmt.Fprintf(w, "done %s", b)
	})
	g := newDeferRig(t, middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "/batch"}}, RetryInterval: time.Millisecond, Workers: 8},
		middleware.AdmissionConfig{MaxConcurrency: limit}, metrics.NewSystemClock(), next)

	// Overload: live requests of a class that is not deferred hold every slot.
	var live sync.WaitGroup
	for range limit {
		live.Go(func() {
			if r := g.do(t, http.MethodGet, "/live", "", 9, ""); r.status != http.StatusOK {
				t.Errorf("live request: %d", r.status)
			}
		})
	}
	for g.adm.Stats().InFlight < limit {
		time.Sleep(time.Millisecond)
	}
	if r := g.do(t, http.MethodGet, "/live", "", 9, ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a non-deferrable request over the limit: %d, want 503", r.status)
	}
	locs := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r := g.do(t, http.MethodPost, "/batch", "t"+strconv.Itoa(i%7), 0, "job"+strconv.Itoa(i))
			if r.status != http.StatusAccepted {
				t.Errorf("request %d: %d, want 202", i, r.status)
			}
			locs[i] = r.header.Get("Location")
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if s := g.d.Stats(); s.Accepted != n || s.Completed != 0 || s.Pending+s.Running != n {
		t.Fatalf("during overload: %+v", s)
	}
	if p := g.poll(t, locs[0], "t0"); p.status != http.StatusAccepted {
		t.Fatalf("poll during overload: %d", p.status)
	}
	close(block) // capacity returns
	live.Wait()
	s := waitStats(t, g.d, func(s middleware.DeferStats) bool { return s.Completed == n })
	if s.Accepted != n || s.Pending != 0 || s.Running != 0 || s.RejectedFull != 0 || s.Abandoned != 0 || s.StoreErrors != 0 || s.Retries == 0 {
		t.Errorf("after: %+v", s)
	}
	for i, loc := range locs {
		want := "done job" + strconv.Itoa(i)
		if p := g.poll(t, loc, "t"+strconv.Itoa(i%7)); p.status != http.StatusOK || p.body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, p.status, p.body, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(served) != n {
		t.Errorf("%d distinct requests replayed, want %d", len(served), n)
	}
	for k, c := range served {
		if c != 1 {
			t.Errorf("%s replayed %d times", k, c)
		}
	}
	if p := peak.Load(); p > limit {
		t.Errorf("the backend saw %d at once, over the admission's limit %d", p, limit)
	}
	if a := g.adm.Stats(); a.Admitted != limit+n || a.InFlight != 0 {
		t.Errorf("admission: %+v, want %d admitted", a, limit+n)
	}
	w := g.reg.Window(metrics.ScopeDeferred, "/batch")
	if c := w.Snapshot(time.Hour).Count; c != n || w.InFlight() != 0 {
		t.Errorf("deferred window: count %d, in flight %d", c, w.InFlight())
	}
}

// A Location is 404 for an id guessed, malformed, or deferred for another tenant; the
// body never carries the result.
func TestDeferPollForeignIDs(t *testing.T) {
	g := newDeferRig(t, middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "*"}}},
		middleware.AdmissionConfig{}, metrics.NewSystemClock(), echo())
	g.adm.Shed("*", 1, 0)
	acc := g.do(t, http.MethodPost, "/secret", "acme", 0, "acme-secret")
	g.adm.Shed("*", 0, 0)
	if acc.status != http.StatusAccepted {
		t.Fatalf("setup: %d", acc.status)
	}
	waitStats(t, g.d, func(s middleware.DeferStats) bool { return s.Completed == 1 })
	loc := acc.header.Get("Location")
	id := strings.TrimPrefix(loc, middleware.DefaultDeferPath)
	if len(id) != 32 {
		t.Fatalf("id %q is not 32 hex digits", id)
	}
	p := middleware.DefaultDeferPath
	for name, c := range map[string]struct{ path, tenant string }{
		"other tenant":      {loc, "evil"},
		"no tenant":         {loc, ""},
		"guessed":           {p + "0123456789abcdef0123456789abcdef", "acme"},
		"one digit off":     {p + id[:31] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", id[31])+1)%16]), "acme"},
		"upper case":        {p + strings.ToUpper(id), "acme"},
		"short":             {p + id[:31], "acme"},
		"long":              {p + id + "0", "acme"},
		"trailing slash":    {loc + "/", "acme"},
		"sub path":          {loc + "/x", "acme"},
		"empty":             {p, "acme"},
		"not hex":           {p + strings.Repeat("z", 32), "acme"},
		"traversal":         {p + "../../secret", "acme"},
		"encoded traversal": {p + "%2e%2e%2f" + id, "acme"},
	} {
		r := g.poll(t, c.path, c.tenant)
		if r.status != http.StatusNotFound || strings.Contains(r.body, "acme-secret") {
			t.Errorf("%s: %d %q, want 404", name, r.status, r.body)
		}
	}
	if r := g.do(t, http.MethodDelete, loc, "acme", 0, ""); r.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", r.status)
	}
	if r := g.poll(t, loc, "acme"); r.status != http.StatusCreated || !strings.Contains(r.body, "acme-secret") {
		t.Errorf("own tenant: %d %q", r.status, r.body)
	}
}

// Beyond the store's bounds, or with a body over MaxBodyBytes, a deferrable request is
// rejected as the admission rejected it; classes above MaxPriority, other routes and
// throttled tenants are never deferred.
func TestDeferRejections(t *testing.T) {
	g := newDeferRig(t, middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "/d", MaxPriority: 1}}, MaxRequests: 2, MaxBodyBytes: 10},
		middleware.AdmissionConfig{}, metrics.NewSystemClock(), echo())
	if err := g.adm.Shed("*", 1, 7*time.Second); err != nil {
		t.Fatal(err)
	}
	g.adm.Throttle("slow", 0, 0)
	for i, c := range []struct {
		path, tenant string
		prio         int
		body         string
		status       int
		why          string
	}{
		{"/d", "a", 0, "1", 202, ""},
		{"/d", "a", 1, "2", 202, ""},
		{"/d", "a", 0, "3", 503, "shed"},             // store full
		{"/d", "a", 0, "far too large", 503, "shed"}, // body over 10 bytes
		{"/d", "a", 2, "x", 503, "shed"},             // class above MaxPriority
		{"/other", "a", 0, "x", 503, "shed"},         // route not deferrable
		{"/d", "slow", 0, "x", 503, "shed"},          // shed (before throttles), store full
	} {
		r := g.do(t, http.MethodPost, c.path, c.tenant, c.prio, c.body)
		if r.status != c.status || r.header.Get(middleware.RejectedHeader) != c.why {
			t.Errorf("case %d: %d %q, want %d %q", i, r.status, r.header.Get(middleware.RejectedHeader), c.status, c.why)
		}
		if c.status == 503 && r.header.Get("Retry-After") != "7" {
			t.Errorf("case %d: Retry-After %q, want the shed's 7", i, r.header.Get("Retry-After"))
		}
	}
	g.adm.Shed("*", 0, 0)
	if r := g.do(t, http.MethodPost, "/d", "slow", 0, "x"); r.status != http.StatusTooManyRequests {
		t.Errorf("throttled tenant: %d, want 429, not deferred", r.status)
	}
	got := waitStats(t, g.d, func(s middleware.DeferStats) bool { return s.Completed == 2 })
	got.Retries = 0 // as many as the workers asked while the shed lasted
	if want := (middleware.DeferStats{Accepted: 2, Completed: 2, RejectedFull: 2, TooLarge: 1}); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	if c := g.reg.Window(metrics.ScopeDeferred, "/d").Snapshot(time.Hour).Rejected; c != 2 {
		t.Errorf("deferred window rejected %d, want 2", c)
	}
}

// A response over MaxResultBytes becomes a 502 "too-large" result; a panicking
// handler a 500 "panic" one; neither stops the workers.
func TestDeferResultBounds(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(strings.Repeat("x", 100)))
		case "/panic":
			panic(http.ErrAbortHandler)
		default:
			w.Write([]byte("ok"))
		}
	})
	g := newDeferRig(t, middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "*"}}, MaxResultBytes: 64, Workers: 1},
		middleware.AdmissionConfig{}, metrics.NewSystemClock(), next)
	g.adm.Shed("*", 1, 0)
	var locs []string
	for _, p := range []string{"/big", "/panic", "/small"} {
		locs = append(locs, g.do(t, http.MethodGet, p, "", 0, "").header.Get("Location"))
	}
	g.adm.Shed("*", 0, 0)
	waitStats(t, g.d, func(s middleware.DeferStats) bool { return s.Completed == 3 })
	for i, want := range []struct {
		status int
		why    string
	}{{502, "too-large"}, {500, "panic"}, {200, "done"}} {
		if r := g.poll(t, locs[i], ""); r.status != want.status || r.header.Get(middleware.DeferredHeader) != want.why {
			t.Errorf("result %d: %d %q, want %d %q", i, r.status, r.header.Get(middleware.DeferredHeader), want.status, want.why)
		}
	}
}

// A request claimed but never admitted when Run stops gets a 503 "abandoned" result;
// it is never replayed.
func TestDeferAbandonedOnStop(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	var served atomic.Int64
	reg, _ := metrics.NewRegistry()
	adm := newAdmission(t, middleware.AdmissionConfig{}, middleware.WithAdmissionClock(clk))
	d, err := middleware.NewDeferrer(middleware.DeferConfig{Routes: []middleware.DeferRoute{{Route: "*"}}, Workers: 1}, middleware.WithDeferClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	h := mustWrap(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) }),
		middleware.WithRegistry(reg), middleware.WithAdmission(adm), middleware.WithDeferrer(d), middleware.WithClock(clk))
	adm.Shed("*", 1, 0)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	loc := rec.Header().Get("Location")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitStats(t, d, func(s middleware.DeferStats) bool { return s.Retries > 0 })
	if err := d.Run(ctx); !errors.Is(err, middleware.ErrDeferrerRunning) {
		t.Errorf("second Run: %v", err)
	}
	cancel()
	<-done
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, loc, nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get(middleware.DeferredHeader) != "abandoned" || served.Load() != 0 {
		t.Errorf("abandoned: %d %v, served %d", rec.Code, rec.Header(), served.Load())
	}
	if s := d.Stats(); s.Accepted != 1 || s.Completed != 1 || s.Abandoned != 1 || s.Pending != 0 || s.Running != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestMemoryStoreBounds(t *testing.T) {
	ctx := context.Background()
	s, err := middleware.NewMemoryStore(10, 100)
	if err != nil {
		t.Fatal(err)
	}
	req := func(id string, body int) middleware.DeferredRequest {
		return middleware.DeferredRequest{ID: id, Method: "GET", URL: "/", Body: make([]byte, body)}
	}
	if err := s.Put(ctx, req("a", 50)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, req("b", 50)); !errors.Is(err, middleware.ErrStoreFull) {
		t.Fatalf("over the bytes: %v", err)
	}
	if err := s.Put(ctx, req("a", 1)); err == nil || errors.Is(err, middleware.ErrStoreFull) {
		t.Fatalf("duplicate id: %v", err)
	}
	got, ok, err := s.Claim(ctx)
	if !ok || err != nil || got.ID != "a" || len(got.Body) != 50 {
		t.Fatalf("claim: %v %v %v", got.ID, ok, err)
	}
	if _, ok, _ := s.Claim(ctx); ok {
		t.Fatal("claimed twice")
	}
	// The claimed body went to the replay; the result takes its place.
	if err := s.Complete(ctx, "a", middleware.DeferredResult{Status: 200, Body: make([]byte, 10)}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, "a", middleware.DeferredResult{}, t0); err == nil {
		t.Error("completed twice")
	}
	if n, b := s.Len(); n != 1 || b != 14 { // "GET" + "/" + 10
		t.Errorf("len %d bytes %d, want 1 and 14", n, b)
	}
	if n, _ := s.Sweep(ctx, t0.Add(-time.Second)); n != 0 {
		t.Errorf("swept %d before expiry", n)
	}
	if n, _ := s.Sweep(ctx, t0); n != 1 {
		t.Errorf("swept %d at expiry, want 1", n)
	}
	if n, b := s.Len(); n != 0 || b != 0 {
		t.Errorf("after sweep: %d %d", n, b)
	}
	for i := range 10 {
		if err := s.Put(ctx, req(strconv.Itoa(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, req("x", 0)); !errors.Is(err, middleware.ErrStoreFull) {
		t.Errorf("over the count: %v", err)
	}
	for i := range 10 { // first in, first out
		if got, _, _ := s.Claim(ctx); got.ID != strconv.Itoa(i) {
			t.Fatalf("claim %d: %q", i, got.ID)
		}
	}
}
