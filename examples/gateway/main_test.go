package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is an io.Writer safe for the gateway's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type point struct {
	at       time.Duration
	replicas int
	ready    int
	p99      time.Duration
	rate     float64
}

// TestFlashSale drives the demo through a compressed flash sale with its own load
// generator: the gateway must scale the pool up, p99 must recover while the sale
// lasts, the pool must scale down after it, and every request sent must be accounted
// for exactly, on the client's side and on the gateway's.
func TestFlashSale(t *testing.T) {
	sale := simulate.FlashSale{Base: 40, Peak: 10, Start: 5 * time.Second, Rise: 3 * time.Second, Hold: 25 * time.Second, Fall: 2 * time.Second}
	saleEnd := sale.Start + sale.Rise + sale.Hold + sale.Fall
	var (
		mu       sync.Mutex
		timeline []point
		gw       *gateway
		started  time.Time
	)
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config{addr: "127.0.0.1:0", policy: "adaptive", tick: 500 * time.Millisecond, minReplicas: 1, maxReplicas: 20,
		duration: saleEnd + 35*time.Second, profile: sale,
		ready: func(g *gateway) {
			gw, started = g, time.Now()
			go func() {
				tk := time.NewTicker(500 * time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tk.C:
					}
					p := point{at: time.Since(started), ready: g.fleet.Ready()}
					p.replicas, _ = g.fleet.Replicas(ctx, actuator.Target{Name: target})
					if w, ok := g.reg.Lookup(metrics.ScopeRoute, target); ok {
						s := w.Snapshot(3 * time.Second)
						p.p99, p.rate = s.P99, s.Rate
					}
					mu.Lock()
					timeline = append(timeline, p)
					mu.Unlock()
				}
			}()
		}}
	if err := run(ctx, cfg, out); err != nil && err != context.DeadlineExceeded {
		t.Fatalf("run: %v\n%s", err, out)
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	var tl strings.Builder
	for _, p := range timeline {
		fmt.Fprintf(&tl, "%5.1fs replicas %2d ready %2d rate %5.0f p99 %v\n", p.at.Seconds(), p.replicas, p.ready, p.rate, p.p99.Round(time.Millisecond))
	}
	report := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\ntimeline:\n%s\noutput:\n%s", append(args, tl.String(), out.String())...)
	}

	phase := func(from, to time.Duration) []point {
		var ps []point
		for _, p := range timeline {
			if p.at >= from && p.at < to {
				ps = append(ps, p)
			}
		}
		return ps
	}
	before := phase(0, sale.Start)
	peakStart := sale.Start + sale.Rise
	hold := phase(peakStart, peakStart+sale.Hold)
	after := phase(saleEnd+25*time.Second, cfg.duration)
	if len(before) == 0 || len(hold) < 10 || len(after) == 0 {
		t.Fatalf("timeline too short: %d/%d/%d points\n%s", len(before), len(hold), len(after), tl.String())
	}
	maxBefore, maxHold := 0, 0
	for _, p := range before {
		maxBefore = max(maxBefore, p.replicas)
	}
	for _, p := range hold {
		maxHold = max(maxHold, p.ready)
	}
	// 400 rps at 4 × 50 ms per replica (80 rps) needs at least 5 replicas.
	if maxHold < 5 || maxHold <= maxBefore {
		report("did not scale up: %d replicas before the sale, at most %d ready during it", maxBefore, maxHold)
	}
	// p99 recovers: in the last third of the sale it is under a quarter of its worst
	// and under 6× the mean service time (the service alone has a p99 of about 2×).
	worst := time.Duration(0)
	for _, p := range phase(sale.Start, saleEnd) {
		worst = max(worst, p.p99)
	}
	for _, p := range hold[len(hold)*2/3:] {
		if p.p99 > worst/4 || p.p99 > 6*serviceTime {
			report("p99 %v at %v, late in the sale (worst %v): not recovered", p.p99, p.at, worst)
			break
		}
	}
	if last := after[len(after)-1]; last.replicas >= maxHold {
		report("did not scale down after the sale: %d replicas at the end, %d at the peak", last.replicas, maxHold)
	}

	// The accounting holds exactly.
	c := gw.load.counts()
	st := gw.admission.Stats()
	if c.Sent == 0 || c.Served+c.Shed+c.Throttled+c.Errored != c.Sent {
		report("client: sent %d != served %d + shed %d + throttled %d + errored %d", c.Sent, c.Served, c.Shed, c.Throttled, c.Errored)
	}
	if c.Throttled != st.Throttled || c.Shed != st.Shed+st.QueueFull+st.QueueTimeout+st.Limited {
		report("client throttled %d shed %d, gateway throttled %d shed %d", c.Throttled, c.Shed, st.Throttled, st.Shed+st.QueueFull+st.QueueTimeout+st.Limited)
	}
	if c.Served+c.Errored != st.Admitted {
		report("client served %d + errored %d != gateway admitted %d", c.Served, c.Errored, st.Admitted)
	}
	if c.Throttled == 0 {
		report("the free tenant was never throttled")
	}
	if c.Errored*100 > c.Sent {
		report("%d of %d requests errored", c.Errored, c.Sent)
	}
	if !strings.Contains(out.String(), "up ") || !strings.Contains(out.String(), "down ") {
		report("the decision lines show no scaling up and down")
	}
	t.Logf("sent %d: served %d, shed %d, throttled %d, errored %d; peak %d replicas", c.Sent, c.Served, c.Shed, c.Throttled, c.Errored, maxHold)
}

