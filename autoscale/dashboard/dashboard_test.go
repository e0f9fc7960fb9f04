package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/autoscale/dashboard"
	"github.com/autoscalelua/autoscalelua/internal/testenv"
	"github.com/autoscalelua/autoscalelua/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Unix(1_700_000_000, 0)

// fixture builds a registry with traffic on two routes, a backend, two models (one
// with a long name) and tenants (more than the top-N shown, one with a long key), a
// real loop over one target whose policy follows the request rate (and asks every tick
// to scale a target that does not exist), and a dashboard sampled over 30 s.
func fixture(t *testing.T) (*dashboard.Dashboard, *metrics.ManualClock) {
	t.Helper()
	clk := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	rec := new(actuatortest.Recorder)
	policy := autoscale.PolicyFunc(func(ctx context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
		s, _ := in.Metrics.Snapshot(metrics.ScopeRoute, "/api", 5*time.Second)
		return []autoscale.Action{
			autoscale.Scale{Target: "web", Replicas: max(1, int(s.Rate/10)), Reason: "10 rps per replica"},
			autoscale.Scale{Target: "no-such-target", Replicas: 3}, // a policy's typo, refused
		}, failOnce(in.Now)
	})
	loop, err := autoscale.NewLoop(
		autoscale.WithClock(clk), autoscale.WithRegistry(reg), autoscale.WithPolicy(policy), autoscale.WithDefaultActuator(rec),
		autoscale.WithTargets(autoscale.Target{Name: "web", Min: 1, Max: 20, Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{}}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Close() })
	var shed, throttled uint64
	dash, err := dashboard.New(dashboard.WithLoop(loop), dashboard.WithRegistry(reg), dashboard.WithTitle("test gateway"),
		dashboard.WithCounters(func() map[string]uint64 { return map[string]uint64{"shed": shed, "throttled": throttled} }))
	if err != nil {
		t.Fatal(err)
	}
	api := reg.Window(metrics.ScopeRoute, "/api")
	static := reg.Window(metrics.ScopeRoute, "/static")
	backend := reg.Window(metrics.ScopeBackend, "b1")
	models := []*metrics.Window{reg.Window(metrics.ScopeModel, "llama-3.1-8b"), reg.Window(metrics.ScopeModel, longModel)}
	tenants := []*metrics.Window{reg.Window(metrics.ScopeTenant, longTenant)} // the busiest
	for i := range 14 {
		tenants = append(tenants, reg.Window(metrics.ScopeTenant, fmt.Sprintf("tenant-%02d", i)))
	}
	for s := range 30 {
		rate := 20 + 4*s // a ramp
		for i := range rate {
			o := metrics.Observation{Latency: time.Duration(10+i%20) * time.Millisecond}
			if i%25 == 0 {
				o.Outcome = metrics.OutcomeError
			}
			api.RecordAt(clk.Now(), o)
			backend.RecordAt(clk.Now(), o)
			models[i%2].RecordAt(clk.Now(), o)
			tenants[i%len(tenants)].RecordAt(clk.Now(), o)
		}
		for range 5 {
			static.RecordAt(clk.Now(), metrics.Observation{Latency: time.Millisecond})
		}
		shed += uint64(s)
		throttled += 2
		clk.Advance(time.Second)
		if _, err := loop.Step(context.Background(), clk.Now()); err != nil {
			t.Fatal(err)
		}
		if err := loop.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		dash.Sample(clk.Now())
	}
	return dash, clk
}

// Keys longer than any table cell, with no place to break but anywhere.
const (
	longModel  = "meta-llama/Llama-3.1-405B-Instruct-FP8-dynamic-quantized-with-a-very-long-deployment-suffix"
	longTenant = "org_01HZX4R8Q7W6V5T4S3R2P1N0MKJHGFEDCBA9876543210zyxwvutsrqponmlkjihgfedcba"
)

// failOnce is the fixture policy's error: one tick (its Scale action still applies).
func failOnce(now time.Time) error {
	if now.Equal(t0.Add(10 * time.Second)) {
		return errors.New(`m.sum: unknown scope "models"`)
	}
	return nil
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec
}

