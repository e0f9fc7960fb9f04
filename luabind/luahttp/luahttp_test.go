package luahttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/luabind/luahttp"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

const script = `
function on_request(req)
  if req:header("X-Api-Key") == "" or req:header("X-Api-Key") == nil then
    return {status = 401, body = "missing key"}
  end
  if req.tenant == "free" and (req.tokens or 0) > 1000 then
    return {status = 429, retry_after = 30}
  end
  if req.path == "/v1/chat" and req:query("model") == "big" then
    return {route = "/v1/chat/big", model = "big", priority = 1, headers = {["X-Routed"] = "big"}}
  end
end
`

func TestHook(t *testing.T) {
	rt, err := luabind.New(luabind.FromString("gate.lua", script))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	var gotKeys middleware.Keys
	h := mustWrap(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		middleware.WithRegistry(reg),
		middleware.WithHook(func(r *http.Request, k middleware.Keys) (middleware.Keys, middleware.Verdict) {
			k, v := luahttp.Hook(rt, luahttp.WithTokens(func(r *http.Request) int64 { return r.ContentLength / 4 }))(r, k)
			gotKeys = k
			return k, v
		}))

	tests := []struct {
		name, target, key, tenant string
		body                      int
		status                    int
		retryAfter, routed, route string
	}{
		{name: "no key", target: "/v1/chat", status: 401},
		{name: "free tenant, big prompt", target: "/v1/chat", key: "k", tenant: "free", body: 8000, status: 429, retryAfter: "30"},
		{name: "re-routed", target: "/v1/chat?model=big", key: "k", tenant: "acme", status: 200, routed: "big", route: "/v1/chat/big"},
		{name: "allowed", target: "/v1/chat", key: "k", tenant: "free", body: 100, status: 200, route: "/v1/chat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tt.target, io.LimitReader(zeros{}, int64(tt.body)))
			req.ContentLength = int64(tt.body)
			if tt.key != "" {
				req.Header.Set("X-Api-Key", tt.key)
			}
			if tt.tenant != "" {
				req.Header.Set("X-Tenant-ID", tt.tenant)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || rec.Header().Get("Retry-After") != tt.retryAfter || rec.Header().Get("X-Routed") != tt.routed {
				t.Errorf("status %d Retry-After %q X-Routed %q", rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("X-Routed"))
			}
			if tt.route != "" && gotKeys.Route != tt.route {
				t.Errorf("route %q, want %q", gotKeys.Route, tt.route)
			}
		})
	}
	if gotKeys.Priority != 0 {
		t.Errorf("priority leaked between requests: %d", gotKeys.Priority)
	}
	if w, ok := reg.Lookup(metrics.ScopeModel, "big"); !ok || w.SnapshotAt(time.Now().Add(time.Second), 0).Count != 1 {
		t.Error("the model the script set was not recorded")
	}
}

