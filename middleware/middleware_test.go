package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/goleak"

	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Unix(1_700_000_000, 0)

func newRegistry(t testing.TB, opts ...metrics.Option) (*metrics.Registry, *metrics.ManualClock) {
	t.Helper()
	clk := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(append([]metrics.Option{metrics.WithClock(clk)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return reg, clk
}

func snapshot(t *testing.T, reg *metrics.Registry, scope metrics.Scope, key string) metrics.Snapshot {
	t.Helper()
	w, ok := reg.Lookup(scope, key)
	if !ok {
		t.Fatalf("no window %s/%s; have %v", scope, key, reg.Keys(scope))
	}
	return w.SnapshotAt(reg.Clock().Now().Add(time.Second), 0)
}

func TestRecordsRequests(t *testing.T) {
	reg, clk := newRegistry(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		clk.Advance(20 * time.Millisecond)
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("GET /empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusBadGateway)
	})
	mux.HandleFunc("GET /teapot", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	h := mustWrap(t, mux, middleware.WithRegistry(reg))

	tests := []struct {
		path, tenant, model string
		status              int
	}{
		{"/ok", "acme", "llama", 200},
		{"/ok", "acme", "", 200},
		{"/ok", "", "", 200},
		{"/empty", "globex", "", 200},
		{"/fail", "acme", "", 502},
		{"/teapot", "", "", 418},
		{"/missing", "", "", 404},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", tt.path, nil)
		if tt.tenant != "" {
			req.Header.Set("X-Tenant-ID", tt.tenant)
		}
		if tt.model != "" {
			req.Header.Set("X-Model", tt.model)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Fatalf("%s: status %d, want %d", tt.path, rec.Code, tt.status)
		}
	}
	// Without a pattern (the middleware wraps the mux), routes are keyed by path.
	ok := snapshot(t, reg, metrics.ScopeRoute, "/ok")
	if ok.Count != 3 || ok.Errors != 0 || ok.Bytes != 15 || ok.InFlight != 0 {
		t.Errorf("/ok: %+v", ok)
	}
	if ok.P50 < 19*time.Millisecond || ok.P50 > 21*time.Millisecond {
		t.Errorf("/ok p50 %v, want about 20ms", ok.P50)
	}
	if s := snapshot(t, reg, metrics.ScopeRoute, "/fail"); s.Count != 1 || s.Errors != 1 {
		t.Errorf("/fail: count %d errors %d, want 1 and 1", s.Count, s.Errors)
	}
	for _, p := range []string{"/empty", "/teapot", "/missing"} {
		if s := snapshot(t, reg, metrics.ScopeRoute, p); s.Count != 1 || s.Errors != 0 {
			t.Errorf("%s: count %d errors %d, want 1 and 0", p, s.Count, s.Errors)
		}
	}
	if s := snapshot(t, reg, metrics.ScopeTenant, "acme"); s.Count != 3 || s.Errors != 1 {
		t.Errorf("tenant acme: count %d errors %d", s.Count, s.Errors)
	}
	if s := snapshot(t, reg, metrics.ScopeModel, "llama"); s.Count != 1 {
		t.Errorf("model llama: count %d", s.Count)
	}
	if got := reg.Keys(metrics.ScopeTenant); fmt.Sprint(got) != "[acme globex]" {
		t.Errorf("tenants %v: an empty tenant must not make a window", got)
	}
}

func TestPatternRoutes(t *testing.T) {
	reg, _ := newRegistry(t)
	mw, err := middleware.New(middleware.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /users/{id}", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	for i := range 5 {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/users/%d", i), nil))
	}
	if s := snapshot(t, reg, metrics.ScopeRoute, "GET /users/{id}"); s.Count != 5 {
		t.Errorf("count %d, want 5", s.Count)
	}
}

func TestCustomClassifierAndFailure(t *testing.T) {
	reg, _ := newRegistry(t)
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
	}),
		middleware.WithRegistry(reg),
		middleware.WithClassifier(func(r *http.Request) middleware.Keys { return middleware.Keys{Route: "all"} }),
		middleware.WithFailure(func(_ *http.Request, status int) bool { return status == 429 }),
	)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	if s := snapshot(t, reg, metrics.ScopeRoute, "all"); s.Errors != 1 {
		t.Errorf("errors %d, want 1 (429 classified as a failure)", s.Errors)
	}
}