func TestState(t *testing.T) {
	dash, _ := fixture(t)
	rec := get(t, dash, "/api/state")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("api/state: %d %s", rec.Code, rec.Header())
	}
	var st dashboard.State
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Title != "test gateway" || len(st.Targets) != 1 || st.Targets[0].Name != "web" {
		t.Fatalf("state: %+v", st)
	}
	if st.Targets[0].Desired < 10 {
		t.Errorf("desired %d: the loop should have followed the ramp", st.Targets[0].Desired)
	}
	if len(st.Routes) != 2 || st.Routes[0].Key != "/api" || st.Routes[0].RPS < 100 || st.Routes[0].P99ms < 25 {
		t.Errorf("routes: %+v", st.Routes)
	}
	if st.Routes[0].ErrorRate < 0.03 || st.Routes[0].ErrorRate > 0.05 {
		t.Errorf("error rate %v, want 0.04", st.Routes[0].ErrorRate)
	}
	var scopes []string
	for _, sc := range st.Scopes {
		scopes = append(scopes, fmt.Sprintf("%s %d/%d", sc.Scope, len(sc.Keys), sc.Total))
	}
	// Every scope, the library's first; the top 10 of the 15 tenants, busiest first.
	if diff := cmp.Diff([]string{"route 2/2", "model 2/2", "tenant 10/15", "backend 1/1"}, scopes); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	for _, sc := range st.Scopes {
		if !slices.IsSortedFunc(sc.Keys, func(a, b dashboard.KeyStats) int { return -cmpRate(a.RPS, b.RPS) }) {
			t.Errorf("%s keys not by rate: %+v", sc.Scope, sc.Keys)
		}
	}
	if len(st.Backends) != 1 || st.Counters["shed"] != 435 {
		t.Errorf("backends %+v counters %v", st.Backends, st.Counters)
	}
	if len(st.Decisions) == 0 || st.Decisions[0].Direction != "up" || st.Decisions[0].Reason != "10 rps per replica" {
		t.Errorf("decisions: %+v", st.Decisions)
	}
	if st.Refused != 30 || len(st.Refusals) != dashboard.DefaultDecisions || st.Refusals[0].Kind != "scale" ||
		st.Refusals[0].Why != autoscale.WhyInvalid || !strings.Contains(st.Refusals[0].Error, `unknown target "no-such-target"`) ||
		!st.Refusals[0].Time.After(st.Refusals[1].Time) {
		t.Errorf("refused %d: %+v", st.Refused, st.Refusals)
	}
	if st.PolicyErrors != 1 || !strings.Contains(st.LastPolicyError, `unknown scope "models"`) {
		t.Errorf("policy errors %d, last %q", st.PolicyErrors, st.LastPolicyError)
	}
}

