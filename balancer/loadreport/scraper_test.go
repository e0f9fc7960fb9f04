package loadreport_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/balancer/loadreport"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var t0 = time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC)

// server is an httptest model server whose /metrics handler can be swapped.
type server struct {
	*httptest.Server
	h atomic.Pointer[http.HandlerFunc]
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.set(h)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		(*s.h.Load())(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) set(h http.HandlerFunc) { s.h.Store(&h) }

func page(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte(body))
	}
}

// client returns a client of its own whose idle connections close with the test.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// setup makes a pool on a manual clock with one backend per URL (ids b0, b1, ...) and
// a scraper of it.
func setup(t *testing.T, urls []string, opts ...loadreport.Option) (*balancer.Pool, *metrics.ManualClock, *loadreport.Scraper) {
	t.Helper()
	clock := metrics.NewManualClock(t0)
	pool, err := balancer.New(balancer.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	var eps []balancer.Endpoint
	for i, u := range urls {
		eps = append(eps, balancer.Endpoint{ID: fmt.Sprintf("b%d", i), URL: u})
	}
	if err := pool.Update(eps); err != nil {
		t.Fatal(err)
	}
	// A generous timeout: a loopback scrape under -race on a busy machine may take
	// longer than the default 500 ms.
	s, err := loadreport.New(pool, append([]loadreport.Option{loadreport.WithClient(client(t)), loadreport.WithTimeout(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return pool, clock, s
}

var ignoreAt = cmpopts.IgnoreFields(balancer.LoadReport{}, "At")

func TestScrapeVLLMPage(t *testing.T) {
	srv := newServer(t, page(string(readPage(t, "vllm.txt"))))
	pool, clock, s := setup(t, []string{srv.URL})
	if err := s.Scrape(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := pool.Backends()[0]
	want := balancer.LoadReport{Utilization: 1, InFlight: 21, Queue: 7, KVCache: 0.7106, At: clock.Now()}
	if d := cmp.Diff(&want, b.Load()); d != "" {
		t.Errorf("Load (-want +got):\n%s", d)
	}
	if snap := b.LoadWindow().Snapshot(time.Minute); snap.Count != 1 || snap.Value != 1 {
		t.Errorf("load window count %d value %v, want 1 and 1", snap.Count, snap.Value)
	}
	if d := cmp.Diff(loadreport.Stats{Scrapes: 1, Reports: 1}, s.Stats()); d != "" {
		t.Errorf("Stats (-want +got):\n%s", d)
	}
	if r, fresh := s.Load(b); r == nil || !fresh {
		t.Errorf("Load = %v, %v: want a fresh report", r, fresh)
	}
	clock.Advance(s.MaxAge() + time.Millisecond)
	if _, fresh := s.Load(b); fresh {
		t.Errorf("a report %v old is fresh (max age %v)", s.MaxAge()+time.Millisecond, s.MaxAge())
	}
}

func TestScrapeSGLangPage(t *testing.T) {
	srv := newServer(t, page(string(readPage(t, "sglang.txt"))))
	pool, _, s := setup(t, []string{srv.URL}, loadreport.WithMapping(loadreport.SGLang()))
	if err := s.Scrape(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := balancer.LoadReport{Utilization: 1, InFlight: 310, Queue: 26, KVCache: 0.81}
	if d := cmp.Diff(&want, pool.Backends()[0].Load(), ignoreAt); d != "" {
		t.Errorf("Load (-want +got):\n%s", d)
	}
}

func TestScrapeRate(t *testing.T) {
	var total atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# TYPE vllm:request_success_total counter\nvllm:request_success_total{finished_reason=\"stop\"} %d\nvllm:request_success_total{finished_reason=\"length\"} 5\n", total.Load())
	})
	pool, clock, s := setup(t, []string{srv.URL})
	rps := func() float64 {
		t.Helper()
		if err := s.Scrape(context.Background()); err != nil {
			t.Fatal(err)
		}
		return pool.Backends()[0].Load().RPS
	}
	total.Store(100)
	if got := rps(); got != 0 {
		t.Errorf("first scrape: rps %v, want 0 (no previous page)", got)
	}
	clock.Advance(2 * time.Second)
	total.Store(160)
	if got := rps(); got != 30 {
		t.Errorf("rps %v, want (160-100)/2 s = 30", got)
	}
	clock.Advance(time.Second)
	total.Store(10) // the server restarted
	if got := rps(); got != 0 {
		t.Errorf("after a reset: rps %v, want 0", got)
	}
	clock.Advance(time.Second)
	total.Store(14)
	if got := rps(); got != 4 {
		t.Errorf("rps %v, want 4", got)
	}
}

func TestScrapeBadInput(t *testing.T) {
	good := string(readPage(t, "vllm.txt"))
	// The pages past the bound are past a bound of 256 KiB, which the good page (12 KiB)
	// is within: the same code as at the default 4 MiB, in less time.
	const maxBody = 256 << 10
	huge := strings.Repeat("# padding line of a page that never ends\n", 7_000) + good // ~300 KiB
	gauge := func(name, v string) http.HandlerFunc {
		return page(fmt.Sprintf("# TYPE %s gauge\n%s{model_name=\"a\"} %s\n", name, name, v))
	}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write(bytes.Repeat([]byte("# x\n"), 5<<18))
	_ = zw.Close()
	bomb := zb.Bytes()
	release := make(chan struct{})
	defer close(release)
	tests := []struct {
		name    string
		h       http.HandlerFunc
		want    error
		counter func(loadreport.Stats) uint64
	}{
		{"huge", page(huge), loadreport.ErrTooLarge, func(s loadreport.Stats) uint64 { return s.TooLarge }},
		{"huge streamed", func(w http.ResponseWriter, r *http.Request) {
			for range 10 { // chunked: no Content-Length to refuse it by
				_, _ = w.Write(bytes.Repeat([]byte("# x\n"), 8<<10))
			}
		}, loadreport.ErrTooLarge, func(s loadreport.Stats) uint64 { return s.TooLarge }},
		{"gzip bomb", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb) // 5 MiB of comment lines in a few KiB
		}, loadreport.ErrTooLarge, func(s loadreport.Stats) uint64 { return s.TooLarge }},
		{"malformed", page("vllm:num_requests_waiting{model_name=\"a\" 3\n"), loadreport.ErrParse, func(s loadreport.Stats) uint64 { return s.Malformed }},
		{"slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, context.DeadlineExceeded, func(s loadreport.Stats) uint64 { return s.Timeouts }},
		{"slow body", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("# TYPE vllm:num_requests_waiting gauge\n"))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, context.DeadlineExceeded, func(s loadreport.Stats) uint64 { return s.Timeouts }},
		{"missing", http.NotFound, loadreport.ErrStatus, func(s loadreport.Stats) uint64 { return s.Status }},
		{"failing", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }, loadreport.ErrStatus, func(s loadreport.Stats) uint64 { return s.Status }},
		{"other metrics", gauge("go_goroutines", "7"), loadreport.ErrNoMetrics, func(s loadreport.Stats) uint64 { return s.Missing }},
		{"NaN", gauge("vllm:num_requests_waiting", "NaN"), loadreport.ErrInvalidValue, func(s loadreport.Stats) uint64 { return s.Invalid }},
		{"negative", gauge("vllm:num_requests_running", "-3"), loadreport.ErrInvalidValue, func(s loadreport.Stats) uint64 { return s.Invalid }},
		{"absurd", gauge("vllm:kv_cache_usage_perc", "73.5"), loadreport.ErrInvalidValue, func(s loadreport.Stats) uint64 { return s.Invalid }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, page(good))
			// The slow cases wait out the timeout; the others must not meet it.
			timeout := time.Second
			if errors.Is(tt.want, context.DeadlineExceeded) {
				timeout = 300 * time.Millisecond
			}
			pool, clock, s := setup(t, []string{srv.URL}, loadreport.WithTimeout(timeout), loadreport.WithMaxBody(maxBody))
			if err := s.Scrape(context.Background()); err != nil {
				t.Fatal(err)
			}
			b := pool.Backends()[0]
			first := b.Load()
			srv.set(tt.h)
			clock.Advance(time.Second)
			err := s.Scrape(context.Background())
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), `backend "b0"`) {
				t.Fatalf("Scrape = %v, want %v for backend b0", err, tt.want)
			}
			st := s.Stats()
			if tt.counter(st) != 1 || st.Scrapes != 2 || st.Reports != 1 {
				t.Errorf("Stats = %+v, want 2 scrapes, 1 report, 1 failure of this kind", st)
			}
			if b.Load() != first {
				t.Errorf("Load = %+v, want the last good report %+v", b.Load(), first)
			}
			if n := b.LoadWindow().Snapshot(time.Minute).Count; n != 1 {
				t.Errorf("load window count %d, want 1", n)
			}
		})
	}
}

