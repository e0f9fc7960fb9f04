package luahttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
	h := middleware.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
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
