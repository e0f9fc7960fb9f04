package balancer_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// TestProxyHook checks over real HTTP that the hook runs once per request with what
// the client got: a backend's answer, the proxy's 502 for a backend that refuses
// connections, and its 503 when no backend is ready.
func TestProxyHook(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Usage", "9")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, strings.Repeat("x", 100))
	}))
	defer up.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connections are refused

	type call struct {
		Path, Backend, Usage string
		Status               int
		Bytes                int64
		Err                  bool
	}
	var mu sync.Mutex
	var calls []call
	hook := func(r *http.Request, res balancer.ProxyResponse) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{r.URL.Path, res.Backend, res.Header.Get("X-Usage"), res.Status, res.Bytes, res.Err != nil})
	}
	for _, c := range []struct {
		name      string
		endpoints []balancer.Endpoint
		want      call
	}{
		{"served", []balancer.Endpoint{{ID: "up", URL: up.URL}}, call{"/served", "up", "9", http.StatusAccepted, 100, false}},
		{"refused", []balancer.Endpoint{{ID: "down", URL: downURL}}, call{"/refused", "down", "", http.StatusBadGateway, int64(len("Bad Gateway\n")), true}},
		{"none", nil, call{"/none", "", "", http.StatusServiceUnavailable, int64(len("Service Unavailable\n")), false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pool, _ := newPool(t, 0)
			if err := pool.Update(c.endpoints); err != nil {
				t.Fatal(err)
			}
			px, err := balancer.NewProxy(pool, balancer.WithRetries(0), balancer.WithProxyHook(hook))
			if err != nil {
				t.Fatal(err)
			}
			defer px.CloseIdleConnections()
			srv := httptest.NewServer(px)
			defer srv.Close()
			calls = nil
			res, err := srv.Client().Get(srv.URL + "/" + c.name)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff([]call{c.want}, calls, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("hook calls (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := balancer.NewProxy(nil, balancer.WithProxyHook(nil)); !errors.Is(err, balancer.ErrInvalidConfig) || !strings.Contains(err.Error(), "nil proxy hook") {
		t.Errorf("a nil hook: %v", err)
	}
}
