package balancertest

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
)

// Server is a real HTTP backend (an [httptest.Server]) that answers every request
// with its name in the body and in the X-Backend header, after its latency, with its
// status, and counts requests. It is safe for concurrent use.
type Server struct {
	*httptest.Server
	name  string
	clock *metrics.ManualClock

	mu      sync.Mutex
	hits    int
	latency time.Duration
	status  int
}

// ServerOption configures a [Server].
type ServerOption func(*Server)

// WithClock makes the server advance clock by its latency rather than sleep. Use it
// with a client that sends one request at a time: concurrent requests would add up
// their latencies on the shared clock.
func WithClock(c *metrics.ManualClock) ServerOption {
	return func(s *Server) { s.clock = c }
}

// NewServer starts a backend named name answering 200 at once; it is closed when the
// test ends.
func NewServer(tb testing.TB, name string, opts ...ServerOption) *Server {
	tb.Helper()
	s := &Server{name: name, status: http.StatusOK}
	for _, o := range opts {
		o(s)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits++
	d, status := s.latency, s.status
	s.mu.Unlock()
	switch {
	case d > 0 && s.clock != nil:
		s.clock.Advance(d)
	case d > 0:
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	w.Header().Set("X-Backend", s.name)
	w.WriteHeader(status)
	fmt.Fprint(w, s.name)
}

// Name returns the server's name.
func (s *Server) Name() string { return s.name }

// Set sets the latency and status of the next requests.
func (s *Server) Set(latency time.Duration, status int) {
	s.mu.Lock()
	s.latency, s.status = latency, status
	s.mu.Unlock()
}

// Hits returns the requests served so far.
func (s *Server) Hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

// Endpoint returns the server as an endpoint whose id is its name.
func (s *Server) Endpoint() balancer.Endpoint {
	return balancer.Endpoint{ID: s.name, URL: s.URL}
}

// Endpoints returns n endpoints with ids b00, b01, ... and URLs that are never
// dialled (10.0.x.y:8080), for tests that pick without proxying.
func Endpoints(n int) []balancer.Endpoint {
	eps := make([]balancer.Endpoint, n)
	for i := range eps {
		eps[i] = balancer.Endpoint{ID: fmt.Sprintf("b%02d", i), URL: fmt.Sprintf("http://10.0.%d.%d:8080", i/250, i%250+1)}
	}
	return eps
}

// SeededRand returns a deterministic random source for [balancer.WithRand] that is
// safe for concurrent use (a seeded PCG behind a mutex: fine for tests, a contended
// lock in a server).
func SeededRand(seed uint64) rand.Source {
	return &lockedSource{src: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)}
}

type lockedSource struct {
	mu  sync.Mutex
	src rand.Source
}

func (s *lockedSource) Uint64() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src.Uint64()
}

// NewPool returns a pool of endpoints, with a random source seeded with 1 unless opts
// give one; opts come last, so they override. It fails the test on error.
func NewPool(tb testing.TB, endpoints []balancer.Endpoint, opts ...balancer.Option) *balancer.Pool {
	tb.Helper()
	all := append([]balancer.Option{balancer.WithRand(SeededRand(1))}, opts...)
	p, err := balancer.New(all...)
	if err != nil {
		tb.Fatalf("balancertest: %v", err)
	}
	if err := p.Update(endpoints); err != nil {
		tb.Fatalf("balancertest: %v", err)
	}
	return p
}