func TestScrapeUnreachable(t *testing.T) {
	srv := newServer(t, page(""))
	url := srv.URL
	srv.Close()
	pool, _, s := setup(t, []string{url})
	if err := s.Scrape(context.Background()); err == nil {
		t.Fatal("Scrape of a closed server succeeded")
	}
	if st := s.Stats(); st.Unreachable != 1 || st.Timeouts != 0 {
		t.Errorf("Stats = %+v, want 1 unreachable", st)
	}
	if pool.Backends()[0].Load() != nil {
		t.Error("a backend never read has a report")
	}
}

// TestSaturatedForever checks that a backend that always reports a full KV cache and
// a long queue keeps being recorded, scrape after scrape, and that the pool still picks.
func TestSaturatedForever(t *testing.T) {
	srv := newServer(t, page("# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 1\n# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 4000\n"))
	pool, clock, s := setup(t, []string{srv.URL})
	const n = 50
	for i := range n {
		if err := s.Scrape(context.Background()); err != nil {
			t.Fatalf("scrape %d: %v", i, err)
		}
		b := pool.Backends()[0]
		if r := b.Load(); r.Queue != 4000 || r.KVCache != 1 || r.Utilization != 1 || !r.At.Equal(clock.Now()) {
			t.Fatalf("scrape %d: Load = %+v", i, r)
		}
		res, err := pool.Pick(nil)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		res.Done(balancer.Outcome{})
		clock.Advance(time.Second)
	}
	if st := s.Stats(); st.Reports != n {
		t.Errorf("reports %d, want %d", st.Reports, n)
	}
	if snap := pool.Backends()[0].LoadWindow().Snapshot(time.Minute); snap.Count != n || snap.Value != n {
		t.Errorf("load window count %d value %v, want %d of utilization 1", snap.Count, snap.Value, n)
	}
}