// TestHotReloadAndDashboard runs the demo with a policy file, checks the dashboard and
// the access hook answer, edits the file, and sees it reloaded; a broken edit keeps the
// old policy.
func TestHotReloadAndDashboard(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.lua")
	write := func(replicas int, broken bool) {
		src := fmt.Sprintf(`function on_tick(m, state) return { scale("%s", %d, "fixed %d") } end`, target, replicas, replicas)
		if broken {
			src = "function on_tick(m, state) return {"
		}
		if err := os.WriteFile(path+".tmp", []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(2, false)
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gwc := make(chan *gateway, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{addr: "127.0.0.1:0", policy: path, load: "none", profile: simulate.Constant(0), tick: 100 * time.Millisecond,
			minReplicas: 1, maxReplicas: 5, ready: func(g *gateway) { gwc <- g }}, out)
	}()
	g := <-gwc
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	replicas := func() int { n, _ := g.fleet.Replicas(ctx, actuator.Target{Name: target}); return n }
	waitFor("2 replicas", func() bool { return replicas() == 2 })

	resp, err := http.Get(g.url + "/debug/autoscale/api/state")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("dashboard: %v %v", err, resp)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", g.url+"/api/x", nil)
	req.Header.Set("X-Debug", "block")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 403 || resp.Header.Get(middleware.RejectedHeader) != "hook" {
		t.Fatalf("access.lua did not block: %v %v", err, resp)
	}
	resp.Body.Close()

	write(4, false)
	waitFor("the reload to 4 replicas", func() bool { return replicas() == 4 && strings.Contains(out.String(), "policy reloaded") })
	write(1, true)
	waitFor("the failed reload", func() bool { return strings.Contains(out.String(), "policy reload failed") })
	time.Sleep(300 * time.Millisecond) // a few ticks under the old policy
	if n := replicas(); n != 4 {
		t.Errorf("%d replicas after a broken edit, want the old policy's 4", n)
	}
	cancel()
	if err := <-done; err != nil && err != context.Canceled {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "sent 0: served 0") {
		t.Errorf("no final accounting line:\n%s", out.String())
	}
	// The banner explains the throttled count, and a header names the columns.
	for _, want := range []string{fmt.Sprintf("free is throttled to %d rps", freeRPS), "\n" + lineHeader + "\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-dump-policy", "kpa"}, &out); err != errDumped || !strings.Contains(out.String(), "function on_tick") {
		t.Errorf("dump-policy: %v\n%.200s", err, out.String())
	}
	if _, err := parseFlags([]string{"-load", "nope"}, &out); err == nil || !strings.Contains(err.Error(), "flash-sale") {
		t.Errorf("unknown load: %v", err)
	}
	// -h explains the decision line's terms and lists the policies the simulator
	// ships in Lua, every one of which the gateway runs.
	out.Reset()
	if _, err := parseFlags([]string{"-h"}, &out); err != flag.ErrHelp {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"lambda", "surprise", "req/s(3s)", "-policy", strings.Join(simulate.ShippedLuaNames(), ", ")} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, out.String())
		}
	}
	for _, name := range simulate.ShippedLuaNames() {
		if _, _, _, err := policySource(name, simulate.Env{Target: target, Concurrency: concurrency, ServiceTime: serviceTime}); err != nil {
			t.Errorf("-policy %s, listed by -h: %v", name, err)
		}
	}
	if _, _, _, err := policySource("nope", simulate.Env{}); err == nil || !strings.Contains(err.Error(), "adaptive") {
		t.Errorf("unknown policy: %v", err)
	}
	cfg, err := parseFlags(nil, &out)
	if err != nil || cfg.policy != "adaptive" || cfg.load != "flash-sale" || cfg.tick != time.Second || cfg.addr != "localhost:8080" {
		t.Errorf("defaults: %+v %v", cfg, err)
	}
}

// TestColdStartProfile runs the -load cold-start demo through its first burst: the
// gateway starts at zero, holds the burst's first requests and releases them all once
// a replica is ready. (Whether the first scale-up is the wake or the policy's own tick
// depends on timing here; autoscale's TestWakeStepsAtOnce pins the wake on a manual clock.)
func TestColdStartProfile(t *testing.T) {
	cfg, err := parseFlags([]string{"-load", "cold-start", "-addr", "127.0.0.1:0", "-duration", "7s", "-tick", "500ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.minReplicas != 0 {
		t.Fatalf("cold-start profile starts at %d replicas, want 0", cfg.minReplicas)
	}
	out := &syncBuffer{}
	if err := run(context.Background(), cfg, out); err != nil && err != context.DeadlineExceeded {
		t.Fatalf("run: %v\n%s", err, out)
	}
	var held, released, full, timedOut int
	var cs string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "held for a cold start") {
			if _, err := fmt.Sscanf(line, "held for a cold start %d: released %d, queue full %d, timed out %d; observed cold start %s",
				&held, &released, &full, &timedOut, &cs); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
		}
	}
	if held == 0 || released != held || full != 0 || timedOut != 0 || cs == "0s" {
		t.Errorf("held %d, released %d, full %d, timed out %d, cold start %s\n%s", held, released, full, timedOut, cs, out)
	}
}
