package luabind_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/luabind"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// TestProxyHook checks over real HTTP that a balancer.Proxy with the runtime's
// ProxyHook runs on_response once per request, with the backend, the status and bytes
// sent, the latency, and the values the host read from the backend's response.
func TestProxyHook(t *testing.T) {
	clk := metrics.NewManualClock(time.Unix(1_700_000_000, 0))
	reg, err := metrics.NewRegistry(metrics.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clk.Advance(30 * time.Millisecond)
		w.Header().Set("X-Usage-Tokens", "17")
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "hello")
	}))
	defer backend.Close()
	pool, err := balancer.New(balancer.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{{ID: "b1", URL: backend.URL}}); err != nil {
		t.Fatal(err)
	}
	rt := newRT(t, `
function on_response(req, res)
  observe("log", string.format("%s %s %s %d %d %.0f", req.method, req.path, res.backend, res.status, res.bytes, res.latency),
    res:value("tokens") or 0)
end`, luabind.WithRegistry(reg), luabind.WithClock(clk))
	tokens := func(_ *http.Request, res *balancer.ProxyResponse) map[string]any {
		n, err := strconv.Atoi(res.Header.Get("X-Usage-Tokens"))
		if err != nil {
			return nil
		}
		return map[string]any{"tokens": n}
	}
	proxy, err := balancer.NewProxy(pool, balancer.WithProxyHook(rt.ProxyHook(tokens)))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.CloseIdleConnections()
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	for _, path := range []string{"/hello", "/missing"} {
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	want := []string{"GET /hello b1 200 5 30", "GET /missing b1 404 19 30"}
	if diff := cmp.Diff(want, reg.Keys("log")); diff != "" {
		t.Errorf("on_response calls (-want +got):\n%s", diff)
	}
	if w, ok := reg.Lookup("log", want[0]); !ok || w.SnapshotAt(clk.Now(), 0).Value != 17 {
		t.Error("the tokens read from the backend's response did not reach res:value")
	}
	if f := rt.Stats().Failures; len(f) != 0 {
		t.Errorf("hook failures: %v", f)
	}
}

// BenchmarkProxyHook prices the runtime's proxy hook per request: nothing for a script
// without on_response, and one on_response call that reads the response for one with.
func BenchmarkProxyHook(b *testing.B) {
	for _, c := range []struct{ name, src string }{
		{"no-on_response", `function on_request(req) end`},
		{"on_response", `function on_response(req, res) if res.status > 500 and res.backend == "x" then error("x") end end`},
	} {
		b.Run(c.name, func(b *testing.B) {
			rt, err := luabind.New(luabind.FromString("b.lua", c.src))
			if err != nil {
				b.Fatal(err)
			}
			defer rt.Close()
			hook := rt.ProxyHook(nil)
			req := httptest.NewRequest("GET", "/v1/chat", nil)
			res := balancer.ProxyResponse{Backend: "b1", Status: http.StatusOK, Latency: time.Millisecond, Bytes: 512}
			b.ReportAllocs()
			for b.Loop() {
				hook(req, res)
			}
		})
	}
}
