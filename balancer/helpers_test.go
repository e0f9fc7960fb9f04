package balancer_test

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/balancer/balancertest"
	"github.com/autoscalelua/autoscalelua/metrics"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// seeded returns a deterministic random source that is safe for concurrent use.
func seeded(seed uint64) rand.Source { return balancertest.SeededRand(seed) }

// endpoints returns n endpoints named b00, b01, ... with fake URLs.
func endpoints(n int) []balancer.Endpoint {
	eps := make([]balancer.Endpoint, n)
	for i := range eps {
		eps[i] = balancer.Endpoint{ID: fmt.Sprintf("b%02d", i), URL: fmt.Sprintf("http://10.0.%d.%d:8080", i/250, i%250+1)}
	}
	return eps
}

// newPool returns a pool on a manual clock with a seeded random source.
func newPool(t testing.TB, n int, opts ...balancer.Option) (*balancer.Pool, *metrics.ManualClock) {
	t.Helper()
	clock := metrics.NewManualClock(t0)
	all := append([]balancer.Option{balancer.WithClock(clock), balancer.WithRand(seeded(1))}, opts...)
	p, err := balancer.New(all...)
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		if err := p.Update(endpoints(n)); err != nil {
			t.Fatal(err)
		}
	}
	return p, clock
}

// pickDone picks once and ends the request at once, returning the id.
func pickDone(t testing.TB, p *balancer.Pool, req *balancer.Request, o balancer.Outcome) string {
	t.Helper()
	r, err := p.Pick(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Done(o)
	return r.Backend.ID()
}

// backend is an httptest server that answers with its name and counts requests.
type backend struct {
	*httptest.Server
	name string
	mu   sync.Mutex
	hits int
	// delay, status can be changed while it runs.
	delay  time.Duration
	status int
	// clock, when set, is advanced by delay instead of sleeping: the backend's
	// latency is then exact for a client that sends one request at a time.
	clock *metrics.ManualClock
}

func newBackend(t testing.TB, name string) *backend {
	b := &backend{name: name, status: http.StatusOK}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits++
		d, s := b.delay, b.status
		b.mu.Unlock()
		switch {
		case d > 0 && b.clock != nil:
			b.clock.Advance(d)
		case d > 0:
			time.Sleep(d) // a slow backend; not used for synchronisation
		}
		w.Header().Set("X-Backend", name)
		w.WriteHeader(s)
		fmt.Fprint(w, name)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) set(delay time.Duration, status int) {
	b.mu.Lock()
	b.delay, b.status = delay, status
	b.mu.Unlock()
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// proxyTo returns a pool of the backends, a proxy, and an httptest server in front.
func proxyTo(t testing.TB, bs []*backend, popts []balancer.Option, xopts ...balancer.ProxyOption) (*balancer.Pool, *balancer.Proxy, *httptest.Server) {
	t.Helper()
	p, err := balancer.New(popts...)
	if err != nil {
		t.Fatal(err)
	}
	var eps []balancer.Endpoint
	for _, b := range bs {
		eps = append(eps, balancer.Endpoint{ID: b.name, URL: b.URL})
	}
	if err := p.Update(eps); err != nil {
		t.Fatal(err)
	}
	px, err := balancer.NewProxy(p, xopts...)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(px)
	t.Cleanup(func() {
		front.Close()
		px.CloseIdleConnections()
	})
	return p, px, front
}

// get sends a GET through the front server and returns status and X-Backend.
func get(t testing.TB, c *http.Client, url string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header.Get("X-Backend")
}

func yield() { runtime.Gosched() }

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