func TestPanicRecordedAndRepanicked(t *testing.T) {
	reg, _ := newRegistry(t)
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("handler bug")
	}), middleware.WithRegistry(reg))
	func() {
		defer func() {
			if p := recover(); p != "handler bug" {
				t.Errorf("recovered %v, want the handler's panic", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/p", nil))
	}()
	if s := snapshot(t, reg, metrics.ScopeRoute, "/p"); s.Count != 1 || s.Errors != 1 || s.InFlight != 0 {
		t.Errorf("after a panic: count %d errors %d in flight %d", s.Count, s.Errors, s.InFlight)
	}
}

func TestClientGoneIsCanceled(t *testing.T) {
	reg, _ := newRegistry(t)
	entered := make(chan struct{})
	finished := make(chan struct{})
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		w.WriteHeader(http.StatusServiceUnavailable)
	}), middleware.WithRegistry(reg))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(finished)
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error %v", err)
	}
	<-finished
	s := snapshot(t, reg, metrics.ScopeRoute, "/slow")
	if s.Count != 1 || s.Canceled != 1 || s.Errors != 0 {
		t.Errorf("count %d canceled %d errors %d, want 1, 1, 0", s.Count, s.Canceled, s.Errors)
	}
}

func TestStreamingTTFB(t *testing.T) {
	reg, clk := newRegistry(t)
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		clk.Advance(30 * time.Millisecond) // time to first token
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			clk.Advance(100 * time.Millisecond)
		}
	}), middleware.WithRegistry(reg))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Count(string(body), "data:") != 3 {
		t.Fatalf("body %q", body)
	}
	total := snapshot(t, reg, metrics.ScopeRoute, "/stream")
	ttfb := snapshot(t, reg, metrics.ScopeTTFB, "/stream")
	if total.Max < 325*time.Millisecond || total.Max > 335*time.Millisecond {
		t.Errorf("total duration %v, want about 330ms", total.Max)
	}
	if ttfb.Count != 1 || ttfb.Max != 30*time.Millisecond {
		t.Errorf("ttfb count %d max %v, want 1 and 30ms", ttfb.Count, ttfb.Max)
	}
}

func TestWriterInterfaces(t *testing.T) {
	reg, _ := newRegistry(t)
	var checks []string
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			checks = append(checks, "SetWriteDeadline: "+err.Error())
		}
		switch r.URL.Path {
		case "/copy":
			if _, ok := w.(io.ReaderFrom); !ok {
				checks = append(checks, "no ReaderFrom")
			}
			io.Copy(w, strings.NewReader(strings.Repeat("x", 10000)))
		case "/hijack":
			conn, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				checks = append(checks, "Hijack: "+err.Error())
				return
			}
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
			brw.Flush()
			conn.Close()
		}
	}), middleware.WithRegistry(reg))
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, path := range []string{"/copy", "/hijack"} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if path == "/copy" && len(body) != 10000 || path == "/hijack" && string(body) != "hi" {
			t.Errorf("%s: body of %d bytes", path, len(body))
		}
	}
	if len(checks) > 0 {
		t.Errorf("writer interfaces: %v", checks)
	}
	if s := snapshot(t, reg, metrics.ScopeRoute, "/copy"); s.Bytes != 10000 {
		t.Errorf("/copy bytes %d, want 10000", s.Bytes)
	}

	// A recorder cannot be hijacked: the error says so instead of a panic.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/hijack", nil))
	if len(checks) != 2 || !strings.HasPrefix(checks[1], "Hijack: ") || !strings.Contains(checks[1], "not supported") {
		t.Errorf("hijacking a recorder: %v", checks)
	}
}