// TestScrapeConcurrencyBound checks that no more backends than the concurrency are
// scraped at once, and that all are.
func TestScrapeConcurrencyBound(t *testing.T) {
	var cur, peak atomic.Int32
	var mu sync.Mutex
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		mu.Lock()
		peak.Store(max(peak.Load(), n))
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // let scrapes overlap
		page("vllm:num_requests_running 1\n")(w, r)
	})
	urls := make([]string, 12)
	for i := range urls {
		urls[i] = srv.URL
	}
	pool, _, s := setup(t, urls, loadreport.WithConcurrency(3))
	if err := s.Scrape(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 3 || p < 1 {
		t.Errorf("peak concurrent scrapes %d, want 1..3", p)
	}
	for _, b := range pool.Backends() {
		if b.Load() == nil {
			t.Errorf("%s was not scraped", b.ID())
		}
	}
}

func TestScrapeFilter(t *testing.T) {
	srv := newServer(t, page("vllm:num_requests_running 1\n"))
	pool, _, s := setup(t, []string{srv.URL, srv.URL}, loadreport.WithFilter(func(b *balancer.Backend) bool { return b.ID() == "b1" }))
	if err := s.Scrape(context.Background()); err != nil {
		t.Fatal(err)
	}
	if bs := pool.Backends(); bs[0].Load() != nil || bs[1].Load() == nil {
		t.Errorf("loads %v, %v: want only b1's", bs[0].Load(), bs[1].Load())
	}
}

// TestRun runs the scraper on the real clock until it has reported a few times, then
// stops it: Run returns ctx's error and leaves no goroutine (goleak in TestMain).
func TestRun(t *testing.T) {
	srv := newServer(t, page(string(readPage(t, "vllm.txt"))))
	pool, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "a", URL: srv.URL}}); err != nil {
		t.Fatal(err)
	}
	s, err := loadreport.New(pool, loadreport.WithInterval(100*time.Millisecond), loadreport.WithClient(client(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Reports < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if n := s.Stats().Reports; n < 3 {
		t.Fatalf("%d reports in 10 s at a 100 ms interval", n)
	}
	if r := pool.Backends()[0].Load(); r == nil || r.Queue != 7 {
		t.Errorf("Load = %+v", r)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	pool, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	_, err = loadreport.New(pool, loadreport.WithPath("metrics"), loadreport.WithInterval(0), loadreport.WithTimeout(-1),
		loadreport.WithMaxBody(0), loadreport.WithConcurrency(0), loadreport.WithMaxAge(-time.Second), loadreport.WithClient(nil),
		loadreport.WithFilter(nil), loadreport.WithMapping(loadreport.Mapping{}))
	if !errors.Is(err, loadreport.ErrInvalidConfig) || !errors.Is(err, balancer.ErrInvalidConfig) {
		t.Fatalf("New = %v, want ErrInvalidConfig", err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 9 {
		t.Errorf("New reported %d problems, want 9:\n%v", n, err)
	}
	if _, err := loadreport.New(pool, loadreport.WithTimeout(2*time.Second)); !errors.Is(err, loadreport.ErrInvalidConfig) {
		t.Errorf("a timeout past the interval: %v", err)
	}
	if _, err := loadreport.New(nil); !errors.Is(err, loadreport.ErrInvalidConfig) {
		t.Errorf("nil pool: %v", err)
	}
	s, err := loadreport.New(pool, loadreport.WithInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxAge() != 600*time.Millisecond || s.Interval() != 200*time.Millisecond {
		t.Errorf("max age %v, interval %v; want 3 intervals of 200 ms", s.MaxAge(), s.Interval())
	}
}

func TestFresh(t *testing.T) {
	now := t0.Add(time.Minute)
	for _, tt := range []struct {
		r    *balancer.LoadReport
		want bool
	}{
		{nil, false},
		{&balancer.LoadReport{}, false},
		{&balancer.LoadReport{At: now.Add(-3 * time.Second)}, true},
		{&balancer.LoadReport{At: now.Add(-3*time.Second - 1)}, false},
	} {
		if got := loadreport.Fresh(tt.r, now, 3*time.Second); got != tt.want {
			t.Errorf("Fresh(%+v) = %v, want %v", tt.r, got, tt.want)
		}
	}
}
