package middleware_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// TestReroutingReachesTheProxy: a model chosen by the hook, or re-routed by an
// admission route rule, is where a balancer.Proxy behind the middleware sends the
// request, with no dispatch by the host; a route re-routed by a rule goes to that
// route's pool.
func TestReroutingReachesTheProxy(t *testing.T) {
	serve := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	pool, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	var eps []balancer.Endpoint
	for _, m := range []string{"large", "small", "canary"} {
		eps = append(eps, balancer.Endpoint{ID: m, URL: serve(m).URL, Labels: map[string]string{balancer.LabelModel: m}})
	}
	if err := pool.Update(eps); err != nil {
		t.Fatal(err)
	}
	batch, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Update([]balancer.Endpoint{{ID: "batch", URL: serve("batch-pool").URL}}); err != nil {
		t.Fatal(err)
	}
	proxy, err := balancer.NewProxy(pool, balancer.WithRoute("batch", batch))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.CloseIdleConnections()
	adm, err := middleware.NewAdmission(middleware.AdmissionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	h := mustWrap(t, proxy, middleware.WithRegistry(reg), middleware.WithAdmission(adm),
		middleware.WithClassifier(func(r *http.Request) middleware.Keys {
			return middleware.Keys{Route: r.URL.Path, Model: r.Header.Get("X-Model")}
		}),
		middleware.WithHook(func(r *http.Request, k middleware.Keys) (middleware.Keys, middleware.Verdict) {
			if r.Header.Get("X-Cheap") != "" {
				k.Model = "small"
			}
			return k, middleware.Verdict{}
		}))
	front := httptest.NewServer(h)
	defer front.Close()
	ask := func(path string, hdr ...string) string {
		req, _ := http.NewRequest(http.MethodPost, front.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if got := ask("/v1/chat", "X-Model", "large"); got != "large" {
		t.Errorf("classified model: served by %q, want large", got)
	}
	if got := ask("/v1/chat", "X-Model", "large", "X-Cheap", "1"); got != "small" {
		t.Errorf("hook's model: served by %q, want small", got)
	}
	if err := adm.Route("large", "canary", 1); err != nil {
		t.Fatal(err)
	}
	if got := ask("/v1/chat", "X-Model", "large"); got != "canary" {
		t.Errorf("route rule on the model: served by %q, want canary", got)
	}
	if err := adm.Route("/v1/chat", "batch", 1); err != nil {
		t.Fatal(err)
	}
	if got := ask("/v1/chat"); got != "batch-pool" {
		t.Errorf("route rule on the route: served by %q, want batch-pool", got)
	}
	if w, ok := reg.Lookup(metrics.ScopeModel, "canary"); !ok || w.Snapshot(0).Count != 1 {
		t.Errorf("the re-routed request is not recorded under its new model")
	}
}
