package luabind_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
)

func TestOnRequestDecisions(t *testing.T) {
	tests := []struct {
		name string
		ret  string
		want luabind.Decision
	}{
		{"allow", `nil`, luabind.Decision{}},
		{"reject", `{ status = 429, retry_after = 2.5, body = "slow down" }`, luabind.Decision{Reject: true, Status: 429, RetryAfter: 2500 * time.Millisecond, Body: "slow down"}},
		{"reject without status", `{ reject = true }`, luabind.Decision{Reject: true, Status: 403}},
		{"rewrite", `{ priority = 7, route = "/v2", tenant = "t2", model = "m2" }`, luabind.Decision{Priority: 7, SetPriority: true, Route: "/v2", Tenant: "t2", Model: "m2"}},
		{"headers", `{ headers = { ["x-policy"] = "a" } }`, luabind.Decision{Headers: []luabind.Header{{Name: "X-Policy", Value: "a"}}}},
		{"view fields", `{ body = table.concat({ req.method, req.path, req.host, req.tenant, req.route, req.model, req.priority, req.content_length, req.tokens, req:header("x-a"), req.header("X-A"), req:query("q"), tostring(req:query("none")) }, ",") , status = 400 }`,
			luabind.Decision{Reject: true, Status: 400, Body: "POST,/p,h,acme,/r,gpt,3,12,40,va,va,a b,nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newRT(t, "function on_request(req) return "+tt.ret+" end")
			req := &luabind.Request{Method: "POST", Path: "/p", Host: "h", Tenant: "acme", Route: "/r", Model: "gpt",
				Priority: 3, ContentLength: 12, Tokens: 40, Header: http.Header{"X-A": {"va"}}, RawQuery: "q=a+b&x=1"}
			got, err := rt.OnRequest(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHeaderNames reads more distinct header names per call than reqView keeps
// canonical forms of, in every case, over several calls on one VM: each read must
// find its header (or nil) whatever the cache holds.
func TestHeaderNames(t *testing.T) {
	rt := newRT(t, `function on_request(req)
  local got = {}
  for _, n in ipairs({"x-a", "X-B", "x-c", "X-D", "x-e", "X-A", "x-b", "missing", "x-a", "X-E", "Content-Type", "content-type"}) do
    got[#got + 1] = tostring(req:header(n))
  end
  return { status = 400, body = table.concat(got, ",") }
end`)
	req := &luabind.Request{Header: http.Header{"X-A": {"1"}, "X-B": {"2"}, "X-C": {"3"}, "X-D": {"4"}, "X-E": {"5"}, "Content-Type": {"t"}}}
	for i := range 3 {
		d, err := rt.OnRequest(context.Background(), req)
		if want := "1,2,3,4,5,1,2,nil,1,5,t,t"; err != nil || d.Body != want {
			t.Fatalf("call %d: %q, %v; want %q", i, d.Body, err, want)
		}
	}
}

func TestFailClosed(t *testing.T) {
	rt := newRT(t, `function on_request(req) error("x") end
function on_tick(m, s) error("y") end`,
		luabind.WithFailMode(luabind.HookRequest, luabind.FailClosed), luabind.WithFailMode(luabind.HookTick, luabind.FailClosed))
	d, err := rt.OnRequest(context.Background(), &luabind.Request{})
	if !d.Reject || d.Status != 503 || !errors.Is(err, luabind.ErrFailClosed) {
		t.Errorf("on_request: %+v, %v; want a 503 and ErrFailClosed", d, err)
	}
	acts, err := rt.Decide(context.Background(), &autoscale.Input{Now: time.Unix(10, 0)})
	if acts != nil || !errors.Is(err, luabind.ErrFailClosed) || !errors.Is(err, luabind.ErrScript) {
		t.Errorf("on_tick: %v, %v; want ErrFailClosed wrapping ErrScript", acts, err)
	}
}

func TestPick(t *testing.T) {
	bs := []luabind.BackendView{
		{ID: "a", InFlight: 9, EWMA: 30 * time.Millisecond, Healthy: true, Weight: 1, Labels: map[string]string{"zone": "x"}},
		{ID: "b", InFlight: 1, EWMA: 10 * time.Millisecond, Healthy: true, Weight: 1, Labels: map[string]string{"zone": "y"}},
		{ID: "c", InFlight: 0, Healthy: false},
	}
	tests := []struct {
		name      string
		body      string
		want      int
		fails     uint64
		fallbacks uint64
	}{
		{"least in flight by index", `local best for i, b in ipairs(backends) do if b.healthy and (best == nil or b.in_flight < backends[best].in_flight) then best = i end end return best`, 1, 0, 0},
		{"by id", `return "a"`, 0, 0, 0},
		{"by label", `for _, b in ipairs(backends) do if b.labels.zone == "y" then return b.id end end`, 1, 0, 0},
		{"ewma ms", `if backends[1].ewma == 30 then return 1 end`, 0, 0, 0},
		{"nil", `return nil`, -1, 0, 1},
		{"out of range", `return 4`, -1, 1, 1},
		{"unknown id", `return "z"`, -1, 1, 1},
		{"unhealthy", `return 3`, -1, 1, 1},
		{"error", `error("x")`, -1, 1, 1},
		{"mutating a view", `backends[1].weight = 100`, -1, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newRT(t, "function pick(req, backends) "+tt.body+" end")
			got, _ := rt.Pick(context.Background(), &luabind.Request{}, bs)
			if got != tt.want {
				t.Errorf("pick = %d, want %d", got, tt.want)
			}
			st := rt.Stats()
			if st.Total(luabind.HookPick) != tt.fails || st.PickFallbacks != tt.fallbacks {
				t.Errorf("failures %d, fallbacks %d; want %d, %d", st.Total(luabind.HookPick), st.PickFallbacks, tt.fails, tt.fallbacks)
			}
		})
	}
}

func TestBalancerPick(t *testing.T) {
	pool, err := balancer.New(balancer.WithClock(metrics.NewManualClock(time.Unix(100, 0))))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "b1", URL: "http://10.0.0.1"}, {ID: "b2", URL: "http://10.0.0.2"}}); err != nil {
		t.Fatal(err)
	}
	rt := newRT(t, `function pick(req, backends) if req.path == "/two" then return "b2" end return 1 end`)
	pool.SetPickFunc(rt.BalancerPick(10 * time.Second))
	for path, want := range map[string]string{"/two": "b2", "/one": "b1"} {
		hr, _ := http.NewRequest("GET", "http://x"+path, nil)
		res, err := pool.Pick(&balancer.Request{HTTP: hr})
		if err != nil {
			t.Fatal(err)
		}
		if res.Backend.ID() != want {
			t.Errorf("%s: picked %s, want %s", path, res.Backend.ID(), want)
		}
	}
}

func TestOnResponseObserve(t *testing.T) {
	clock := metrics.NewManualClock(time.Unix(1000, 0))
	reg, _ := metrics.NewRegistry(metrics.WithClock(clock))
	rt := newRT(t, `function on_response(req, res)
  if res.status >= 500 or res.latency > 100 then observe("slow", req.route, res:value("tokens") + res.bytes) end
end`, luabind.WithRegistry(reg))
	err := rt.OnResponse(context.Background(), &luabind.Request{Route: "/r"},
		&luabind.Response{Status: 200, Latency: 150 * time.Millisecond, Bytes: 2, Values: map[string]any{"tokens": 40}})
	if err != nil {
		t.Fatal(err)
	}
	w, ok := reg.Lookup("slow", "/r")
	if !ok {
		t.Fatal("observe recorded nothing")
	}
	if s := w.SnapshotAt(clock.Now(), 0); s.Count != 1 || s.Value != 42 {
		t.Errorf("snapshot count %d value %v, want 1 and 42", s.Count, s.Value)
	}
	// The library's own scopes are refused.
	rt2 := newRT(t, `function on_response(req, res) observe("route", "/r", 1) end`, luabind.WithRegistry(reg))
	if err := rt2.OnResponse(context.Background(), &luabind.Request{}, &luabind.Response{}); err == nil || !strings.Contains(err.Error(), "library's") {
		t.Errorf("observe into route scope: %v", err)
	}
}

func TestOnTickActionsAndState(t *testing.T) {
	clock := metrics.NewManualClock(time.Unix(1000, 0))
	rt := newRT(t, `
local as = require("autoscale")
function on_tick(m, state)
  state.n = (state.n or 0) + 1
  local t = m.target("web")
  return {
    as.scale("web", t.replicas + state.n, "because", { panic = true }),
    set_weight("p", "b1", 5), eject("p", "b2", 30, "5xx"),
    shed("/x", 0.5, 3), throttle("acme", 10), route("/a", "/b", 0.25),
    budget("acme", nil, 60000), as.budget("batch", "llama", 6000, 500),
  }
end`, luabind.WithClock(clock))
	in := &autoscale.Input{Now: clock.Now(), Targets: []autoscale.TargetState{{Name: "web", Replicas: 2}}}
	var got []autoscale.Action
	for range 2 {
		var err error
		if got, err = rt.Decide(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	want := []autoscale.Action{
		autoscale.Scale{Target: "web", Replicas: 4, Reason: "because", Panic: true},
		autoscale.SetWeight{Pool: "p", Backend: "b1", Weight: 5},
		autoscale.Eject{Pool: "p", Backend: "b2", Duration: 30 * time.Second, Reason: "5xx"},
		autoscale.Shed{Route: "/x", Fraction: 0.5, RetryAfter: 3 * time.Second},
		autoscale.Throttle{Tenant: "acme", RPS: 10, Burst: 10},
		autoscale.Route{From: "/a", To: "/b", Fraction: 0.25},
		autoscale.Budget{Tenant: "acme", TokensPerMinute: 60000},
		autoscale.Budget{Tenant: "batch", Model: "llama", TokensPerMinute: 6000, Burst: 500},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	// The state survives a reload.
	if err := rt.Reload(luabind.FromString("v2.lua", `function on_tick(m, state) return scale("web", state.n) end`)); err != nil {
		t.Fatal(err)
	}
	got, err := rt.Decide(context.Background(), in)
	if err != nil || len(got) != 1 || got[0].(autoscale.Scale).Replicas != 2 {
		t.Errorf("after reload: %v, %v; want scale to 2 (state.n)", got, err)
	}
}

func TestInvalidActionsFailTheTick(t *testing.T) {
	for _, body := range []string{`scale("web", -1)`, `scale("web", 1.5)`, `shed("/x", 2)`, `eject("p", "b", 0)`, `budget("acme", nil, -1)`, `budget("", nil, 10)`, `budget("acme", "m", 1.5)`, `{ 1 }`, `"scale"`, `{ scale("a", 1), x = 1 }`} {
		t.Run(body, func(t *testing.T) {
			rt := newRT(t, "function on_tick(m, state) return "+body+" end")
			acts, err := rt.Decide(context.Background(), &autoscale.Input{Now: time.Unix(1, 0)})
			// Fail-open: no actions, and the failure reaches the loop as a skip.
			if acts != nil || !errors.Is(err, autoscale.ErrPolicySkipped) {
				t.Errorf("fail-open tick returned %v, %v; want no actions and ErrPolicySkipped", acts, err)
			}
			if rt.Stats().Total(luabind.HookTick) != 1 {
				t.Errorf("failures %v", rt.Stats().Failures)
			}
		})
	}
}

func TestReload(t *testing.T) {
	rt := newRT(t, `function on_request(req) return { status = 401 } end`)
	tests := []struct {
		name     string
		code     string
		sentinel error
		line     int
	}{
		{"syntax", "function on_request(req)\n  return {\nend", luabind.ErrCompile, 3},
		{"main chunk error", "local x = 1\nerror('at load')", luabind.ErrCompile, 2},
		{"self_test fails", "function on_request(req) end\nfunction self_test()\n  assert(1 == 2, 'math')\nend", luabind.ErrSelfTest, 3},
		{"self_test returns false", "function self_test() return false end", luabind.ErrSelfTest, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rt.Reload(luabind.FromString("new.lua", tt.code))
			var se *luabind.ScriptError
			if !errors.Is(err, tt.sentinel) || !errors.As(err, &se) || se.Line != tt.line || se.Script != "new.lua" {
				t.Fatalf("err = %v (%#v); want %v at line %d", err, se, tt.sentinel, tt.line)
			}
			d, _ := rt.OnRequest(context.Background(), &luabind.Request{})
			if d.Status != 401 {
				t.Errorf("the old script stopped running: %+v", d)
			}
		})
	}
	if err := rt.Reload(luabind.FromString("ok.lua", `function on_request(req) end`)); err != nil {
		t.Fatal(err)
	}
	if d, _ := rt.OnRequest(context.Background(), &luabind.Request{}); d.Reject {
		t.Errorf("the new script is not running")
	}
	if name, gen := rt.Script(); name != "ok.lua" || gen < 2 {
		t.Errorf("script %s gen %d", name, gen)
	}
	if st := rt.Stats(); st.Reloads != 1 || st.ReloadFailures != 4 {
		t.Errorf("reloads %d failures %d", st.Reloads, st.ReloadFailures)
	}
}

func TestPrintClockConfigAndLogPacing(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	clock := metrics.NewManualClock(time.Unix(500, 0))
	rt, err := luabind.New(luabind.FromString("p.lua", `
function on_request(req)
  print("now", now(), config.limit, config.names[2], config.window)
  error("fail")
end`), luabind.WithLogger(log), luabind.WithClock(clock), luabind.WithLogEvery(time.Minute),
		luabind.WithConfig(map[string]any{"limit": 5, "names": []string{"a", "b"}, "window": 2 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	for range 5 {
		rt.OnRequest(context.Background(), &luabind.Request{})
	}
	clock.Advance(time.Minute)
	rt.OnRequest(context.Background(), &luabind.Request{})
	out := buf.String()
	if !strings.Contains(out, "msg=\"now\\t500\\t5\\tb\\t2\"") {
		t.Errorf("print output missing:\n%s", out)
	}
	if n := strings.Count(out, "lua hook failed"); n != 2 {
		t.Errorf("%d failure log lines for 6 failures over a minute, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "suppressed=4") {
		t.Errorf("the second log line does not count the 4 suppressed:\n%s", out)
	}
}

func TestWatcher(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.lua")
	if err := os.WriteFile(path, []byte(`function on_request(req) return { status = 401 } end`), 0o600); err != nil {
		t.Fatal(err)
	}
	src, _ := luabind.FromFile(path)
	rt := newRT(t, src.Code)
	w, err := luabind.NewWatcher(rt, path)
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error, 16)
	w.OnReload = func(err error) { reloaded <- err }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// The watch is set up asynchronously; rewrite until a reload is seen.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if err := os.WriteFile(path, []byte(`function on_request(req) end`), 0o600); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-reloaded:
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := rt.OnRequest(context.Background(), &luabind.Request{}); d.Reject {
				t.Fatal("reloaded, but the old script runs")
			}
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("no reload within 10s")
		}
	}
}

// listReader is a Reader whose keys and rates the test changes between ticks.
type listReader struct {
	keys []string
	rate float64
}

func (r *listReader) Snapshot(_ metrics.Scope, key string, _ time.Duration) (metrics.Snapshot, bool) {
	return metrics.Snapshot{Rate: r.rate, Count: uint64(len(key))}, true
}

func (r *listReader) Keys(metrics.Scope) []string { return r.keys }

// TestOnTickKeysAndKeptSnapshots checks that m.keys follows the reader from tick to tick
// (its Lua strings are reused while the list is unchanged), that the list it returns is
// the script's to change, and that snapshots kept in state keep their numbers after
// later ticks took many more snapshots.
func TestOnTickKeysAndKeptSnapshots(t *testing.T) {
	rt := newRT(t, `
function on_tick(m, state)
  local ks = m.keys("backend")
  local n, sum = #ks, 0
  for _, k in ipairs(ks) do sum = sum + m.backend(k).rps end
  ks[1] = "scribbled"
  if not state.kept then state.kept = m.backend("first") end
  for i = 1, 200 do m.backend("x") end -- several blocks of snapshots
  return scale("web", n * 1000 + math.floor(sum) + state.kept.rps * 100000)
end`)
	r := &listReader{keys: []string{"a", "b"}, rate: 1}
	for i, tc := range []struct {
		keys []string
		rate float64
		want int
	}{
		{[]string{"a", "b"}, 1, 100000 + 2002},
		{[]string{"a", "b"}, 2, 100000 + 2004},
		{[]string{"a", "b", "c"}, 3, 100000 + 3009},
		{[]string{"c"}, 4, 100000 + 1004},
	} {
		r.keys, r.rate = tc.keys, tc.rate
		in := &autoscale.Input{Now: time.Unix(1, 0), Metrics: autoscale.NewSnapshot(time.Unix(1, 0), r)} // a tick's snapshot
		acts, err := rt.Decide(context.Background(), in)
		if err != nil || len(acts) != 1 {
			t.Fatalf("tick %d: %v, %v", i, acts, err)
		}
		if got := acts[0].(autoscale.Scale).Replicas; got != tc.want {
			t.Errorf("tick %d: scale to %d, want %d", i, got, tc.want)
		}
	}
}

// countingReader serves fixed snapshots of one scope by key and counts the snapshots
// it was asked for.
type countingReader struct {
	scope metrics.Scope
	keys  []string
	snaps map[string]metrics.Snapshot
	reads int
}

func (r *countingReader) Snapshot(scope metrics.Scope, key string, span time.Duration) (metrics.Snapshot, bool) {
	r.reads++
	s, ok := r.snaps[key]
	if scope != r.scope {
		return metrics.Snapshot{}, false
	}
	if span > 0 {
		s.Rate *= 10 // a span reads differently, to tell passes apart
	}
	return s, ok
}

func (r *countingReader) Keys(scope metrics.Scope) []string {
	if scope != r.scope {
		return nil
	}
	return r.keys
}

// TestOnTickAggregates checks m.sum, m.max and m.min: their values and keys, ties,
// keys without a window, empty scopes, unknown scopes, spans, bad fields, and that the aggregates of
// one scope and span read its windows once per tick (the tick's snapshot keeps the
// pass), however many windows the scope has.
func TestOnTickAggregates(t *testing.T) {
	rt := newRT(t, `
function on_tick(m, state)
  assert(m.sum("backend", "rps") == 6, "sum")
  local v, k = m.max("backend", "rps")
  assert(v == 3 and k == "c", "max " .. tostring(v) .. " " .. tostring(k))
  v, k = m.min("backend", "rps")
  assert(v == 1 and k == "a", "min")
  v, k = m.max("backend", "p99")
  assert(v == 20 and k == "a", "a tie goes to the first key: " .. tostring(k))
  assert(m.sum("backend", "count") == 9, "count")
  assert(m.sum("backend", "rps", 6) == 60, "span")
  assert(m.sum("model", "rps") == 0, "empty sum")
  assert(m.max("model", "rps") == nil and m.min("model", "rps") == nil, "empty max")
  for _, f in ipairs({ m.sum, m.max, m.min }) do
    local ok, err = pcall(f, "nothing", "rps")
    assert(not ok and string.find(err, 'unknown scope "nothing"'), tostring(err))
  end
  for _, bad in ipairs({ "ok", "nonsense" }) do
    local ok, err = pcall(m.sum, "backend", bad)
    assert(not ok and string.find(err, "not a numeric snapshot field"), tostring(err))
  end
  local ok, err = pcall(m.max, "backend", "rps", -1)
  assert(not ok and string.find(err, "positive number of seconds"), tostring(err))
  return scale("web", 1)
end`, luabind.WithFailMode(luabind.HookTick, luabind.FailClosed))
	r := &countingReader{
		scope: metrics.ScopeBackend,
		keys:  []string{"a", "b", "c", "gone"},
		snaps: map[string]metrics.Snapshot{
			"a": {Rate: 1, Count: 2, P99: 20 * time.Millisecond},
			"b": {Rate: 2, Count: 3, P99: 5 * time.Millisecond},
			"c": {Rate: 3, Count: 4, P99: 20 * time.Millisecond},
		},
	}
	in := &autoscale.Input{Now: time.Unix(1, 0), Metrics: autoscale.NewSnapshot(time.Unix(1, 0), r), Targets: []autoscale.TargetState{{Name: "web", Min: 1, Max: 10}}}
	for tick := range 2 {
		r.reads = 0
		in.Metrics = autoscale.NewSnapshot(in.Now, r) // a new tick
		if _, err := rt.Decide(context.Background(), in); err != nil {
			t.Fatalf("tick %d: %v", tick, err)
		}
		// Two passes of four keys (the whole window and 6 s): the nine aggregates of
		// "backend" read each window once per span, again on the next tick.
		if r.reads != 8 {
			t.Errorf("tick %d: %d snapshots read, want 8", tick, r.reads)
		}
	}

	// A scope of 5,000 windows is read once too.
	big := &countingReader{scope: metrics.ScopeTenant, snaps: map[string]metrics.Snapshot{}}
	for i := range 5000 {
		k := fmt.Sprintf("k%05d", i)
		big.keys = append(big.keys, k)
		big.snaps[k] = metrics.Snapshot{Rate: 1}
	}
	rt = newRT(t, `
function on_tick(m, state)
  assert(m.sum("tenant", "rps") == 5000, "sum")
  local v, k = m.max("tenant", "rps")
  assert(v == 1 and k == "k00000", "max")
  return scale("web", 1)
end`, luabind.WithFailMode(luabind.HookTick, luabind.FailClosed))
	in.Metrics = autoscale.NewSnapshot(in.Now, big)
	if _, err := rt.Decide(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if big.reads != 5000 {
		t.Errorf("%d snapshots read, want 5000", big.reads)
	}
}

// TestOnTickAggregatesMatchTheLoop checks, over a registry's live windows (read through
// the RegistryReader's one-pass Scope), that the aggregates agree with a Lua loop over
// m.keys.
func TestOnTickAggregatesMatchTheLoop(t *testing.T) {
	clock := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		w := reg.Window(metrics.ScopeRoute, fmt.Sprintf("/r%02d", (i*37)%50))
		for j := range 1 + i%7 {
			w.RecordAt(clock.Now().Add(time.Duration(j)*time.Second), metrics.Observation{
				Latency: time.Duration(1+(i*j)%40) * time.Millisecond, Value: float64(i),
			})
		}
	}
	rt := newRT(t, `
function on_tick(m, state)
  for _, f in ipairs({ "rps", "p99", "mean", "value", "count" }) do
    local sum, hi, lo, hik, lok = 0, nil, nil, nil, nil
    for _, k in ipairs(m.keys("route")) do
      local v = m.route(k)[f]
      sum = sum + v
      if hi == nil or v > hi then hi, hik = v, k end
      if lo == nil or v < lo then lo, lok = v, k end
    end
    assert(math.abs(m.sum("route", f) - sum) < 1e-9, f .. " sum")
    local v, k = m.max("route", f)
    assert(v == hi and k == hik, f .. " max")
    v, k = m.min("route", f)
    assert(v == lo and k == lok, f .. " min")
  end
  return scale("web", 1)
end`, luabind.WithFailMode(luabind.HookTick, luabind.FailClosed))
	in := &autoscale.Input{Now: clock.Now().Add(10 * time.Second), Targets: []autoscale.TargetState{{Name: "web", Min: 1, Max: 10}},
		Metrics: autoscale.NewSnapshot(clock.Now().Add(10*time.Second), autoscale.NewRegistryReader(reg, clock.Now().Add(10*time.Second)))}
	if _, err := rt.Decide(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}
