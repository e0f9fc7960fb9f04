package kubernetes_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strconv"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/autoscalelua/autoscalelua/actuator/kubernetes"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// noWake is the activator's scaler here: the test plays the controller that makes the
// pod ready, so the wake is only recorded.
type noWake struct{ asked chan int }

func (w noWake) Wake(_ string, n int) error {
	select {
	case w.asked <- n:
	default:
	}
	return nil
}

// An endpoint turning ready in an EndpointSlice on the real API server releases the
// request the activator held.
func TestEndpointSliceReadinessReleasesHeld(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("served"))
	}))
	defer backend.Close()
	_, portText, err := net.SplitHostPort(backend.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portText)
	// The API server refuses loopback addresses in EndpointSlices: the slice names a
	// documentation address, and the proxy's dialer reaches the backend for it.
	const host = "192.0.2.200"
	dialer := &net.Dialer{}
	transport := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, backend.Listener.Addr().String())
	}}
	defer transport.CloseIdleConnections()

	pool, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	wake := noWake{asked: make(chan int, 1)}
	act, err := middleware.NewActivator(wake, map[string]middleware.HoldConfig{"web": {Concurrency: 1, MaxWait: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := kubernetes.NewEndpointSlices(e.client, kubernetes.Service{Namespace: e.ns, Name: "web", PortName: "http"})
	if err != nil {
		t.Fatal(err)
	}
	watchCtx, stop := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- d.Watch(watchCtx, act.Discovered("web", pool.Update)) }()
	defer func() { stop(); <-watched }()

	proxy, err := act.Handler("web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ready := pool.Ready()
		if len(ready) == 0 {
			http.Error(w, "no backend", http.StatusBadGateway)
			return
		}
		if h := ready[0].URL().Hostname(); h != host {
			http.Error(w, "unexpected backend "+h, http.StatusBadGateway)
			return
		}
		p := httputil.NewSingleHostReverseProxy(ready[0].URL())
		p.Transport = transport
		p.ServeHTTP(w, r)
	}))
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(proxy)
	defer gw.Close()

	no, yes := ptr(false), ptr(true)
	ports := []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(port))}}
	slicesAPI := e.client.DiscoveryV1().EndpointSlices(e.ns)
	s, err := slicesAPI.Create(ctx, slice(e.ns, "web-1", "web", ports, ep(host, no, no, nil, "a")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		status int
		waited string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gw.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		_ = resp.Body.Close()
		got <- result{status: resp.StatusCode, waited: resp.Header.Get(middleware.ColdStartHeader)}
	}()
	select {
	case n := <-wake.asked:
		if n != 1 {
			t.Errorf("woke for %d replicas, want 1", n)
		}
	case <-ctx.Done():
		t.Fatal("the held request woke nobody")
	}
	select {
	case r := <-got:
		t.Fatalf("request answered before any endpoint was ready: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}

	s.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: yes, Serving: yes}
	if _, err := slicesAPI.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil || r.status != http.StatusOK || r.waited == "" {
			t.Fatalf("released request: %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("the ready endpoint did not release the held request")
	}
	if st, _ := act.Stats("web"); st.Ready != 1 || st.Forwarded != 1 {
		t.Errorf("stats %+v", st)
	}
}
