package balancer_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseLoadReport(t *testing.T) {
	tests := []struct {
		in      string
		want    balancer.LoadReport
		wantErr bool
	}{
		{"utilization=0.73, in_flight=12, queue=4, rps=118.5", balancer.LoadReport{Utilization: 0.73, InFlight: 12, Queue: 4, RPS: 118.5}, false},
		{"TEXT utilization=0.5", balancer.LoadReport{Utilization: 0.5}, false},
		{" queue = 3 ,, custom=x ", balancer.LoadReport{Queue: 3}, false},
		{"", balancer.LoadReport{}, true},
		{"utilization", balancer.LoadReport{}, true},
		{"utilization=abc", balancer.LoadReport{}, true},
		{"in_flight=1.5", balancer.LoadReport{}, true},
		{"utilization=-1", balancer.LoadReport{}, true},
		{"rps=NaN", balancer.LoadReport{}, true},
		{"utilization=+Inf", balancer.LoadReport{}, true},
		{"queue=-2", balancer.LoadReport{}, true},
		{"kv_cache=0.91, queue=7", balancer.LoadReport{KVCache: 0.91, Queue: 7}, false},
		{"kv_cache=NaN", balancer.LoadReport{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := balancer.ParseLoadReport(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, balancer.ErrInvalidLoadReport) {
				t.Errorf("err = %v, want ErrInvalidLoadReport", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	jsonTests := []struct {
		in      string
		want    balancer.LoadReport
		wantErr bool
	}{
		{`{"utilization":0.25,"in_flight":3,"queue":1,"rps":9,"extra":true}`, balancer.LoadReport{Utilization: 0.25, InFlight: 3, Queue: 1, RPS: 9}, false},
		{`{}`, balancer.LoadReport{}, false},
		{`{"kv_cache":0.4}`, balancer.LoadReport{KVCache: 0.4}, false},
		{`{"kv_cache":-1}`, balancer.LoadReport{}, true},
		{`{"utilization":-0.1}`, balancer.LoadReport{}, true},
		{`{"in_flight":"x"}`, balancer.LoadReport{}, true},
		{`[`, balancer.LoadReport{}, true},
	}
	for _, tt := range jsonTests {
		t.Run("json "+tt.in, func(t *testing.T) {
			got, err := balancer.ParseLoadReportJSON([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseLoadReport(f *testing.F) {
	for _, s := range []string{"utilization=0.73, in_flight=12, queue=4, rps=118.5", "TEXT queue=1", "", ",,,", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := balancer.ParseLoadReport(s)
		if err != nil {
			if r != (balancer.LoadReport{}) {
				t.Errorf("error %v with a non-zero report %+v", err, r)
			}
			return
		}
		if r.Utilization < 0 || r.RPS < 0 || r.InFlight < 0 || r.Queue < 0 || r.Utilization != r.Utilization {
			t.Errorf("accepted an invalid report %+v from %q", r, s)
		}
	})
}

func TestHealthCheckRiseFall(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	var mode atomic.Int32 // 0 header, 1 json, 2 bad header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/base/healthz" {
			http.NotFound(w, r)
			return
		}
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		switch mode.Load() {
		case 0:
			w.Header().Set("Endpoint-Load-Metrics", "utilization=0.5, in_flight=7")
		case 1:
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Write([]byte(`{"utilization":0.9,"queue":2}`))
		case 2:
			w.Header().Set("Endpoint-Load-Metrics", "utilization=-3")
		}
	}))
	defer srv.Close()
	clock := metrics.NewManualClock(t0)
	p, err := balancer.New(balancer.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update([]balancer.Endpoint{{ID: "a", URL: srv.URL + "/base/"}, {ID: "other", URL: "http://127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	client := srv.Client()
	defer client.CloseIdleConnections()
	hc, err := balancer.NewHealthChecker(p, balancer.HealthCheck{Rise: 2, Fall: 2, Timeout: time.Second}, client)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, _ := p.Lookup("a")
	steps := []struct {
		healthy   bool
		wantReady bool
	}{
		{true, true},
		{false, true}, // one failure: still up (fall 2)
		{true, true},  // a pass resets the count
		{false, true},
		{false, false}, // two in a row: down
		{true, false},  // one pass: still down (rise 2)
		{true, true},
	}
	for i, s := range steps {
		healthy.Store(s.healthy)
		hc.Check(ctx)
		if got := a.Healthy(); got != s.wantReady {
			t.Fatalf("step %d (check passes: %v): healthy %v, want %v", i, s.healthy, got, s.wantReady)
		}
	}
	if diff := cmp.Diff(&balancer.LoadReport{Utilization: 0.5, InFlight: 7}, a.Load(), cmpopts.IgnoreFields(balancer.LoadReport{}, "At")); diff != "" {
		t.Errorf("header report (-want +got):\n%s", diff)
	}
	mode.Store(1)
	hc.Check(ctx)
	if diff := cmp.Diff(&balancer.LoadReport{Utilization: 0.9, Queue: 2, At: clock.Now()}, a.Load()); diff != "" {
		t.Errorf("json report (-want +got):\n%s", diff)
	}
	mode.Store(2)
	hc.Check(ctx)
	if got := hc.Stats().BadReports; got != 1 {
		t.Errorf("bad reports = %d, want 1", got)
	}
	// Five valid reports went into the load window (four passing checks with 0.5,
	// one with 0.9): its mean utilization is Value / Count.
	s := a.LoadWindow().SnapshotAt(clock.Now(), 0)
	if s.Count != 5 || math.Abs(s.Value/float64(s.Count)-0.58) > 1e-9 {
		t.Errorf("load window: %d reports, sum %.2f; want 5, mean 0.58", s.Count, s.Value)
	}
	// The unreachable backend failed every check and is down.
	if o, _ := p.Lookup("other"); o.Healthy() {
		t.Errorf("unreachable backend is healthy")
	}
}

func TestHealthCheckerRun(t *testing.T) {
	const interval = 5 * time.Second
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	clock := metrics.NewManualClock(t0)
	p, err := balancer.New(balancer.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update([]balancer.Endpoint{{ID: "a", URL: srv.URL}}); err != nil {
		t.Fatal(err)
	}
	client := srv.Client()
	defer client.CloseIdleConnections()
	hc, err := balancer.NewHealthChecker(p, balancer.HealthCheck{Interval: interval}, client)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- hc.Run(ctx) }()
	// step advances the clock by d and waits for Run to arm its next timer, at next.
	step := func(d time.Duration, next time.Time, wantChecks uint64) {
		t.Helper()
		clock.Advance(d)
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := clock.WaitTimers(wctx, 1); err != nil {
			t.Fatalf("Run armed no timer: %v", err)
		}
		if at, _ := clock.NextTimer(); !at.Equal(next) {
			t.Fatalf("next check at %v, want %v", at.Sub(t0), next.Sub(t0))
		}
		if got := hc.Stats().Checks; got != wantChecks {
			t.Fatalf("at %v: %d checks, want %d", clock.Now().Sub(t0), got, wantChecks)
		}
	}
	step(0, t0.Add(interval), 1)                         // one check at once
	step(interval-time.Millisecond, t0.Add(interval), 1) // none before the interval
	step(time.Millisecond, t0.Add(2*interval), 2)
	step(2*interval+interval/2, t0.Add(4*interval), 4) // a jump past two ticks: two checks
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if n := clock.Timers(); n != 0 {
		t.Errorf("Run left %d timers", n)
	}
}

func TestHealthCheckValidate(t *testing.T) {
	err := balancer.HealthCheck{Path: "healthz", Interval: time.Second, Timeout: 2 * time.Second, Rise: -1, Concurrency: -2}.Validate()
	if !errors.Is(err, balancer.ErrInvalidConfig) {
		t.Fatalf("Validate = %v", err)
	}
	for _, w := range []string{"path", "timeout", "rise", "concurrency"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q: %v", w, err)
		}
	}
	if _, err := balancer.NewHealthChecker(nil, balancer.HealthCheck{}, nil); !errors.Is(err, balancer.ErrInvalidConfig) {
		t.Errorf("NewHealthChecker(nil) = %v", err)
	}
}

func TestPoolReportLoad(t *testing.T) {
	p, clock := newPool(t, 2)
	clock.Advance(time.Second)
	r := balancer.LoadReport{Utilization: 0.5, Queue: 3, KVCache: 0.8}
	if err := p.ReportLoad("b01", r, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	b := p.Backends()[1]
	got := b.Load()
	if got == nil || got.Queue != 3 || got.KVCache != 0.8 || !got.At.Equal(clock.Now()) {
		t.Fatalf("Load() = %+v, want the report stamped %v", got, clock.Now())
	}
	if s := b.LoadWindow().Snapshot(time.Minute); s.Count != 1 || s.Value != 0.5 {
		t.Errorf("load window count %d value %v, want 1 and 0.5", s.Count, s.Value)
	}
	if p.Backends()[0].Load() != nil {
		t.Error("b00 has a report it was never given")
	}
	if err := p.ReportLoad("nope", r, 0); !errors.Is(err, balancer.ErrUnknownBackend) {
		t.Errorf("unknown id: err = %v, want ErrUnknownBackend", err)
	}
	if err := p.ReportLoad("b01", balancer.LoadReport{KVCache: math.Inf(1)}, 0); !errors.Is(err, balancer.ErrInvalidLoadReport) {
		t.Errorf("infinite kv cache: err = %v, want ErrInvalidLoadReport", err)
	}
	if b.Load().KVCache != 0.8 {
		t.Error("an invalid report replaced the last good one")
	}
}
