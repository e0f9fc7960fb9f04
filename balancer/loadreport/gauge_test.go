package loadreport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/balancer/loadreport"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
)

// gpuPolicy scales "model-a" by its GPU utilization over the last 3 s, and holds
// when the gauge has no reading in that span (stale).
const gpuPolicy = `
function on_tick(m, state)
  local g = m.scope("gpu", "model-a", 3)
  if g.count == 0 then return {} end
  local mean = g.value / g.count
  return { scale("model-a", math.floor(mean * 10 + 0.5), string.format("gpu %.2f over %d readings", mean, g.count)) }
end`

func decide(t *testing.T, rt *luabind.Runtime, reg *metrics.Registry, now time.Time) []autoscale.Action {
	t.Helper()
	in := &autoscale.Input{Now: now, Tick: time.Second, Metrics: autoscale.NewSnapshot(now, autoscale.NewRegistryReader(reg, now))}
	acts, err := rt.Decide(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return acts
}

// TestGaugeReadByLuaOnTick polls a func gauge into a registry and runs a real Lua
// policy on it: it scales by the mean reading, and holds once the gauge is stale.
func TestGaugeReadByLuaOnTick(t *testing.T) {
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	readings := []float64{0.7, 0.9, 0.8}
	var i atomic.Int32
	fail := errors.New("sidecar down")
	g, err := loadreport.NewGauge(reg, loadreport.GaugeConfig{Scope: "gpu", Key: "model-a", Source: func(ctx context.Context) (float64, error) {
		n := int(i.Add(1)) - 1
		if n >= len(readings) {
			return 0, fail
		}
		return readings[n], nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := luabind.New(luabind.FromString("gpu.lua", gpuPolicy), luabind.WithClock(clock), luabind.WithRegistry(reg),
		luabind.WithFailMode(luabind.HookTick, luabind.FailClosed), luabind.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	// Before any reading the scope is known (the gauge made its window) and empty.
	if acts := decide(t, rt, reg, clock.Now()); len(acts) != 0 {
		t.Fatalf("before a reading: %v", acts)
	}
	for range readings {
		clock.Advance(time.Second)
		if err := g.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	want := []autoscale.Action{autoscale.Scale{Target: "model-a", Replicas: 8, Reason: "gpu 0.80 over 3 readings"}}
	if d := cmp.Diff(want, decide(t, rt, reg, clock.Now())); d != "" {
		t.Errorf("actions (-want +got):\n%s", d)
	}
	if v, fresh := g.Fresh(clock.Now()); v != 0.8 || !fresh {
		t.Errorf("Fresh = %v, %v; want 0.8, true", v, fresh)
	}
	// The sidecar goes away: after 4 failed readings nothing is in the last 3 s.
	for range 4 {
		clock.Advance(time.Second)
		if err := g.Poll(context.Background()); !errors.Is(err, fail) {
			t.Fatalf("Poll = %v, want the source's error", err)
		}
	}
	if acts := decide(t, rt, reg, clock.Now()); len(acts) != 0 {
		t.Errorf("a stale gauge moved the policy: %v", acts)
	}
	if _, fresh := g.Fresh(clock.Now()); fresh {
		t.Error("a reading 4 s old is fresh (max age 3 s)")
	}
	if d := cmp.Diff(loadreport.GaugeStats{Polls: 7, Failures: 4}, g.Stats()); d != "" {
		t.Errorf("Stats (-want +got):\n%s", d)
	}
}

func TestGaugeRejectsBadReadings(t *testing.T) {
	reg, _ := metrics.NewRegistry(metrics.WithClock(metrics.NewManualClock(t0)))
	var v atomic.Pointer[float64]
	g, err := loadreport.NewGauge(reg, loadreport.GaugeConfig{Scope: "gpu", Key: "a", Source: func(context.Context) (float64, error) { return *v.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []float64{nan(), inf(1), inf(-1)} {
		v.Store(&x)
		if err := g.Poll(context.Background()); !errors.Is(err, loadreport.ErrBadReading) {
			t.Errorf("reading %v: %v, want ErrBadReading", x, err)
		}
	}
	neg := -3.5 // a gauge may be negative (a temperature, a balance)
	v.Store(&neg)
	if err := g.Poll(context.Background()); err != nil {
		t.Errorf("reading -3.5: %v", err)
	}
	if s := g.Window().Snapshot(time.Minute); s.Count != 1 || s.Value != -3.5 {
		t.Errorf("window count %d value %v, want only the good reading", s.Count, s.Value)
	}
	if st := g.Stats(); st.Invalid != 3 || st.Polls != 4 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestGaugeJSON(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := newServer(t, nil)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gpu":
			fmt.Fprint(w, `{"gpu": {"utilization": 0.83, "name": "H100"}, "gpus": [{"util": 0.5}, {"util": 1e400}]}`)
		case "/huge":
			fmt.Fprint(w, `{"pad": "`+strings.Repeat("x", 2<<20)+`"}`)
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			http.Error(w, "oops", http.StatusInternalServerError)
		}
	})
	tests := []struct {
		path, member string
		want         float64
		invalid      bool // ErrBadReading; else another error when want is 0
	}{
		{"/gpu", "gpu.utilization", 0.83, false},
		{"/gpu", "gpus.0.util", 0.5, false},
		{"/gpu", "gpus.1.util", 0, true}, // out of float64's range
		{"/gpu", "gpus.2.util", 0, true},
		{"/gpu", "gpu.name", 0, true},
		{"/gpu", "gpu.missing", 0, true},
		{"/gpu", "gpu.utilization.x", 0, true},
		{"/huge", "pad", 0, false},
		{"/slow", "x", 0, false},
		{"/500", "x", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.path+"/"+tt.member, func(t *testing.T) {
			src, err := loadreport.JSON(client(t), srv.URL+tt.path, tt.member)
			if err != nil {
				t.Fatal(err)
			}
			reg, _ := metrics.NewRegistry(metrics.WithClock(metrics.NewManualClock(t0)))
			timeout := time.Second // generous for a loopback GET under -race; /slow waits it out
			if tt.path == "/slow" {
				timeout = 300 * time.Millisecond
			}
			g, err := loadreport.NewGauge(reg, loadreport.GaugeConfig{Scope: "gpu", Source: src, Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			err = g.Poll(context.Background())
			switch {
			case tt.want != 0:
				if v, _, ok := g.Last(); err != nil || !ok || v != tt.want {
					t.Errorf("Poll = %v, reading %v; want %v", err, v, tt.want)
				}
			case tt.invalid:
				if !errors.Is(err, loadreport.ErrBadReading) || g.Stats().Invalid != 1 {
					t.Errorf("Poll = %v, stats %+v; want ErrBadReading, counted invalid", err, g.Stats())
				}
			default:
				if err == nil || errors.Is(err, loadreport.ErrBadReading) || g.Stats().Failures != 1 {
					t.Errorf("Poll = %v, stats %+v; want a failure", err, g.Stats())
				}
			}
		})
	}
	for _, bad := range [][2]string{{"ftp://x/y", "a"}, {srv.URL, ""}, {srv.URL, "a..b"}} {
		if _, err := loadreport.JSON(nil, bad[0], bad[1]); !errors.Is(err, loadreport.ErrInvalidConfig) {
			t.Errorf("JSON(%q, %q) = %v, want ErrInvalidConfig", bad[0], bad[1], err)
		}
	}
}

func TestGaugeConfigValidate(t *testing.T) {
	reg, _ := metrics.NewRegistry()
	_, err := loadreport.NewGauge(nil, loadreport.GaugeConfig{Interval: time.Second, Timeout: 2 * time.Second})
	if !errors.Is(err, loadreport.ErrInvalidConfig) {
		t.Fatalf("NewGauge = %v", err)
	}
	for _, want := range []string{"without a scope", "without a source", "timeout 2s", "nil registry"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("NewGauge = %v, missing %q", err, want)
		}
	}
	if _, err := loadreport.NewGauge(reg, loadreport.GaugeConfig{Scope: "gpu", Source: func(context.Context) (float64, error) { return 1, nil }, MaxAge: -1}); err == nil {
		t.Error("a negative max age was accepted")
	}
}

// TestGaugeRun runs a gauge on the real clock until it has read a few times, then
// stops it; goleak in TestMain checks it left nothing behind.
func TestGaugeRun(t *testing.T) {
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	g, err := loadreport.NewGauge(reg, loadreport.GaugeConfig{Scope: "gpu", Key: "a", Interval: 10 * time.Millisecond,
		Source: func(context.Context) (float64, error) { return float64(n.Add(1)), nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for g.Window().Snapshot(time.Minute).Count < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	if c := g.Window().Snapshot(time.Minute).Count; c < 3 {
		t.Errorf("%d readings in 10 s at a 10 ms interval", c)
	}
}

// TestScrapedLoadReadByLuaOnTick follows a scraped page into a Lua on_tick: with a
// registry, the pool records each report's utilization into scope backend_load, so
// value / count over a span is the backend's mean utilization.
func TestScrapedLoadReadByLuaOnTick(t *testing.T) {
	var kv atomic.Value
	kv.Store("0.5")
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"a\"} %s\n", kv.Load())
	})
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := balancer.New(balancer.WithClock(clock), balancer.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "gpu-0", URL: srv.URL}}); err != nil {
		t.Fatal(err)
	}
	s, err := loadreport.New(pool, loadreport.WithClient(client(t)), loadreport.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"0.5", "0.7", "0.9"} {
		kv.Store(v)
		clock.Advance(time.Second)
		if err := s.Scrape(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := luabind.New(luabind.FromString("kv.lua", `
function on_tick(m, state)
  local l = m.scope("backend_load", "gpu-0", 3)
  return { scale("model-a", math.floor(10 * l.value / l.count + 0.5), "mean utilization over " .. l.count) }
end`), luabind.WithClock(clock), luabind.WithFailMode(luabind.HookTick, luabind.FailClosed))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	want := []autoscale.Action{autoscale.Scale{Target: "model-a", Replicas: 7, Reason: "mean utilization over 3"}}
	if d := cmp.Diff(want, decide(t, rt, reg, clock.Now())); d != "" {
		t.Errorf("actions (-want +got):\n%s", d)
	}
}