func TestNoOnRequest(t *testing.T) {
	rt, err := luabind.New(luabind.FromString("tick.lua", `function on_tick(m, s) return {} end`))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	k, v := luahttp.Hook(rt)(httptest.NewRequest("GET", "/", nil), middleware.Keys{Route: "/"})
	if k.Route != "/" || v.Status != 0 || v.Header != nil {
		t.Errorf("a script without on_request changed the request: %+v %+v", k, v)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func BenchmarkHook(b *testing.B) {
	rt, err := luabind.New(luabind.FromString("gate.lua", script))
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	hook := luahttp.Hook(rt)
	req := httptest.NewRequest("GET", "/v1/chat", nil)
	req.Header.Set("X-Api-Key", "k")
	k := middleware.Keys{Route: "/v1/chat", Tenant: "acme"}
	b.ReportAllocs()
	for b.Loop() {
		hook(req, k)
	}
}

// logScript's on_response writes what it saw into the "log" scope: one window per
// request, keyed by route, tenant, status, bytes and latency, valued by the tokens the
// handler attached.
const logScript = `
function on_request(req)
  if req:header("X-Api-Key") == nil then return {status = 401, body = "missing key"} end
  if req.path == "/v1/big" then return {route = "/v1/chat/big"} end
end
function on_response(req, res)
  observe("log", string.format("%s %s %d %d %.0f %s", req.route, req.tenant, res.status, res.bytes, res.latency,
    tostring(res:value("cached"))), res:value("tokens") or 0)
end
`

// TestResponseHook checks over real HTTP that on_response runs once for every request
// on_request saw (served, rejected by on_request, panicking), with the final keys, the
// status, bytes and latency sent, and the values the handler attached.
func TestResponseHook(t *testing.T) {
	clk := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := luabind.New(luabind.FromString("log.lua", logScript), luabind.WithRegistry(reg), luabind.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clk.Advance(25 * time.Millisecond)
		switch r.URL.Path {
		case "/panic":
			panic(http.ErrAbortHandler)
		case "/v1/big":
			if !middleware.SetValue(w, "tokens", 40) || !middleware.SetValue(w, "cached", true) {
				t.Error("SetValue kept nothing")
			}
			middleware.SetValue(w, "tokens", 42) // replaces
			w.WriteHeader(http.StatusCreated)
		}
		io.WriteString(w, "hello")
	})
	srv := httptest.NewServer(mustWrap(t, handler, middleware.WithRegistry(reg), middleware.WithClock(clk),
		middleware.WithHook(luahttp.Hook(rt)), middleware.WithResponseHook(luahttp.ResponseHook(rt))))
	defer srv.Close()

	for _, c := range []struct{ path, key, tenant string }{
		{"/v1/big", "k", "acme"}, {"/v1/chat", "", "free"}, {"/v1/chat", "k", "free"}, {"/panic", "k", "acme"},
	} {
		req, err := http.NewRequest("GET", srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.key != "" {
			req.Header.Set("X-Api-Key", c.key)
		}
		req.Header.Set("X-Tenant-ID", c.tenant)
		res, err := srv.Client().Do(req)
		if err != nil {
			if c.path == "/panic" {
				continue // the server aborts the response
			}
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	want := []string{
		"/panic acme 500 0 25 nil",
		"/v1/chat free 200 5 25 nil",
		"/v1/chat free 401 12 0 nil",
		"/v1/chat/big acme 201 5 25 true",
	}
	if diff := cmp.Diff(want, reg.Keys("log")); diff != "" {
		t.Errorf("on_response calls (-want +got):\n%s", diff)
	}
	if w, ok := reg.Lookup("log", want[3]); !ok || w.SnapshotAt(clk.Now(), 0).Value != 42 {
		t.Errorf("tokens the handler attached: %+v", w.SnapshotAt(clk.Now(), 0))
	}
	if f := rt.Stats().Failures; len(f) != 0 {
		t.Errorf("hook failures: %v", f)
	}
}

// BenchmarkResponseHook prices the log phase per request through the middleware:
// "none" has no response hook, "no-on_response" the hook with a script that defines
// only on_request (it must allocate nothing more), "on_response" a script that reads
// the response and a value.
func BenchmarkResponseHook(b *testing.B) {
	for _, c := range []struct {
		name, src string
		hook      bool
	}{
		{"none", `function on_request(req) end`, false},
		{"no-on_response", `function on_request(req) end`, true},
		{"on_response", `function on_request(req) end
function on_response(req, res) if res.status > 500 and res:value("tokens") then error("x") end end`, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			rt, err := luabind.New(luabind.FromString("b.lua", c.src))
			if err != nil {
				b.Fatal(err)
			}
			defer rt.Close()
			reg, err := metrics.NewRegistry()
			if err != nil {
				b.Fatal(err)
			}
			opts := []middleware.Option{middleware.WithRegistry(reg), middleware.WithHook(luahttp.Hook(rt))}
			if c.hook {
				opts = append(opts, middleware.WithResponseHook(luahttp.ResponseHook(rt)))
			}
			h := mustWrap(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				middleware.SetValue(w, "tokens", 7)
				w.WriteHeader(http.StatusOK)
			}), opts...)
			req := httptest.NewRequest("GET", "/v1/chat", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark measures the
// middleware rather than a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// mustWrap wraps h with the middleware configured by opts, failing the test on error.
func mustWrap(tb testing.TB, h http.Handler, opts ...middleware.Option) http.Handler {
	tb.Helper()
	w, err := middleware.Wrap(h, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return w
}
