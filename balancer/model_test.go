package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/balancer"
)

// modelEndpoints: a and b serve large, c serves small and large-v2, d serves nothing.
func modelEndpoints() []balancer.Endpoint {
	return []balancer.Endpoint{
		{ID: "a", URL: "http://10.0.0.1", Labels: map[string]string{balancer.LabelModel: "large"}},
		{ID: "b", URL: "http://10.0.0.2", Labels: map[string]string{balancer.LabelModel: "large"}},
		{ID: "c", URL: "http://10.0.0.3", Labels: map[string]string{balancer.LabelModel: "small, large-v2,small"}},
		{ID: "d", URL: "http://10.0.0.4"},
	}
}

func TestPickByModel(t *testing.T) {
	for _, a := range benchAlgorithms {
		t.Run(a.name, func(t *testing.T) {
			p, _ := newPool(t, 0, balancer.WithAlgorithm(a.alg()))
			if err := p.Update(modelEndpoints()); err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				model string
				want  map[string]bool
			}{
				{"large", map[string]bool{"a": true, "b": true}},
				{"small", map[string]bool{"c": true}},
				{"large-v2", map[string]bool{"c": true}},
				{"", map[string]bool{"a": true, "b": true, "c": true, "d": true}},
			}
			for _, tt := range tests {
				got := map[string]bool{}
				for i := range 200 {
					got[pickDone(t, p, &balancer.Request{Model: tt.model, Key: fmt.Sprint(i)}, balancer.Outcome{Status: 200})] = true
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("model %q picked (-want +got):\n%s", tt.model, diff)
				}
			}
			if diff := cmp.Diff([]string{"large", "large-v2", "small"}, p.Models()); diff != "" {
				t.Errorf("Models (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPickModelWithoutLiveBackend(t *testing.T) {
	p, clock := newPool(t, 0)
	if err := p.Update(modelEndpoints()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pick(&balancer.Request{Model: "unknown"}); !errors.Is(err, balancer.ErrNoBackend) {
		t.Fatalf("unknown model: %v, want ErrNoBackend", err)
	}
	// The small model's only backend is ejected: no live backend, and no panic routing
	// onto it, while the rest of the pool is healthy.
	if err := p.Eject("c", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := p.Pick(&balancer.Request{Model: "small"})
	if !errors.Is(err, balancer.ErrNoBackend) || !strings.Contains(err.Error(), `model "small": 1 members, none ready`) {
		t.Fatalf("ejected model: %v", err)
	}
	if n := len(p.ReadyFor("small")); n != 0 {
		t.Errorf("ReadyFor(small) has %d", n)
	}
	// The ejection ends: the next pick finds it again, without a rebuild by anyone else.
	clock.Advance(11 * time.Second)
	if id := pickDone(t, p, &balancer.Request{Model: "small"}, balancer.Outcome{Status: 200}); id != "c" {
		t.Errorf("picked %s after the ejection, want c", id)
	}
	// Drained: no live backend either.
	if err := p.SetWeight("c", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pick(&balancer.Request{Model: "small"}); !errors.Is(err, balancer.ErrNoBackend) {
		t.Fatalf("drained model: %v", err)
	}
}

// TestPickFuncSeesTheModelsBackends: a custom pick chooses among the model's backends.
func TestPickFuncSeesTheModelsBackends(t *testing.T) {
	var seen []string
	p, _ := newPool(t, 0, balancer.WithPickFunc(func(_ *balancer.Request, bs []*balancer.Backend) (int, error) {
		seen = seen[:0]
		for _, b := range bs {
			seen = append(seen, b.ID())
		}
		return len(bs) - 1, nil
	}))
	if err := p.Update(modelEndpoints()); err != nil {
		t.Fatal(err)
	}
	if id := pickDone(t, p, &balancer.Request{Model: "large"}, balancer.Outcome{Status: 200}); id != "b" {
		t.Errorf("picked %s, want b", id)
	}
	if diff := cmp.Diff([]string{"a", "b"}, seen); diff != "" {
		t.Errorf("pick saw (-want +got):\n%s", diff)
	}
}

func TestProxyRoutesByModel(t *testing.T) {
	large, small := newBackend(t, "large-1"), newBackend(t, "small-1")
	p, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update([]balancer.Endpoint{
		{ID: "large-1", URL: large.URL, Labels: map[string]string{balancer.LabelModel: "large"}},
		{ID: "small-1", URL: small.URL, Labels: map[string]string{balancer.LabelModel: "small"}},
	}); err != nil {
		t.Fatal(err)
	}
	other := newBackend(t, "other")
	op, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Update([]balancer.Endpoint{{ID: "other", URL: other.URL}}); err != nil {
		t.Fatal(err)
	}
	px, err := balancer.NewProxy(p, balancer.WithModel(balancer.HeaderKey("X-Model")), balancer.WithRoute("other", op),
		balancer.WithRetryAfter(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer px.CloseIdleConnections()
	// In front, what the middleware does: a Destination, when one is given, overrides
	// the header.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m, route := r.Header.Get("X-Dest-Model"), r.Header.Get("X-Dest-Route"); m != "" || route != "" {
			r = r.WithContext(balancer.WithDestination(r.Context(), balancer.Destination{Route: route, Model: m}))
		}
		px.ServeHTTP(w, r)
	}))
	defer front.Close()
	tests := []struct {
		name       string
		hdr        []string
		status     int
		backend    string
		retryAfter string
	}{
		{"header model", []string{"X-Model", "large"}, 200, "large-1", ""},
		{"header model small", []string{"X-Model", "small"}, 200, "small-1", ""},
		{"destination wins", []string{"X-Model", "large", "X-Dest-Model", "small"}, 200, "small-1", ""},
		{"route pool", []string{"X-Dest-Route", "other"}, 200, "other", ""},
		{"no model: any backend of the pool", nil, 200, "", ""},
		{"unknown model", []string{"X-Model", "huge"}, 503, "", "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				req.Header.Set(tt.hdr[i], tt.hdr[i+1])
			}
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status || (tt.backend != "" && res.Header.Get("X-Backend") != tt.backend) || res.Header.Get("Retry-After") != tt.retryAfter {
				t.Errorf("got %d from %q, Retry-After %q; want %d from %q, %q", res.StatusCode, res.Header.Get("X-Backend"),
					res.Header.Get("Retry-After"), tt.status, tt.backend, tt.retryAfter)
			}
		})
	}
	// The small model's backend goes away: 503 with Retry-After, not 502.
	if err := p.SetWeight("small-1", 0); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, front.Client(), front.URL, "X-Model", "small"); code != http.StatusServiceUnavailable {
		t.Errorf("drained model: %d, want 503", code)
	}
}

// BenchmarkPickModel is Pick (and a bare Done) for a model served by 100 of 1,000
// backends: the model's group is one map lookup more than a pick from the whole pool.
func BenchmarkPickModel(b *testing.B) {
	for _, a := range benchAlgorithms {
		b.Run(a.name, func(b *testing.B) {
			eps := endpoints(1000)
			for i := range eps {
				eps[i].Labels = map[string]string{balancer.LabelModel: fmt.Sprint("m", i%10)}
			}
			p, err := balancer.New(balancer.WithAlgorithm(a.alg()))
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Update(eps); err != nil {
				b.Fatal(err)
			}
			req := &balancer.Request{Now: time.Now(), Model: "m3"}
			b.ReportAllocs()
			for b.Loop() {
				r, err := p.Pick(req)
				if err != nil {
					b.Fatal(err)
				}
				r.Done(balancer.Outcome{Status: 200, At: req.Now})
			}
		})
	}
}

// A Destination's context is the state of the proxy that serves the request; a second
// proxy call with the same context (a handler that tries again, or two proxies in a
// row) gets a state of its own and the same destination, and the outer of two nested
// destinations is hidden by the inner.
func TestDestinationContextServedTwice(t *testing.T) {
	ctx := balancer.WithDestination(context.Background(), balancer.Destination{Model: "large"})
	if d, ok := balancer.DestinationFrom(balancer.WithDestination(ctx, balancer.Destination{Model: "small"})); !ok || d.Model != "small" {
		t.Errorf("nested: %+v %v, want the inner destination", d, ok)
	}
	type key struct{}
	ctx = context.WithValue(ctx, key{}, "kept")
	large, small := newBackend(t, "large-1"), newBackend(t, "small-1")
	p, err := balancer.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update([]balancer.Endpoint{
		{ID: "large-1", URL: large.URL, Labels: map[string]string{balancer.LabelModel: "large"}},
		{ID: "small-1", URL: small.URL, Labels: map[string]string{balancer.LabelModel: "small"}},
	}); err != nil {
		t.Fatal(err)
	}
	px, err := balancer.NewProxy(p)
	if err != nil {
		t.Fatal(err)
	}
	defer px.CloseIdleConnections()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(balancer.WithDestination(r.Context(), balancer.Destination{Model: "small"}))
		for range 2 {
			rec := httptest.NewRecorder()
			px.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK || rec.Header().Get("X-Backend") != "small-1" {
				t.Errorf("got %d from %q, want 200 from small-1", rec.Code, rec.Header().Get("X-Backend"))
			}
		}
	}))
	defer front.Close()
	if code, _ := get(t, front.Client(), front.URL); code != http.StatusOK {
		t.Fatalf("front: %d", code)
	}
	if small.count() != 2 || large.count() != 0 {
		t.Errorf("small served %d, large %d; want 2 and 0", small.count(), large.count())
	}
	if v, _ := ctx.Value(key{}).(string); v != "kept" {
		t.Errorf("a value over a destination: %q", v)
	}
}
