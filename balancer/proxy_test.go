package balancer_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
)

func TestProxyForwards(t *testing.T) {
	type seen struct {
		Path, Host, XFF, XFHost, XFProto string
	}
	got := make(chan seen, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.Path, r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto")}
	}))
	defer be.Close()
	tests := []struct {
		name string
		opts []balancer.ProxyOption
		want func(front, backend string) seen
	}{
		{"default drops spoofed forwarding", nil, func(front, backend string) seen {
			return seen{"/api/v1/x", backend, "127.0.0.1", front, "http"}
		}},
		{"trusted chain and preserved host", []balancer.ProxyOption{balancer.WithTrustForwarded(), balancer.WithPreserveHost()}, func(front, backend string) seen {
			return seen{"/api/v1/x", front, "6.6.6.6, 127.0.0.1", front, "http"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := balancer.New()
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Update([]balancer.Endpoint{{ID: "a", URL: be.URL + "/api"}}); err != nil {
				t.Fatal(err)
			}
			px, err := balancer.NewProxy(p, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer px.CloseIdleConnections()
			front := httptest.NewServer(px)
			defer front.Close()
			req, _ := http.NewRequest(http.MethodGet, front.URL+"/v1/x", nil)
			req.Header.Set("X-Forwarded-For", "6.6.6.6")
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			frontHost := strings.TrimPrefix(front.URL, "http://")
			if diff := cmp.Diff(tt.want(frontHost, strings.TrimPrefix(be.URL, "http://")), <-got); diff != "" {
				t.Errorf("backend saw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProxyNoBackend(t *testing.T) {
	_, _, front := proxyTo(t, nil, nil, balancer.WithRetryAfter(3*time.Second))
	res, err := http.Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	got := []string{fmt.Sprint(res.StatusCode), res.Header.Get("Retry-After"), string(body)}
	if diff := cmp.Diff([]string{"503", "3", "Service Unavailable\n"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestProxyRetriesConnectionFailures(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	dead := newBackend(t, "dead")
	dead.Close() // its port now refuses connections
	pool, px, front := proxyTo(t, []*backend{a, b, dead}, []balancer.Option{balancer.WithAlgorithm(balancer.RoundRobin{})})
	for i := range 30 {
		if code, _ := get(t, front.Client(), front.URL); code != 200 {
			t.Fatalf("GET %d: status %d, want 200 after a retry", i, code)
		}
	}
	if got := px.Stats().Retries; got == 0 {
		t.Errorf("no retries counted")
	}
	if a.count()+b.count() != 30 {
		t.Errorf("live backends served %d, want 30", a.count()+b.count())
	}

	// A POST is not idempotent: no retry, 502 without the error's text.
	pool.SetPickFunc(func(_ *balancer.Request, bs []*balancer.Backend) (int, error) {
		for i, b := range bs {
			if b.ID() == "dead" {
				return i, nil
			}
		}
		return -1, errors.New("dead is ejected")
	})
	// The dial failures above may have ejected it; bring it back so the pick can name it.
	if err := pool.Uneject("dead"); err != nil {
		t.Fatal(err)
	}
	if len(pool.Ready()) != 3 {
		t.Fatalf("%d backends ready after unejecting dead, want 3", len(pool.Ready()))
	}
	before := px.Stats().Retries
	res, err := front.Client().Post(front.URL, "text/plain", strings.NewReader("order"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 502 || string(body) != "Bad Gateway\n" {
		t.Errorf("POST to a dead backend: %d %q, want 502 %q", res.StatusCode, body, "Bad Gateway\n")
	}
	if px.Stats().Retries != before {
		t.Errorf("POST was retried")
	}
}

func TestProxyNoRetriesWhenOff(t *testing.T) {
	dead := newBackend(t, "dead")
	dead.Close()
	_, px, front := proxyTo(t, []*backend{dead}, nil, balancer.WithRetries(0))
	if code, _ := get(t, front.Client(), front.URL); code != 502 {
		t.Errorf("status %d, want 502", code)
	}
	if px.Stats().Retries != 0 {
		t.Errorf("retried with retries off")
	}
}

func TestProxyTimeoutIs504(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 20 * time.Millisecond
	defer tr.CloseIdleConnections()
	p, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update([]balancer.Endpoint{{ID: "slow", URL: slow.URL}}); err != nil {
		t.Fatal(err)
	}
	px, err := balancer.NewProxy(p, balancer.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(px)
	defer front.Close()
	res, err := http.Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 504 || string(body) != "Gateway Timeout\n" {
		t.Errorf("got %d %q, want 504 %q", res.StatusCode, body, "Gateway Timeout\n")
	}
	b, _ := p.Lookup("slow")
	if s := b.Window().Snapshot(0); s.Errors != 1 {
		t.Errorf("window errors = %d, want 1", s.Errors)
	}
}

func TestProxyStreams(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		length      bool // the backend sends a Content-Length
		opts        []balancer.ProxyOption
	}{
		{"server-sent events", "text/event-stream", false, nil},
		{"chunked without content length", "application/x-ndjson", false, nil},
		{"content length with flush interval -1", "text/plain", true, []balancer.ProxyOption{balancer.WithFlushInterval(-1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				if tt.length {
					w.Header().Set("Content-Length", fmt.Sprint(len("data: first\n\ndata: last\n\n")))
				}
				fmt.Fprint(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				<-release
				fmt.Fprint(w, "data: last\n\n")
			}))
			defer be.Close()
			p, err := balancer.New()
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Update([]balancer.Endpoint{{ID: "s", URL: be.URL}}); err != nil {
				t.Fatal(err)
			}
			px, err := balancer.NewProxy(p, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer px.CloseIdleConnections()
			front := httptest.NewServer(px)
			defer front.Close()
			// The timeout only turns a missing flush into a failure, not a hang.
			client := &http.Client{Timeout: 10 * time.Second}
			res, err := client.Get(front.URL)
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			defer res.Body.Close()
			r := bufio.NewReader(res.Body)
			// The first event arrives while the backend is still writing: it was
			// flushed through the proxy.
			line, err := r.ReadString('\n')
			close(release)
			if err != nil || line != "data: first\n" {
				t.Fatalf("first line %q, %v", line, err)
			}
			rest, _ := io.ReadAll(r)
			if !strings.Contains(string(rest), "data: last") {
				t.Errorf("rest %q", rest)
			}
		})
	}
}

func TestProxyRecordsOutcomes(t *testing.T) {
	be := newBackend(t, "a")
	be.set(0, 500)
	pool, _, front := proxyTo(t, []*backend{be}, []balancer.Option{balancer.WithOutlier(balancer.Outlier{Consecutive5xx: 3, MaxEjectionPercent: 100})})
	for range 2 {
		if code, _ := get(t, front.Client(), front.URL); code != 500 {
			t.Fatalf("status %d, want the backend's 500 passed through", code)
		}
	}
	b, _ := pool.Lookup("a")
	s := b.Window().Snapshot(0)
	// Failures do not feed the latency average: a backend failing fast must not look
	// fast.
	if s.Count != 2 || s.Errors != 2 || b.InFlight() != 0 || b.PeakLatency(time.Now()) != 0 {
		t.Errorf("window %d/%d errors, in flight %d, peak %v; want 2/2, 0, 0", s.Errors, s.Count, b.InFlight(), b.PeakLatency(time.Now()))
	}
	get(t, front.Client(), front.URL)
	if ej, _ := b.Ejected(time.Now()); !ej {
		t.Errorf("not ejected after 3 consecutive 5xx")
	}
}

func TestProxyPeakEWMAMovesTrafficFromSlowBackend(t *testing.T) {
	// Real backends and a real proxy; the time is a manual clock that each backend
	// advances by its latency, so the latencies the proxy measures are exact and the
	// test does not depend on the machine's load. One request at a time.
	clock := metrics.NewManualClock(t0)
	bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")}
	for _, b := range bs {
		b.clock = clock
		b.set(2*time.Millisecond, 200)
	}
	_, _, front := proxyTo(t, bs, []balancer.Option{balancer.WithAlgorithm(&balancer.PeakEWMA{}), balancer.WithClock(clock), balancer.WithRand(seeded(7))})
	send := func(n int) map[string]int {
		counts := map[string]int{}
		for range n {
			_, id := get(t, front.Client(), front.URL)
			counts[id]++
		}
		return counts
	}
	before := send(150)
	bs[1].set(20*time.Millisecond, 200) // b's latency jumps 10x
	after := send(200)
	shareBefore := float64(before["b"]) / 150
	shareAfter := float64(after["b"]) / 200
	t.Logf("b's share: %.1f%% before, %.1f%% in the 200 requests after its latency jumped 10x (%v)", 100*shareBefore, 100*shareAfter, after)
	if shareBefore < 0.2 {
		t.Fatalf("b had only %.1f%% of the traffic before the jump", 100*shareBefore)
	}
	if moved := 1 - shareAfter/shareBefore; moved < 0.8 {
		t.Errorf("moved %.0f%% of b's traffic away, want at least 80%%", 100*moved)
	}
}

func TestProxyBalancesRealBackends(t *testing.T) {
	tests := []struct {
		name    string
		alg     balancer.Algorithm
		weights []int
		want    []int
	}{
		{"round robin", balancer.RoundRobin{}, []int{1, 1, 1}, []int{100, 100, 100}},
		{"smooth weighted", &balancer.SmoothWeighted{}, []int{3, 2, 1}, []int{150, 100, 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bs []*backend
			for i := range tt.weights {
				bs = append(bs, newBackend(t, fmt.Sprint("be", i)))
			}
			pool, _, front := proxyTo(t, bs, []balancer.Option{balancer.WithAlgorithm(tt.alg)})
			for i, w := range tt.weights {
				if err := pool.SetWeight(bs[i].name, w); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					for range 100 {
						if code, _ := get(t, front.Client(), front.URL); code != 200 {
							t.Errorf("status %d", code)
						}
					}
				})
			}
			wg.Wait()
			var got []int
			for _, b := range bs {
				got = append(got, b.count())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("requests per backend (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProxyHashesOnKey(t *testing.T) {
	bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c"), newBackend(t, "d")}
	_, _, front := proxyTo(t, bs, []balancer.Option{balancer.WithAlgorithm(&balancer.Hash{})},
		balancer.WithKey(balancer.HeaderKey("X-Tenant")))
	for _, tenant := range []string{"acme", "globex", "initech"} {
		_, first := get(t, front.Client(), front.URL, "X-Tenant", tenant)
		for range 10 {
			if _, id := get(t, front.Client(), front.URL, "X-Tenant", tenant); id != first {
				t.Errorf("tenant %s went to %s, then %s", tenant, first, id)
			}
		}
	}
}

func TestProxyOptions(t *testing.T) {
	p, _ := newPool(t, 1)
	_, err := balancer.NewProxy(nil, balancer.WithRetries(11), balancer.WithRetryAfter(time.Millisecond), balancer.WithTransport(nil), balancer.WithBufferPool(nil))
	if !errors.Is(err, balancer.ErrInvalidConfig) {
		t.Fatalf("NewProxy = %v, want ErrInvalidConfig", err)
	}
	for _, w := range []string{"nil pool", "retries 11", "retry-after", "nil transport", "nil buffer pool"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q: %v", w, err)
		}
	}
	if _, err := balancer.NewProxy(p); err != nil {
		t.Errorf("NewProxy with defaults = %v", err)
	}
}

func TestProxyRetryBudget(t *testing.T) {
	d1, d2 := newBackend(t, "d1"), newBackend(t, "d2")
	d1.Close()
	d2.Close()
	_, px, front := proxyTo(t, []*backend{d1, d2},
		[]balancer.Option{balancer.WithOutlier(balancer.Outlier{Consecutive5xx: -1, ConsecutiveGatewayFailure: -1})},
		balancer.WithRetries(10))
	const requests = 30
	for range requests {
		if code, _ := get(t, front.Client(), front.URL); code != 502 {
			t.Fatalf("status %d, want 502", code)
		}
	}
	// 30 requests could retry 300 times; the budget allows its initial 100 tokens
	// plus 0.2 per request.
	got := px.Stats().Retries
	if got < 100 || got > 100+requests/5 {
		t.Errorf("retries = %d, want between 100 and %d", got, 100+requests/5)
	}
}

func TestKeyFuncs(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("x-tenant", "acme")
	r.AddCookie(&http.Cookie{Name: "sid", Value: "s-42"})
	got := []string{
		balancer.HeaderKey("X-Tenant")(r),
		balancer.HeaderKey("X-Missing")(r),
		balancer.CookieKey("sid")(r),
		balancer.CookieKey("nope")(r),
	}
	if diff := cmp.Diff([]string{"acme", "", "s-42", ""}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestProxyBrokenBodyEndsTheRequest(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // cut the connection mid-body
	}))
	defer broken.Close()
	pool, _, front := proxyTo(t, nil, nil, balancer.WithErrorLog(quietLog()))
	if err := pool.Update([]balancer.Endpoint{{ID: "broken", URL: broken.URL}}); err != nil {
		t.Fatal(err)
	}
	res, err := front.Client().Get(front.URL)
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Fatal("the client read a whole body from a backend that broke mid-body")
	}
	b, _ := pool.Lookup("broken")
	s := b.Window().Snapshot(0)
	if b.InFlight() != 0 || s.Count != 1 || s.Errors != 1 {
		t.Errorf("in flight %d, window %d/%d errors; want 0, 1/1", b.InFlight(), s.Errors, s.Count)
	}
}
