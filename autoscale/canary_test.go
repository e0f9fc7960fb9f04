package autoscale_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/middleware"
)

// TestCanaryRollbackOverHTTP: a gateway (middleware with admission, and a
// balancer.Proxy) splits llama's requests with a canary that fails; the loop, running
// the canary policy on the gateway's own windows, rolls it back, and within N+1 ticks
// of the canary turning bad no request reaches it.
func TestCanaryRollbackOverHTTP(t *testing.T) {
	const ticks = 3
	clock := metrics.NewManualClock(t0)
	var canaryBad atomic.Bool
	var hits [2]atomic.Int64 // stable, canary
	serve := func(i int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			if i == 1 && canaryBad.Load() {
				w.WriteHeader(http.StatusInternalServerError)
			}
			io.WriteString(w, "{}")
		}))
		t.Cleanup(s.Close)
		return s
	}
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	// Passive ejection off: the rollback, not the balancer's outlier detection, is what
	// takes the canary's traffic away here.
	pool, err := balancer.New(balancer.WithClock(clock), balancer.WithRegistry(reg),
		balancer.WithOutlier(balancer.Outlier{Consecutive5xx: -1, ConsecutiveGatewayFailure: -1}))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Update([]balancer.Endpoint{
		{ID: "stable-1", URL: serve(0).URL, Labels: map[string]string{balancer.LabelModel: "llama"}},
		{ID: "canary-1", URL: serve(1).URL, Labels: map[string]string{balancer.LabelModel: "llama-v2"}},
	}); err != nil {
		t.Fatal(err)
	}
	proxy, err := balancer.NewProxy(pool)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.CloseIdleConnections()
	adm, err := middleware.NewAdmission(middleware.AdmissionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(mustWrap(t, proxy, middleware.WithRegistry(reg), middleware.WithAdmission(adm),
		middleware.WithClassifier(func(r *http.Request) middleware.Keys {
			return middleware.Keys{Route: "chat", Model: r.Header.Get("X-Model")}
		})))
	defer front.Close()
	send := func(n int) (stable, canary int64) {
		s0, c0 := hits[0].Load(), hits[1].Load()
		for range n {
			req, _ := http.NewRequest(http.MethodPost, front.URL, strings.NewReader("{}"))
			req.Header.Set("X-Model", "llama")
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return hits[0].Load() - s0, hits[1].Load() - c0
	}

	policy, err := autoscale.NewCanary(autoscale.Canary{Stable: "llama", Canary: "llama-v2", Weight: 0.5, Ticks: ticks, Span: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	loop := newLoop(t, autoscale.WithPolicy(policy), autoscale.WithRegistry(reg), autoscale.WithClock(clock),
		autoscale.WithRouter(adm), autoscale.WithTick(time.Second),
		autoscale.WithTargets(autoscale.Target{Name: "llama", Min: 1, Max: 1, Actuator: new(actuatortest.Recorder), Safety: free}))
	tick := func() autoscale.Tick {
		clock.Advance(time.Second)
		return step(t, loop, clock.Now())
	}

	// Healthy: the split holds, both versions serve.
	for range 3 {
		tick()
		if s, c := send(40); s == 0 || c == 0 {
			t.Fatalf("healthy split: stable %d, canary %d", s, c)
		}
	}
	// The canary turns bad: each tick from the next one sees it worse.
	canaryBad.Store(true)
	back := -1
	for i := 1; i <= ticks+1; i++ {
		tk := tick()
		if _, c := send(40); c == 0 {
			back = i
			if len(tk.Actions) != 1 || !strings.Contains(tk.Actions[0].Action.(autoscale.Route).Reason, "rolled back: error rate") {
				t.Errorf("the rollback's record: %+v", tk.Actions)
			}
			break
		}
	}
	if back < 0 {
		t.Fatalf("the canary still got traffic %d ticks after it turned bad", ticks+1)
	}
	t.Logf("traffic back on stable %d ticks after the canary turned bad (N = %d)", back, ticks)
	if rolled, why := policy.RolledBack(); !rolled || why == "" {
		t.Errorf("RolledBack = %v, %q", rolled, why)
	}
	// It stays rolled back, even once the canary's windows recover, until Resume.
	canaryBad.Store(false)
	for range 2 {
		tick()
		if _, c := send(20); c != 0 {
			t.Errorf("canary got %d after the rollback", c)
		}
	}
	policy.Resume()
	tick()
	if _, c := send(40); c == 0 {
		t.Error("no canary traffic after Resume")
	}
}

// fakeReader answers snapshots from a map: the policy's input, without windows.
type fakeReader map[string]metrics.Snapshot

func (r fakeReader) Snapshot(scope metrics.Scope, key string, _ time.Duration) (metrics.Snapshot, bool) {
	s, ok := r[string(scope)+"/"+key]
	return s, ok
}
func (fakeReader) Keys(metrics.Scope) []string { return nil }

func TestCanaryVerdicts(t *testing.T) {
	ms := time.Millisecond
	ok := metrics.Snapshot{Count: 100, ErrorRate: 0.01}
	tests := []struct {
		name  string
		in    fakeReader
		worse bool // the third tick rolls back
	}{
		{"equal", fakeReader{"model/s": ok, "model/c": ok}, false},
		{"errors within the margin", fakeReader{"model/s": ok, "model/c": {Count: 100, ErrorRate: 0.05}}, false},
		{"errors beyond the margin", fakeReader{"model/s": ok, "model/c": {Count: 100, ErrorRate: 0.07}}, true},
		{"too few canary requests", fakeReader{"model/s": ok, "model/c": {Count: 5, ErrorRate: 1}}, false},
		{"ttft beyond the margin", fakeReader{"model/s": ok, "model/c": ok,
			"ttft/s": {Count: 50, P99: 100 * ms}, "ttft/c": {Count: 50, P99: 130 * ms}}, true},
		{"ttft within the margin", fakeReader{"model/s": ok, "model/c": ok,
			"ttft/s": {Count: 50, P99: 100 * ms}, "ttft/c": {Count: 50, P99: 120 * ms}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := autoscale.NewCanary(autoscale.Canary{Stable: "s", Canary: "c", Weight: 0.1})
			if err != nil {
				t.Fatal(err)
			}
			var last autoscale.Route
			for range 3 {
				acts, err := p.Decide(context.Background(), &autoscale.Input{Now: t0, Metrics: autoscale.NewSnapshot(t0, tt.in)})
				if err != nil || len(acts) != 1 {
					t.Fatalf("Decide = %v, %v", acts, err)
				}
				last = acts[0].(autoscale.Route)
			}
			if got := last.Fraction == 0; got != tt.worse {
				t.Errorf("rolled back %v (%q), want %v", got, last.Reason, tt.worse)
			}
		})
	}
}

func TestCanaryValidate(t *testing.T) {
	for _, c := range []autoscale.Canary{
		{Stable: "a", Canary: "a", Weight: 0.1},
		{Stable: "a", Canary: "b"},
		{Stable: "a", Canary: "b", Weight: 2},
		{Stable: "a", Canary: "b", Weight: 0.1, ErrorMargin: -1},
		{Stable: "a", Canary: "b", Weight: 0.1, Ticks: -1},
		{Canary: "b", Weight: 0.1},
	} {
		if _, err := autoscale.NewCanary(c); !errors.Is(err, autoscale.ErrInvalidConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// mustWrap wraps h with the middleware configured by opts, failing the test on error.
func mustWrap(tb testing.TB, h http.Handler, opts ...middleware.Option) http.Handler {
	tb.Helper()
	w, err := middleware.Wrap(h, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return w
}