func TestBadTenantValues(t *testing.T) {
	reg, _ := newRegistry(t)
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), middleware.WithRegistry(reg))
	for _, v := range []string{"", strings.Repeat("t", 1<<20), "caf\xe9", "ok"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header["X-Tenant-Id"] = []string{v}
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if got := reg.Keys(metrics.ScopeTenant); fmt.Sprint(got) != "[(overlong) caf\uFFFD ok]" {
		t.Errorf("tenant keys %q", got)
	}
}

func TestMillionTenants(t *testing.T) {
	const capacity = 1000
	n := 1_000_000
	if raceEnabled {
		n = 100_000 // the race detector makes each request ~10× slower; the bound is the same
	}
	reg, _ := newRegistry(t, metrics.WithScopeCapacity(metrics.ScopeTenant, capacity))
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), middleware.WithRegistry(reg))
	req := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	for i := range n {
		req.Header["X-Tenant-Id"] = []string{fmt.Sprint(i)}
		h.ServeHTTP(w, req)
	}
	st := reg.Stats()
	if st.Windows[metrics.ScopeTenant] != capacity || st.Evictions[metrics.ScopeTenant] != uint64(n-capacity) {
		t.Errorf("after %d tenants: %d windows, %d evictions; want %d and %d",
			n, st.Windows[metrics.ScopeTenant], st.Evictions[metrics.ScopeTenant], capacity, n-capacity)
	}
}

// Flush through a writer that is not a Flusher goes through ResponseController and
// fails quietly rather than panicking.
func TestFlushWithoutFlusher(t *testing.T) {
	reg, _ := newRegistry(t)
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		if err := w.(http.Pusher).Push("/x", nil); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("push: %v", err)
		}
	}), middleware.WithRegistry(reg))
	h.ServeHTTP(struct{ http.ResponseWriter }{httptest.NewRecorder()}, httptest.NewRequest("GET", "/f", nil))
	if s := snapshot(t, reg, metrics.ScopeTTFB, "/f"); s.Count != 1 {
		t.Errorf("ttfb count %d", s.Count)
	}
}

func TestDefaultRegistry(t *testing.T) {
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/d", nil))
	reg := h.(*middleware.Handler).Registry()
	if _, ok := reg.Lookup(metrics.ScopeRoute, "/d"); !ok {
		t.Error("the default registry has no window for /d")
	}
}

// mustWrap wraps h with the middleware configured by opts, failing the test on error.
func mustWrap(tb testing.TB, h http.Handler, opts ...middleware.Option) http.Handler {
	tb.Helper()
	w, err := middleware.Wrap(h, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

func TestNewReportsEveryBadOption(t *testing.T) {
	_, err := middleware.New(middleware.WithRegistry(nil), middleware.WithClassifier(nil),
		middleware.WithFailure(nil), middleware.WithAdmission(nil), middleware.WithHook(nil),
		middleware.WithClock(nil), middleware.WithLogger(nil), middleware.WithMeterProvider(nil), nil)
	if !errors.Is(err, middleware.ErrInvalidConfig) {
		t.Fatalf("error %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"nil registry", "nil classifier", "nil failure predicate", "nil admission",
		"nil hook", "nil clock", "nil logger", "nil meter provider", "nil option"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}

// failingMeter refuses to make instruments, as a misconfigured SDK would.
type failingMeter struct{ noop.Meter }

func (failingMeter) Float64ObservableGauge(string, ...metric.Float64ObservableGaugeOption) (metric.Float64ObservableGauge, error) {
	return nil, errors.New("no instruments today")
}

type failingProvider struct{ noop.MeterProvider }

func (failingProvider) Meter(string, ...metric.MeterOption) metric.Meter { return failingMeter{} }

func TestNewReportsFailedOTelRegistration(t *testing.T) {
	_, err := middleware.New(middleware.WithMeterProvider(failingProvider{}))
	if err == nil || !strings.Contains(err.Error(), "no instruments today") {
		t.Fatalf("error %v, want the meter's refusal", err)
	}
}