func cmpRate(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestHistory(t *testing.T) {
	dash, _ := fixture(t)
	var h struct {
		IntervalMS int64              `json:"interval_ms"`
		Points     []dashboard.Sample `json:"points"`
	}
	if err := json.Unmarshal(get(t, dash, "/api/history").Body.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	if h.IntervalMS != 1000 || len(h.Points) != 30 {
		t.Fatalf("history: interval %d, %d points", h.IntervalMS, len(h.Points))
	}
	for i := 1; i < len(h.Points); i++ {
		if h.Points[i].Time <= h.Points[i-1].Time {
			t.Fatalf("points out of order at %d", i)
		}
	}
	if last := h.Points[29]; last.Routes["/api"].RPS <= h.Points[5].Routes["/api"].RPS {
		t.Errorf("the ramp does not show: %v then %v", h.Points[5].Routes["/api"].RPS, last.Routes["/api"].RPS)
	}
}

func TestHistoryRing(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	dash, err := dashboard.New(dashboard.WithHistory(3), dashboard.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		dash.Sample(clk.Advance(time.Second))
	}
	h := dash.History()
	if len(h) != 3 || h[0].Time != t0.Add(3*time.Second).UnixMilli() || h[2].Time != t0.Add(5*time.Second).UnixMilli() {
		t.Errorf("ring keeps %d points from %d", len(h), h[0].Time)
	}
}

func TestPageAndRoutes(t *testing.T) {
	dash, _ := fixture(t)
	mux := http.NewServeMux()
	mux.Handle("/debug/autoscale/", http.StripPrefix("/debug/autoscale", dash))
	for _, tt := range []struct {
		path   string
		status int
		want   string
	}{
		{"/debug/autoscale/", 200, `<svg id="plot-rps"`},
		{"/debug/autoscale/app.js", 200, "function plot("},
		{"/debug/autoscale/style.css", 200, "svg.plot"},
		{"/debug/autoscale/nope", 404, ""},
		{"/debug/autoscale/assets/index.html", 404, ""},
	} {
		rec := get(t, mux, tt.path)
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.want) {
			t.Errorf("%s: %d, body has %q: %v", tt.path, rec.Code, tt.want, strings.Contains(rec.Body.String(), tt.want))
		}
	}
	// Mounted without the trailing slash, the page redirects to the slashed path so its
	// relative URLs resolve.
	mux2 := http.NewServeMux()
	mux2.Handle("/dash", http.StripPrefix("/dash", dash))
	if rec := get(t, mux2, "/dash"); rec.Code != 301 || rec.Header().Get("Location") != "/dash/" {
		t.Errorf("redirect: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	rec := httptest.NewRecorder()
	dash.ServeHTTP(rec, httptest.NewRequest("POST", "/api/state", nil))
	if rec.Code != 405 {
		t.Errorf("POST: %d", rec.Code)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := dashboard.New(dashboard.WithLoop(nil), dashboard.WithRegistry(nil), dashboard.WithInterval(time.Millisecond),
		dashboard.WithHistory(1), dashboard.WithSpan(0), dashboard.WithTopKeys(0), dashboard.WithCounters(nil), dashboard.WithClock(nil))
	if err == nil {
		t.Fatal("bad options accepted")
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 8 {
		t.Errorf("%d problems reported, want 8:\n%v", n, err)
	}
}

func TestRun(t *testing.T) {
	const interval = time.Second
	clk := metrics.NewManualClock(t0)
	dash, err := dashboard.New(dashboard.WithClock(clk), dashboard.WithInterval(interval))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- dash.Run(ctx) }()
	// step advances the clock by d and waits for Run to arm its next timer, at next.
	step := func(d time.Duration, next time.Time, wantSamples int) {
		t.Helper()
		clk.Advance(d)
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := clk.WaitTimers(wctx, 1); err != nil {
			t.Fatalf("Run armed no timer: %v", err)
		}
		if at, _ := clk.NextTimer(); !at.Equal(next) {
			t.Fatalf("next sample at %v, want %v", at.Sub(t0), next.Sub(t0))
		}
		if got := len(dash.History()); got != wantSamples {
			t.Fatalf("at %v: %d samples, want %d", clk.Now().Sub(t0), got, wantSamples)
		}
	}
	step(0, t0.Add(interval), 1) // one sample at once
	step(interval-time.Millisecond, t0.Add(interval), 1)
	step(time.Millisecond, t0.Add(2*interval), 2)
	step(2*interval+interval/2, t0.Add(4*interval), 4) // a jump past two ticks: two samples
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run returned %v", err)
	}
	if n := clk.Timers(); n != 0 {
		t.Errorf("Run left %d timers", n)
	}
}

// TestBrowser loads the page in headless Chromium and checks that it rendered the state
// and drew every plot with data, then saves a screenshot in the test's temp dir.
func TestBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Missing(t, "chromium", "apt-get install chromium")
	}
	dash, _ := fixture(t)
	mux := http.NewServeMux()
	mux.Handle("/debug/autoscale/", http.StripPrefix("/debug/autoscale", dash))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	url := srv.URL + "/debug/autoscale/"

	dir := t.TempDir()
	browse := func(extra ...string) []byte {
		t.Helper()
		args := append([]string{
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--virtual-time-budget=4000", "--window-size=1000,900",
		}, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, append(args, url)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
		return out
	}

	dom := string(browse("--dump-dom"))
	if m := regexp.MustCompile(`data-updates="(\d+)"`).FindStringSubmatch(dom); m == nil || m[1] == "0" {
		t.Fatalf("the page never loaded its data:\n%.2000s", dom)
	}
	for _, id := range []string{"plot-replicas", "plot-rps", "plot-p99", "plot-rejected"} {
		m := regexp.MustCompile(`<svg id="` + id + `"[^>]*data-points="(\d+)"`).FindStringSubmatch(dom)
		if m == nil {
			t.Errorf("%s: not in the DOM", id)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n < 20 {
			t.Errorf("%s drew %d points, want the sampled history", id, n)
		}
	}
	for _, want := range []string{`data-target="web"`, "<td>/api</td>", "<td>b1</td>", "10 rps per replica", "<polyline", `unknown target "no-such-target"`, "(30 in all)",
		// every scope, with the top-N said
		`data-scope="model"`, "<td>" + longModel + "</td>", `data-scope="tenant"`, "<td>" + longTenant + "</td>", "busiest 10 of 15", `data-scope="backend"`,
		// desired drawn apart from current, both named in the legend
		`class="area" fill=`, `class="dashed" data-series="web desired"`, "web current</span>", "web desired</span>",
		// time on the axes
		`class="time"`, "time (last 2"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, id := range []string{"plot-replicas", "plot-rps", "plot-p99", "plot-rejected"} {
		m := regexp.MustCompile(`<svg id="` + id + `"[^>]*data-time-ticks="(\d+)"`).FindStringSubmatch(dom)
		if n := 0; m == nil || func() bool { n, _ = strconv.Atoi(m[1]); return n < 2 }() {
			t.Errorf("%s has no time ticks on its axis", id)
		}
	}
	if m := regexp.MustCompile(`data-overflow="([^"]*)"`).FindStringSubmatch(dom); m == nil || m[1] != "" {
		t.Errorf("the page overflows its width (long keys not wrapped): %q", m)
	}

	shot := filepath.Join(dir, "dashboard.png")
	browse("--screenshot="+shot, "--window-size=1280,1700", "--hide-scrollbars")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	head := make([]byte, 8)
	if _, err := io.ReadFull(f, head); err != nil || string(head[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG: %q %v", head, err)
	}
	if dst := os.Getenv("AUTOSCALELUA_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(dst, b, 0o644)
	}
	t.Logf("screenshot: %s", shot)
}

// TestModels: the per-model table reads each model's request, TTFT, token and cost
// windows.
func TestModels(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	dash, err := dashboard.New(dashboard.WithRegistry(reg), dashboard.WithModels(dashboard.ModelScopes{}))
	if err != nil {
		t.Fatal(err)
	}
	for s := range 10 {
		for i := range 20 { // 20 requests a second, 1 in 10 rejected
			o := metrics.Observation{Latency: time.Second}
			if i%10 == 0 {
				o.Outcome = metrics.OutcomeRejected
			}
			reg.Window(metrics.ScopeModel, "large").RecordAt(clk.Now(), o)
			reg.Window("ttft", "large").RecordAt(clk.Now(), metrics.Observation{Latency: time.Duration(100+s) * time.Millisecond})
			reg.Window("input_tokens", "large").RecordAt(clk.Now(), metrics.Observation{Value: 300})
			reg.Window("output_tokens", "large").RecordAt(clk.Now(), metrics.Observation{Value: 100})
			reg.Window("cost", "large").RecordAt(clk.Now(), metrics.Observation{Value: 0.001})
		}
		clk.Advance(time.Second)
	}
	dash.Sample(clk.Now())
	st := dash.State()
	if len(st.Models) != 1 {
		t.Fatalf("models: %+v", st.Models)
	}
	m := st.Models[0]
	// Over the 10 s span: 20 req/s, 8,000 tokens/s, 0.02 a second is 1.2 a minute.
	if m.Key != "large" || m.RPS != 20 || m.Rejected != 20 || math.Abs(m.TokensPS-8000) > 1e-6 ||
		math.Abs(m.CostPerMin-1.2) > 1e-9 || m.TTFTP99ms < 100 || m.TTFTP99ms > 115 {
		t.Errorf("model stats: %+v", m)
	}
	// The scopes the model table summarizes get no generic table of their own.
	if len(st.Scopes) != 0 {
		t.Errorf("scopes beside the model table: %+v", st.Scopes)
	}
	if h := dash.History(); len(h) != 1 || h[0].Models["large"].Key != "large" {
		t.Errorf("history: %+v", h)
	}
}
