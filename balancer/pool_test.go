package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
)

func ids(bs []*balancer.Backend) []string {
	out := []string{}
	for _, b := range bs {
		out = append(out, b.ID())
	}
	return out
}

func TestUpdateRejectsBadEndpoints(t *testing.T) {
	good := balancer.Endpoint{ID: "a", URL: "http://a:1"}
	tests := []struct {
		name string
		eps  []balancer.Endpoint
		want []string // substrings of the error
	}{
		{"empty id", []balancer.Endpoint{{URL: "http://x:1"}}, []string{"empty id"}},
		{"duplicate id", []balancer.Endpoint{good, good}, []string{`duplicate id "a"`}},
		{"bad url", []balancer.Endpoint{{ID: "b", URL: "http://[::1"}}, []string{`"b"`}},
		{"no scheme", []balancer.Endpoint{{ID: "b", URL: "localhost:80"}}, []string{"scheme"}},
		{"no host", []balancer.Endpoint{{ID: "b", URL: "http:///path"}}, []string{"no host"}},
		{"ftp", []balancer.Endpoint{{ID: "b", URL: "ftp://h"}}, []string{"scheme"}},
		{"negative weight", []balancer.Endpoint{{ID: "b", URL: "http://h", Weight: -1}}, []string{"weight -1"}},
		{"huge weight", []balancer.Endpoint{{ID: "b", URL: "http://h", Weight: balancer.MaxWeight + 1}}, []string{"weight 1000001"}},
		{"every problem at once", []balancer.Endpoint{good, good, {ID: "c", URL: "x"}}, []string{"duplicate", `"c"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPool(t, 2)
			before := ids(p.Backends())
			err := p.Update(tt.eps)
			if !errors.Is(err, balancer.ErrInvalidEndpoint) {
				t.Fatalf("Update = %v, want ErrInvalidEndpoint", err)
			}
			for _, w := range tt.want {
				if !containsStr(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if diff := cmp.Diff(before, ids(p.Backends())); diff != "" {
				t.Errorf("pool changed by a rejected update (-before +after):\n%s", diff)
			}
		})
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestEmptyPoolHasNoBackend(t *testing.T) {
	p, _ := newPool(t, 0)
	if _, err := p.Pick(nil); !errors.Is(err, balancer.ErrNoBackend) {
		t.Fatalf("Pick on empty pool = %v, want ErrNoBackend", err)
	}
	if err := p.Update(endpoints(2)); err != nil {
		t.Fatal(err)
	}
	if err := p.Update(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pick(nil); !errors.Is(err, balancer.ErrNoBackend) {
		t.Fatalf("Pick on emptied pool = %v, want ErrNoBackend", err)
	}
	if got := p.Stats().NoBackend; got != 2 {
		t.Errorf("NoBackend = %d, want 2", got)
	}
}

func TestZeroWeightEndpointMeansOne(t *testing.T) {
	p, _ := newPool(t, 0)
	err := p.Update([]balancer.Endpoint{
		{ID: "a", URL: "http://a"},
		{ID: "b", URL: "http://b", Weight: 3},
		{ID: "c", URL: "http://c", Weight: 5, Drain: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, b := range p.Backends() {
		got[b.ID()] = b.Weight()
	}
	if diff := cmp.Diff(map[string]int{"a": 1, "b": 3, "c": 0}, got); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b"}, ids(p.Ready())); diff != "" {
		t.Errorf("ready (-want +got):\n%s", diff)
	}
}

func TestStateSurvivesUpdate(t *testing.T) {
	p, clock := newPool(t, 2, balancer.WithAlgorithm(balancer.RoundRobin{}))
	r, err := p.Pick(nil)
	if err != nil {
		t.Fatal(err)
	}
	held := r.Backend
	other := pickDone(t, p, nil, balancer.Outcome{Latency: time.Millisecond, Status: 200})
	eps := append(endpoints(2), balancer.Endpoint{ID: "new", URL: "http://new:1"})
	eps[0].Labels = map[string]string{"zone": "z1"}
	if err := p.Update(eps); err != nil {
		t.Fatal(err)
	}
	after, ok := p.Lookup(held.ID())
	if !ok || after != held {
		t.Fatalf("backend %s was replaced by an update that kept its id and URL", held.ID())
	}
	if got := after.InFlight(); got != 1 {
		t.Errorf("in flight after update = %d, want 1", got)
	}
	ob, _ := p.Lookup(other)
	if got := ob.Window().SnapshotAt(clock.Now(), 0).Count; got != 1 {
		t.Errorf("window count after update = %d, want 1", got)
	}
	b0, _ := p.Lookup("b00")
	if got := b0.Label("zone"); got != "z1" {
		t.Errorf("label after update = %q, want z1", got)
	}
	r.Done(balancer.Outcome{Status: 200})
	if got := after.InFlight(); got != 0 {
		t.Errorf("in flight after done = %d, want 0", got)
	}

	// A new URL makes a new backend.
	eps[1].URL = "http://moved:1"
	if err := p.Update(eps); err != nil {
		t.Fatal(err)
	}
	b1, _ := p.Lookup("b01")
	if b1.URL().Host != "moved:1" || b1.Window().SnapshotAt(clock.Now(), 0).Count != 0 {
		t.Errorf("backend with a new URL kept the old state: %v", b1.URL())
	}
}

func TestSetWeight(t *testing.T) {
	p, _ := newPool(t, 3, balancer.WithAlgorithm(balancer.RoundRobin{}))
	tests := []struct {
		name    string
		id      string
		weight  int
		wantErr error
	}{
		{"negative", "b00", -1, balancer.ErrInvalidWeight},
		{"too large", "b00", balancer.MaxWeight + 1, balancer.ErrInvalidWeight},
		{"unknown", "nope", 1, balancer.ErrUnknownBackend},
		{"drain", "b01", 0, nil},
		{"raise", "b02", 7, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.SetWeight(tt.id, tt.weight); !errors.Is(err, tt.wantErr) {
				t.Fatalf("SetWeight(%q, %d) = %v, want %v", tt.id, tt.weight, err, tt.wantErr)
			}
		})
	}
	if diff := cmp.Diff([]string{"b00", "b02"}, ids(p.Ready())); diff != "" {
		t.Errorf("ready after drain (-want +got):\n%s", diff)
	}
	for range 100 {
		if id := pickDone(t, p, nil, balancer.Outcome{Status: 200}); id == "b01" {
			t.Fatal("drained backend was picked")
		}
	}
	// The run-time weight survives a discovery update.
	if err := p.Update(endpoints(3)); err != nil {
		t.Fatal(err)
	}
	b1, _ := p.Lookup("b01")
	b2, _ := p.Lookup("b02")
	if b1.Weight() != 0 || b2.Weight() != 7 || b1.Healthy() {
		t.Errorf("after update: b01 weight %d healthy %v, b02 weight %d; want 0 false 7", b1.Weight(), b1.Healthy(), b2.Weight())
	}
	// Every backend drained: no backend, even with panic routing.
	for _, id := range []string{"b00", "b02"} {
		if err := p.SetWeight(id, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Pick(nil); !errors.Is(err, balancer.ErrNoBackend) {
		t.Errorf("Pick with all drained = %v, want ErrNoBackend", err)
	}
}

// The autoscale loop applies its actions through this interface.
var _ interface {
	SetWeight(string, int) error
	Eject(string, time.Duration) error
} = (*balancer.Pool)(nil)

func TestEject(t *testing.T) {
	p, clock := newPool(t, 4, balancer.WithAlgorithm(balancer.RoundRobin{}),
		balancer.WithOutlier(balancer.Outlier{MaxEjectionPercent: 50}))
	if err := p.Eject("b00", 0); !errors.Is(err, balancer.ErrInvalidConfig) {
		t.Errorf("Eject for 0 = %v, want ErrInvalidConfig", err)
	}
	if err := p.Eject("zz", time.Second); !errors.Is(err, balancer.ErrUnknownBackend) {
		t.Errorf("Eject unknown = %v, want ErrUnknownBackend", err)
	}
	if err := p.Eject("b00", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Eject("b01", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// 2 of 4 is the 50% limit.
	if err := p.Eject("b02", time.Second); !errors.Is(err, balancer.ErrEjectionLimit) {
		t.Errorf("third ejection = %v, want ErrEjectionLimit", err)
	}
	if diff := cmp.Diff([]string{"b02", "b03"}, ids(p.Ready())); diff != "" {
		t.Errorf("ready (-want +got):\n%s", diff)
	}
	for range 20 {
		if id := pickDone(t, p, nil, balancer.Outcome{Status: 200, At: clock.Now()}); id == "b00" || id == "b01" {
			t.Fatalf("ejected backend %s picked", id)
		}
	}
	b0, _ := p.Lookup("b00")
	if ej, until := b0.Ejected(clock.Now()); !ej || !until.Equal(t0.Add(10*time.Second)) {
		t.Errorf("Ejected = %v %v, want true %v", ej, until, t0.Add(10*time.Second))
	}
	// The ejection ends lazily, at the first Done after it is due.
	clock.Advance(10 * time.Second)
	pickDone(t, p, nil, balancer.Outcome{Status: 200, At: clock.Now()})
	if diff := cmp.Diff([]string{"b00", "b02", "b03"}, ids(p.Ready())); diff != "" {
		t.Errorf("ready after 10s (-want +got):\n%s", diff)
	}
	if err := p.Uneject("b01"); err != nil {
		t.Fatal(err)
	}
	if got := len(p.Ready()); got != 4 {
		t.Errorf("ready after Uneject = %d, want 4", got)
	}
	st := p.Stats()
	if st.Ejections != 2 || st.EjectionsSkipped != 1 {
		t.Errorf("stats = %+v, want 2 ejections, 1 skipped", st)
	}
}

func TestEjectionLimitAllowsOne(t *testing.T) {
	// 10% of 3 backends is 0.3 backends; as Envoy, one may still be ejected.
	p, _ := newPool(t, 3)
	if err := p.Eject("b00", time.Minute); err != nil {
		t.Fatalf("first ejection = %v", err)
	}
	if err := p.Eject("b01", time.Minute); !errors.Is(err, balancer.ErrEjectionLimit) {
		t.Fatalf("second ejection = %v, want ErrEjectionLimit", err)
	}
}

func TestEveryBackendEjected(t *testing.T) {
	for _, noPanic := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPanic=%v", noPanic), func(t *testing.T) {
			opts := []balancer.Option{balancer.WithOutlier(balancer.Outlier{MaxEjectionPercent: 100})}
			if noPanic {
				opts = append(opts, balancer.WithoutPanic())
			}
			p, clock := newPool(t, 2, opts...)
			for _, id := range []string{"b00", "b01"} {
				if err := p.Eject(id, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			r, err := p.Pick(nil)
			if noPanic {
				if !errors.Is(err, balancer.ErrNoBackend) {
					t.Fatalf("Pick = %v, want ErrNoBackend", err)
				}
			} else {
				if err != nil {
					t.Fatalf("Pick in panic = %v", err)
				}
				r.Done(balancer.Outcome{Status: 200, At: clock.Now()})
				if st := p.Stats(); !st.Panic || st.Panics == 0 {
					t.Errorf("stats = %+v, want panic", st)
				}
			}
			// After the ejections end, a Pick that finds nothing reads the clock
			// and rebuilds.
			clock.Advance(time.Minute)
			if _, err := p.Pick(nil); err != nil {
				t.Fatalf("Pick after ejections ended = %v", err)
			}
			if st := p.Stats(); st.Panic || st.Ready != 2 {
				t.Errorf("stats = %+v, want 2 ready, no panic", st)
			}
		})
	}
}

func TestConsecutiveFailuresEject(t *testing.T) {
	boom := errors.New("connection reset")
	tests := []struct {
		name    string
		outcome balancer.Outcome
		outlier balancer.Outlier
		n       int // failures to eject
	}{
		{"5xx", balancer.Outcome{Status: 500}, balancer.Outlier{ConsecutiveGatewayFailure: -1}, 5},
		{"gateway 503", balancer.Outcome{Status: 503}, balancer.Outlier{Consecutive5xx: -1, ConsecutiveGatewayFailure: 3}, 3},
		{"transport error", balancer.Outcome{Err: boom}, balancer.Outlier{Consecutive5xx: 8, ConsecutiveGatewayFailure: 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.outlier.MaxEjectionPercent = 100
			p, clock := newPool(t, 2, balancer.WithOutlier(tt.outlier))
			b, _ := p.Lookup("b00")
			fail := func(k int) {
				for range k {
					tt.outcome.At = clock.Now()
					balancer.Result{Backend: b}.Done(tt.outcome)
				}
			}
			// A success in between resets the count.
			fail(tt.n - 1)
			balancer.Result{Backend: b}.Done(balancer.Outcome{Status: 200, At: clock.Now()})
			fail(tt.n - 1)
			if !b.Healthy() {
				t.Fatalf("ejected after %d failures in a row, want %d", tt.n-1, tt.n)
			}
			fail(1)
			ej, until := b.Ejected(clock.Now())
			if !ej || until.Sub(clock.Now()) != 30*time.Second {
				t.Fatalf("after %d failures: ejected %v until %v, want 30s", tt.n, ej, until.Sub(clock.Now()))
			}
			// The second ejection backs off to 60 s, the third to 120 s.
			for _, want := range []time.Duration{60 * time.Second, 120 * time.Second} {
				clock.Advance(31 * time.Second)
				balancer.Result{Backend: b}.Done(balancer.Outcome{Status: 200, At: clock.Now()})
				fail(tt.n)
				_, until = b.Ejected(clock.Now())
				if got := until.Sub(clock.Now()); got != want {
					t.Errorf("next ejection lasts %v, want %v", got, want)
				}
				clock.Advance(want - 31*time.Second)
			}
		})
	}
}

func TestCanceledIsNoFailure(t *testing.T) {
	p, clock := newPool(t, 2, balancer.WithOutlier(balancer.Outlier{Consecutive5xx: 1, MaxEjectionPercent: 100}))
	b, _ := p.Lookup("b00")
	for range 3 {
		balancer.Result{Backend: b}.Done(balancer.Outcome{Err: context.Canceled, At: clock.Now()})
	}
	if !b.Healthy() {
		t.Fatal("canceled requests ejected the backend")
	}
	s := b.Window().SnapshotAt(clock.Now(), 0)
	if s.Canceled != 3 || s.Errors != 0 {
		t.Errorf("window: canceled %d errors %d, want 3 0", s.Canceled, s.Errors)
	}
}

func TestSweepSuccessRate(t *testing.T) {
	p, clock := newPool(t, 6, balancer.WithOutlier(balancer.Outlier{
		Consecutive5xx: -1, ConsecutiveGatewayFailure: -1, RequestVolume: 50, MaxEjectionPercent: 50,
	}))
	for i, b := range p.Backends() {
		for k := range 100 {
			o := balancer.Outcome{Status: 200, Latency: 10 * time.Millisecond, At: clock.Now()}
			if (i == 3 && k%2 == 0) || (i == 1 && k%50 == 0) {
				o.Status = 500
			}
			balancer.Result{Backend: b}.Done(o)
		}
	}
	clock.Advance(time.Second)
	got := p.Sweep(clock.Now())
	if diff := cmp.Diff([]string{"b03"}, got); diff != "" {
		t.Errorf("ejected (-want +got):\n%s", diff)
	}
	// Below the request volume nothing is judged.
	q, qc := newPool(t, 6)
	b, _ := q.Lookup("b00")
	for range 10 {
		balancer.Result{Backend: b}.Done(balancer.Outcome{Status: 500, At: qc.Now()})
	}
	if got := q.Sweep(qc.Now()); len(got) != 0 {
		t.Errorf("sweep with low volume ejected %v", got)
	}
}

func TestSweepLatency(t *testing.T) {
	p, clock := newPool(t, 5, balancer.WithOutlier(balancer.Outlier{
		RequestVolume: 20, LatencyFactor: 3, SuccessRateStdevFactor: -1, MaxEjectionPercent: 50,
	}))
	for i, b := range p.Backends() {
		lat := 10 * time.Millisecond
		if i == 2 {
			lat = 40 * time.Millisecond
		}
		for range 30 {
			balancer.Result{Backend: b}.Done(balancer.Outcome{Status: 200, Latency: lat, At: clock.Now()})
		}
	}
	if diff := cmp.Diff([]string{"b02"}, p.Sweep(clock.Now().Add(time.Second))); diff != "" {
		t.Errorf("ejected (-want +got):\n%s", diff)
	}
}

func TestPickFuncFallback(t *testing.T) {
	tests := []struct {
		name         string
		f            balancer.PickFunc
		want         string // "" means any
		wantFallback uint64
	}{
		{"valid index", func(_ *balancer.Request, bs []*balancer.Backend) (int, error) { return len(bs) - 1, nil }, "b02", 0},
		{"by label", func(_ *balancer.Request, bs []*balancer.Backend) (int, error) {
			for i, b := range bs {
				if b.Label("tier") == "gold" {
					return i, nil
				}
			}
			return -1, nil
		}, "b01", 0},
		{"negative", func(*balancer.Request, []*balancer.Backend) (int, error) { return -1, nil }, "", 1},
		{"out of range", func(_ *balancer.Request, bs []*balancer.Backend) (int, error) { return len(bs), nil }, "", 1},
		{"error", func(*balancer.Request, []*balancer.Backend) (int, error) { return 0, errors.New("lua: boom") }, "", 1},
		{"panic", func(*balancer.Request, []*balancer.Backend) (int, error) { panic("boom") }, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPool(t, 0, balancer.WithPickFunc(tt.f))
			eps := endpoints(3)
			eps[1].Labels = map[string]string{"tier": "gold"}
			if err := p.Update(eps); err != nil {
				t.Fatal(err)
			}
			id := pickDone(t, p, nil, balancer.Outcome{Status: 200})
			if tt.want != "" && id != tt.want {
				t.Errorf("picked %s, want %s", id, tt.want)
			}
			if got := p.Stats().Fallbacks; got != tt.wantFallback {
				t.Errorf("fallbacks = %d, want %d", got, tt.wantFallback)
			}
			p.SetPickFunc(nil)
			pickDone(t, p, nil, balancer.Outcome{Status: 200})
			if got := p.Stats().Fallbacks; got != tt.wantFallback {
				t.Errorf("fallbacks after removing the func = %d, want %d", got, tt.wantFallback)
			}
		})
	}
}

func TestOptionsReportEveryProblem(t *testing.T) {
	_, err := balancer.New(
		balancer.WithClock(nil),
		balancer.WithDecay(-1),
		balancer.WithSlowStart(balancer.SlowStart{Window: -1, Aggression: 0.01, MinWeightPercent: 200}),
		balancer.WithOutlier(balancer.Outlier{MaxEjectionPercent: 101, BaseEjectionTime: time.Hour, MaxEjectionTime: time.Minute, LatencyFactor: 0.5}),
		balancer.WithWindow(metrics.WindowConfig{Buckets: -1}),
	)
	if !errors.Is(err, balancer.ErrInvalidConfig) {
		t.Fatalf("New = %v, want ErrInvalidConfig", err)
	}
	for _, w := range []string{"nil clock", "negative decay", "window", "aggression", "min weight", "max ejection percent", "max ejection time", "latency factor", "buckets"} {
		if !containsStr(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
}

func TestRegistryWindows(t *testing.T) {
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	p, err := balancer.New(balancer.WithClock(clock), balancer.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update(endpoints(2)); err != nil {
		t.Fatal(err)
	}
	r, err := p.Pick(nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Done(balancer.Outcome{Status: 502, Latency: 3 * time.Millisecond})
	w, ok := reg.Lookup(metrics.ScopeBackend, r.Backend.ID())
	if !ok || w != r.Backend.Window() {
		t.Fatalf("backend window is not the registry's")
	}
	s := w.SnapshotAt(clock.Now(), 0)
	if s.Count != 1 || s.Errors != 1 {
		t.Errorf("window count %d errors %d, want 1 1", s.Count, s.Errors)
	}
}

func TestStaticDiscovery(t *testing.T) {
	p, _ := newPool(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Sync(ctx, balancer.Static(endpoints(3))) }()
	// Sync blocks; wait until the list is applied, without sleeping.
	for len(p.Backends()) != 3 {
		select {
		case err := <-done:
			t.Fatalf("Sync returned early: %v", err)
		default:
		}
		yield()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Sync = %v, want context.Canceled", err)
	}
	if err := p.Sync(context.Background(), balancer.Static([]balancer.Endpoint{{ID: "x"}})); !errors.Is(err, balancer.ErrInvalidEndpoint) {
		t.Errorf("Sync with bad list = %v, want ErrInvalidEndpoint", err)
	}
}

func TestPoolRun(t *testing.T) {
	const interval = 10 * time.Second
	p, clock := newPool(t, 6, balancer.WithOutlier(balancer.Outlier{
		Consecutive5xx: -1, ConsecutiveGatewayFailure: -1, RequestVolume: 50, MaxEjectionPercent: 50, Interval: interval,
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	wait := func(want time.Time) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := clock.WaitTimers(wctx, 1); err != nil {
			t.Fatalf("Run armed no timer: %v", err)
		}
		if at, _ := clock.NextTimer(); !at.Equal(want) {
			t.Fatalf("next sweep at %v, want %v", at.Sub(t0), want.Sub(t0))
		}
	}
	wait(t0.Add(interval))
	clock.Advance(interval / 2)
	b3, _ := p.Lookup("b03")
	for _, b := range p.Backends() {
		for k := range 100 {
			o := balancer.Outcome{Status: 200, Latency: 10 * time.Millisecond, At: clock.Now()}
			if b == b3 && k%2 == 0 {
				o.Status = 500
			}
			balancer.Result{Backend: b}.Done(o)
		}
	}
	if !b3.Healthy() {
		t.Fatal("b03 ejected before the first sweep")
	}
	clock.Advance(interval / 2)
	wait(t0.Add(2 * interval))
	if b3.Healthy() {
		t.Error("the sweep at one interval did not eject b03")
	}
	// A jump past two ticks runs one sweep at once and keeps the schedule.
	clock.Advance(2*interval + interval/2)
	wait(t0.Add(4 * interval))
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if n := clock.Timers(); n != 0 {
		t.Errorf("Run left %d timers", n)
	}
}

func TestWindowConcurrency(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("on=%v", on), func(t *testing.T) {
			var opts []balancer.Option
			if on {
				opts = append(opts, balancer.WithWindowConcurrency())
			}
			p, clock := newPool(t, 1, opts...)
			var held []balancer.Result
			for range 3 {
				r, err := p.Pick(&balancer.Request{Now: clock.Now()})
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, r)
			}
			clock.Advance(time.Second)
			b := held[0].Backend
			s := b.Window().SnapshotAt(clock.Now(), 0)
			wantInFlight := int64(0)
			if on {
				wantInFlight = 3
			}
			if s.InFlight != wantInFlight || b.InFlight() != 3 {
				t.Errorf("window in flight %d (want %d), backend in flight %d (want 3)", s.InFlight, wantInFlight, b.InFlight())
			}
			for _, r := range held {
				r.Done(balancer.Outcome{Status: 200, Latency: time.Second, At: clock.Now()})
			}
			s = b.Window().SnapshotAt(clock.Now(), 0)
			if s.Count != 3 || s.InFlight != 0 || b.InFlight() != 0 {
				t.Errorf("after done: count %d, window in flight %d, backend %d", s.Count, s.InFlight, b.InFlight())
			}
			if on && s.Concurrency < 2.9 {
				t.Errorf("concurrency %.2f, want about 3 over the second the three requests took", s.Concurrency)
			}
		})
	}
}
