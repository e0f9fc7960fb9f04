package autoscale_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// free has no limits, so tests see the policy's ask unless they set their own.
var free = autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{}}

func scaleTo(target string, n int) autoscale.Policy {
	return autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
		return []autoscale.Action{autoscale.Scale{Target: target, Replicas: n, Reason: "test"}}, nil
	})
}

func newLoop(t *testing.T, opts ...autoscale.Option) *autoscale.Loop {
	t.Helper()
	l, err := autoscale.NewLoop(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func step(t *testing.T, l *autoscale.Loop, now time.Time) autoscale.Tick {
	t.Helper()
	tk, err := l.Step(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func flush(t *testing.T, l *autoscale.Loop) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNewLoopErrors(t *testing.T) {
	rec := new(actuatortest.Recorder)
	ok := autoscale.Target{Name: "a", Max: 3, Actuator: rec}
	tests := []struct {
		name string
		opts []autoscale.Option
		want []string // every one must be reported
	}{
		{"no policy", []autoscale.Option{autoscale.WithTargets(ok)}, []string{"no policy"}},
		{"no targets", []autoscale.Option{autoscale.WithPolicy(scaleTo("a", 1))}, []string{"no targets"}},
		{"duplicate", []autoscale.Option{autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithTargets(ok, ok)}, []string{"duplicate target"}},
		{"no actuator", []autoscale.Option{autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithTargets(autoscale.Target{Name: "a", Max: 1})}, []string{"no actuator"}},
		{"tick too short", []autoscale.Option{autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithTargets(ok), autoscale.WithTick(time.Millisecond)}, []string{"tick"}},
		{"bad history", []autoscale.Option{autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithTargets(ok), autoscale.WithHistory(0)}, []string{"history"}},
		{"bad actuation", []autoscale.Option{autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithTargets(ok), autoscale.WithActuation(autoscale.Actuation{Attempts: -1})}, []string{"attempts"}},
		{"bad target and no policy, both reported", []autoscale.Option{autoscale.WithTargets(autoscale.Target{Name: "a"})}, []string{"no policy", `target "a": max 0`}},
		{"nil observer", []autoscale.Option{autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithTargets(ok), autoscale.WithObserver(nil)}, []string{"observer"}},
		{"nil collaborators and a nil option", []autoscale.Option{autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithTargets(ok),
			autoscale.WithRand(nil), autoscale.WithClock(nil), autoscale.WithLogger(nil), nil}, []string{"nil random source", "nil clock", "nil logger", "nil option"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := autoscale.NewLoop(tc.opts...)
			if !errors.Is(err, autoscale.ErrInvalidConfig) {
				t.Fatalf("NewLoop: %v, want ErrInvalidConfig", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewLoop: %v, want it to mention %q", err, want)
				}
			}
			if l != nil {
				t.Fatal("loop returned with an error")
			}
		})
	}
}

func TestStepScalesAndReadsBack(t *testing.T) {
	rec := new(actuatortest.Recorder)
	ref := actuator.Target{Name: "checkout", Namespace: "shop"}
	rec.SetReplicas(ref, 2)
	l := newLoop(t, autoscale.WithPolicy(scaleTo("checkout", 5)),
		autoscale.WithTargets(autoscale.Target{Name: "checkout", Ref: ref, Min: 1, Max: 10, Actuator: rec, Safety: free}))

	tk := step(t, l, t0)
	d := tk.Decisions[0]
	if !d.Applied || d.Why != autoscale.WhyApplied || d.Current != 2 || d.Desired != 5 || d.Direction != autoscale.Up {
		t.Fatalf("decision = %+v", d)
	}
	flush(t, l)
	want := actuator.Request{Target: ref, Replicas: 5, Previous: 2, Reason: "test", DecisionID: d.ID, Time: t0,
		Seq: actuator.Sequence{Stream: strings.TrimSuffix(d.ID, "-1"), N: 1}}
	if diff := cmp.Diff([]actuator.Request{want}, rec.Requests()); diff != "" {
		t.Fatalf("requests (-want +got):\n%s", diff)
	}
	got, ok := l.Decision(d.ID)
	if !ok || !got.Actuation.Done || got.Actuation.Err != "" || got.Actuation.Attempts != 1 {
		t.Fatalf("recorded actuation = %+v", got.Actuation)
	}

	tk = step(t, l, t0.Add(time.Second))
	d = tk.Decisions[0]
	if d.Applied || d.Why != autoscale.WhyUnchanged || d.Current != 5 {
		t.Fatalf("second decision = %+v", d)
	}
	if n := len(rec.Requests()); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	if got := l.Targets(); got[0].Replicas != 5 || got[0].Desired != 5 {
		t.Fatalf("targets = %+v", got)
	}
}

func TestObserver(t *testing.T) {
	rec := new(actuatortest.Recorder)
	var seen []autoscale.Tick
	var l *autoscale.Loop
	l = newLoop(t, autoscale.WithPolicy(scaleTo("a", 3)), autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Actuator: rec, Safety: free}),
		autoscale.WithObserver(func(tk autoscale.Tick) {
			// Outside the loop's locks: reading the loop from the observer does not deadlock.
			_ = l.Targets()
			seen = append(seen, tk)
		}))
	step(t, l, t0)
	step(t, l, t0.Add(time.Second))
	if len(seen) != 2 || !seen[0].Time.Equal(t0) || seen[0].Decisions[0].Desired != 3 {
		t.Fatalf("observed %d ticks: %+v", len(seen), seen)
	}
}

func TestGates(t *testing.T) {
	tests := []struct {
		name        string
		opts        []autoscale.Option
		wantWhy     string
		wantApplied bool // for the shed action
	}{
		{"dry-run", []autoscale.Option{autoscale.WithDryRun(true)}, autoscale.WhyDryRun, false},
		{"not leader", []autoscale.Option{autoscale.WithElector(autoscale.ElectorFunc(func() bool { return false }))}, autoscale.WhyNotLeader, true},
		{"leader", []autoscale.Option{autoscale.WithElector(autoscale.ElectorFunc(func() bool { return true }))}, autoscale.WhyApplied, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := new(actuatortest.Recorder)
			rec.SetReplicas(actuator.Target{Name: "a"}, 1)
			sh := &fakeAdmission{}
			policy := autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
				return []autoscale.Action{
					autoscale.Scale{Target: "a", Replicas: 3},
					autoscale.Shed{Route: "r", Fraction: 0.5},
				}, nil
			})
			opts := append([]autoscale.Option{autoscale.WithPolicy(policy), autoscale.WithShedder(sh),
				autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Actuator: rec, Safety: free})}, tc.opts...)
			l := newLoop(t, opts...)
			tk := step(t, l, t0)
			flush(t, l)
			if d := tk.Decisions[0]; d.Why != tc.wantWhy || d.Desired != 3 {
				t.Fatalf("decision = %+v, want why %q", d, tc.wantWhy)
			}
			wantReqs := 0
			if tc.wantWhy == autoscale.WhyApplied {
				wantReqs = 1
			}
			if n := len(rec.Requests()); n != wantReqs {
				t.Fatalf("%d actuator requests, want %d", n, wantReqs)
			}
			if tk.Actions[0].Applied != tc.wantApplied || (len(sh.calls) == 1) != tc.wantApplied {
				t.Fatalf("shed result %+v, calls %v, want applied %v", tk.Actions[0], sh.calls, tc.wantApplied)
			}
		})
	}
}

type fakeAdmission struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeAdmission) log(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *fakeAdmission) Shed(route string, fr float64, ra time.Duration) error {
	return f.log("shed %s %v %v", route, fr, ra)
}
func (f *fakeAdmission) Throttle(tenant string, rps float64, burst int) error {
	return f.log("throttle %s %v %d", tenant, rps, burst)
}
func (f *fakeAdmission) SetTokenRate(tenant, model string, tpm, burst int64) error {
	return f.log("budget %s/%s %d %d", tenant, model, tpm, burst)
}
func (f *fakeAdmission) Route(from, to string, fr float64) error {
	return f.log("route %s %s %v", from, to, fr)
}
func (f *fakeAdmission) SetWeight(b string, w int) error { return f.log("weight %s %d", b, w) }
func (f *fakeAdmission) SetScoreWeights(q, kv, in, lat, pre float64) error {
	return f.log("scores %v %v %v %v %v", q, kv, in, lat, pre)
}
func (f *fakeAdmission) Eject(b string, d time.Duration) error {
	return f.log("eject %s %v", b, d)
}

func TestAppliers(t *testing.T) {
	adm := &fakeAdmission{}
	broken := &fakeAdmission{err: errors.New("pool is closed")}
	actions := []autoscale.Action{
		autoscale.SetWeight{Pool: "api", Backend: "b1", Weight: 5},
		autoscale.Eject{Pool: "api", Backend: "b2", Duration: 30 * time.Second},
		autoscale.Shed{Route: "/pay", Fraction: 0.25, RetryAfter: 2 * time.Second},
		autoscale.Throttle{Tenant: "acme", RPS: 10, Burst: 20},
		autoscale.Route{From: "/v1", To: "/v2", Fraction: 0.1},
		autoscale.Budget{Tenant: "acme", Model: "llama", TokensPerMinute: 6000, Burst: 500},
		autoscale.ScoreWeights{Pool: "api", Queue: 2, KVCache: 1, Prefix: 4},
		autoscale.SetWeight{Pool: "nope", Backend: "b1", Weight: 5},
		autoscale.ScoreWeights{Pool: "nope", Queue: 1},
		autoscale.SetWeight{Pool: "broken", Backend: "b1", Weight: 5},
		autoscale.Shed{Route: "/pay", Fraction: 2},
		autoscale.Scale{Target: "ghost", Replicas: 1},
		autoscale.Budget{TokensPerMinute: 10},
		autoscale.Budget{Tenant: "acme", TokensPerMinute: -1},
		autoscale.Budget{Tenant: "acme", Burst: autoscale.MaxTokensPerMinute + 1},
		autoscale.ScoreWeights{Pool: "api"},
		autoscale.ScoreWeights{Pool: "api", Queue: -1, Prefix: math.NaN()},
		autoscale.ScoreWeights{Queue: 1},
	}
	policy := autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) { return actions, nil })
	l := newLoop(t, autoscale.WithPolicy(policy),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 1, Actuator: new(actuatortest.Recorder)}),
		autoscale.WithPool("api", adm), autoscale.WithPool("broken", broken),
		autoscale.WithShedder(adm), autoscale.WithThrottler(adm), autoscale.WithRouter(adm), autoscale.WithBudgeter(adm),
		autoscale.WithScorer("api", adm))
	tk := step(t, l, t0)
	var whys []string
	for _, r := range tk.Actions {
		whys = append(whys, r.Why)
	}
	wantWhys := []string{"applied", "applied", "applied", "applied", "applied", "applied", "applied", "no-applier", "no-applier", "error",
		"invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid"}
	if diff := cmp.Diff(wantWhys, whys); diff != "" {
		t.Errorf("whys (-want +got):\n%s", diff)
	}
	wantCalls := []string{"weight b1 5", "eject b2 30s", "shed /pay 0.25 2s", "throttle acme 10 20", "route /v1 /v2 0.1", "budget acme/llama 6000 500",
		"scores 2 1 0 0 4"}
	if diff := cmp.Diff(wantCalls, adm.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if !strings.Contains(tk.Actions[9].Err, "pool is closed") {
		t.Errorf("applier error not recorded: %+v", tk.Actions[9])
	}
	if !strings.Contains(tk.Actions[8].Err, `no scorer "nope"`) {
		t.Errorf("a scorer-less pool not recorded: %+v", tk.Actions[8])
	}
	if _, err := autoscale.NewLoop(autoscale.WithScorer("api", nil)); err == nil {
		t.Error("WithScorer with a nil scorer accepted")
	}
}

// A budget action without a budgeter is recorded as having none, and WithBudgeter
// refuses nil.
func TestBudgetWithoutBudgeter(t *testing.T) {
	policy := autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
		return []autoscale.Action{autoscale.Budget{Tenant: "acme", TokensPerMinute: 60}}, nil
	})
	l := newLoop(t, autoscale.WithPolicy(policy), autoscale.WithTargets(autoscale.Target{Name: "a", Max: 1, Actuator: new(actuatortest.Recorder)}))
	tk := step(t, l, t0)
	if len(tk.Actions) != 1 || tk.Actions[0].Why != autoscale.WhyNoApplier || !strings.Contains(tk.Actions[0].Err, "no budgeter") {
		t.Errorf("actions %+v", tk.Actions)
	}
	if _, err := autoscale.NewLoop(autoscale.WithBudgeter(nil)); err == nil {
		t.Error("WithBudgeter(nil) accepted")
	}
}

func TestPolicyFailure(t *testing.T) {
	boom := errors.New("script error")
	tests := []struct {
		name     string
		policy   autoscale.Policy
		fallback *autoscale.Fallback
		want     []int // desired per tick
		wantReqs []int
	}{
		{
			name:   "error holds",
			policy: autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) { return nil, boom }),
			want:   []int{4, 4, 4},
		},
		{
			name:     "error falls back after two ticks",
			policy:   autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) { return nil, boom }),
			fallback: &autoscale.Fallback{FailureThreshold: 2, Replicas: 8},
			want:     []int{4, 8, 8},
			wantReqs: []int{8},
		},
		{
			name: "panic is recovered and holds",
			policy: autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
				panic("bad policy")
			}),
			want: []int{4, 4, 4},
		},
		{
			name: "invalid scale action is a failure",
			policy: autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
				return []autoscale.Action{autoscale.Scale{Target: "a", Replicas: -3}}, nil
			}),
			fallback: &autoscale.Fallback{FailureThreshold: 1, Replicas: 6},
			want:     []int{6, 6, 6},
			wantReqs: []int{6},
		},
		{
			name: "missing metrics for one target, actions for the other applied",
			policy: autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
				return []autoscale.Action{autoscale.Scale{Target: "b", Replicas: 2}}, fmt.Errorf("a: %w", autoscale.ErrMissingMetrics)
			}),
			want: []int{4, 4, 4},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := new(actuatortest.Recorder)
			rec.SetReplicas(actuator.Target{Name: "a"}, 4)
			rec.SetReplicas(actuator.Target{Name: "b"}, 1)
			s := free
			s.Fallback = tc.fallback
			l := newLoop(t, autoscale.WithPolicy(tc.policy), autoscale.WithDefaultActuator(rec),
				autoscale.WithTargets(autoscale.Target{Name: "a", Max: 10, Safety: s}, autoscale.Target{Name: "b", Max: 10, Safety: free}))
			var got []int
			for i := range tc.want {
				tk := step(t, l, t0.Add(time.Duration(i)*time.Second))
				flush(t, l)
				got = append(got, tk.Decisions[0].Desired)
				if tk.PolicyErr == "" && tk.Decisions[0].Policy.Err == "" {
					t.Fatalf("tick %d: failure not recorded: %+v", i, tk.Decisions[0])
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("desired (-want +got):\n%s", diff)
			}
			var reqs []int
			for _, r := range rec.Requests() {
				if r.Target.Name == "a" {
					reqs = append(reqs, r.Replicas)
				}
			}
			if diff := cmp.Diff(tc.wantReqs, reqs); diff != "" {
				t.Errorf("requests for a (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShadow(t *testing.T) {
	rec := new(actuatortest.Recorder)
	rec.SetReplicas(actuator.Target{Name: "a"}, 2)
	l := newLoop(t, autoscale.WithPolicy(scaleTo("a", 4)), autoscale.WithDefaultActuator(rec),
		autoscale.WithShadow("same", scaleTo("a", 4)), autoscale.WithShadow("bigger", scaleTo("a", 9)),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 10, Safety: free}))
	tk := step(t, l, t0)
	flush(t, l)
	d := tk.Decisions[0]
	want := []autoscale.ShadowOutput{
		{Policy: "same", Output: autoscale.PolicyOutput{Present: true, Replicas: 4, Reason: "test"}},
		{Policy: "bigger", Output: autoscale.PolicyOutput{Present: true, Replicas: 9, Reason: "test"}, Differs: true},
	}
	if diff := cmp.Diff(want, d.Shadows); diff != "" {
		t.Errorf("shadows (-want +got):\n%s", diff)
	}
	if tk.Shadows[0].Differences != 0 || tk.Shadows[1].Differences != 1 {
		t.Errorf("tick shadows = %+v", tk.Shadows)
	}
	if reqs := rec.Requests(); len(reqs) != 1 || reqs[0].Replicas != 4 {
		t.Errorf("requests = %+v, want only the live policy's 4", reqs)
	}
}

// gate is an actuator whose calls block until released.
type gate struct {
	mu        sync.Mutex
	calls     []int
	entered   chan int
	release   chan error
	ignoreCtx bool // wait for release even when the call's context ends
}

func newGate() *gate { return &gate{entered: make(chan int, 16), release: make(chan error)} }

func (g *gate) Scale(ctx context.Context, req actuator.Request) error {
	g.mu.Lock()
	g.calls = append(g.calls, req.Replicas)
	g.mu.Unlock()
	g.entered <- req.Replicas
	done := ctx.Done()
	if g.ignoreCtx {
		done = nil
	}
	select {
	case err := <-g.release:
		return err
	case <-done:
		return ctx.Err()
	}
}

func (g *gate) got() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// TestLatestWins checks that a newer request supersedes an older one: the one in
// flight has its context cancelled and is not retried (the loop has 3 attempts), and
// the newest is applied.
func TestLatestWins(t *testing.T) {
	g := newGate()
	ask := 5
	policy := autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
		return []autoscale.Action{autoscale.Scale{Target: "a", Replicas: ask}}, nil
	})
	l := newLoop(t, autoscale.WithPolicy(policy), autoscale.WithDefaultActuator(g),
		autoscale.WithActuation(autoscale.Actuation{Attempts: 3}),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 20, Safety: free}))

	d5 := step(t, l, t0).Decisions[0]
	<-g.entered // 5 is in flight
	d5again := step(t, l, t0.Add(time.Second)).Decisions[0]
	if d5again.Why != autoscale.WhyInFlight {
		t.Fatalf("same ask while in flight: why = %q, want in-flight", d5again.Why)
	}
	ask = 7
	d7 := step(t, l, t0.Add(2*time.Second)).Decisions[0] // cancels 5's call
	<-g.entered                                          // 7 starts; 5 was not retried
	ask = 9
	d9 := step(t, l, t0.Add(3*time.Second)).Decisions[0] // cancels 7's call
	if !d7.Applied || !d9.Applied {
		t.Fatalf("7 and 9 not dispatched: %+v %+v", d7, d9)
	}
	<-g.entered // 9 starts
	g.release <- nil
	flush(t, l)
	if diff := cmp.Diff([]int{5, 7, 9}, g.got()); diff != "" {
		t.Fatalf("actuator calls (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		id         string
		superseded bool
	}{{d5.ID, true}, {d7.ID, true}, {d9.ID, false}} {
		d, ok := l.Decision(c.id)
		if !ok || !d.Actuation.Done || d.Actuation.Superseded != c.superseded || d.Actuation.Attempts != 1 {
			t.Errorf("decision %s actuation = %+v, want superseded %v after 1 attempt", c.id, d.Actuation, c.superseded)
		}
		if c.superseded && !strings.Contains(d.Actuation.Err, context.Canceled.Error()) {
			t.Errorf("decision %s: error %q, want its call's context cancelled", c.id, d.Actuation.Err)
		}
	}
	if st := l.Targets()[0]; st.Replicas != 9 {
		t.Errorf("current = %d, want 9", st.Replicas)
	}
}

// TestSupersededBeforeStart checks that a request still waiting for the worker is
// dropped, never called, when a newer one arrives.
func TestSupersededBeforeStart(t *testing.T) {
	g := newGate()
	g.ignoreCtx = true // 5 stays in flight though superseded, so 7 waits behind it
	ask := 5
	policy := autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
		return []autoscale.Action{autoscale.Scale{Target: "a", Replicas: ask}}, nil
	})
	l := newLoop(t, autoscale.WithPolicy(policy), autoscale.WithDefaultActuator(g),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 20, Safety: free}))
	step(t, l, t0)
	<-g.entered
	ask = 7
	d7 := step(t, l, t0.Add(time.Second)).Decisions[0]
	ask = 9
	step(t, l, t0.Add(2*time.Second))
	g.release <- nil // 5 returns
	<-g.entered      // 9 starts; 7 never did
	g.release <- nil
	flush(t, l)
	if diff := cmp.Diff([]int{5, 9}, g.got()); diff != "" {
		t.Fatalf("actuator calls (-want +got):\n%s", diff)
	}
	if d, _ := l.Decision(d7.ID); !d.Actuation.Superseded || d.Actuation.Attempts != 0 {
		t.Errorf("7's actuation = %+v, want superseded before any attempt", d.Actuation)
	}
}

type flaky struct {
	mu    sync.Mutex
	fails int
	err   error
	calls int
}

func (f *flaky) Scale(ctx context.Context, req actuator.Request) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return f.err
	}
	return nil
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		act          *flaky
		attempts     int
		wantAttempts int
		wantErr      bool
	}{
		{"retryable errors are retried", &flaky{fails: 2, err: errors.New("503")}, 5, 3, false},
		{"permanent errors are not", &flaky{fails: 2, err: actuator.Permanent(errors.New("forbidden"))}, 5, 1, true},
		{"attempts run out", &flaky{fails: 9, err: errors.New("503")}, 3, 3, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLoop(t, autoscale.WithPolicy(scaleTo("a", 3)), autoscale.WithDefaultActuator(tc.act),
				autoscale.WithRand(zeroSource{}), // zero back-off
				autoscale.WithActuation(autoscale.Actuation{Attempts: tc.attempts}),
				autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Safety: free}))
			d := step(t, l, t0).Decisions[0]
			flush(t, l)
			got, _ := l.Decision(d.ID)
			if got.Actuation.Attempts != tc.wantAttempts || (got.Actuation.Err != "") != tc.wantErr {
				t.Fatalf("actuation = %+v, want %d attempts, error %v", got.Actuation, tc.wantAttempts, tc.wantErr)
			}
			wantCurrent := 3
			if tc.wantErr {
				wantCurrent = -1
			}
			if st := l.Targets()[0]; st.Replicas != wantCurrent {
				t.Fatalf("current = %d, want %d", st.Replicas, wantCurrent)
			}
		})
	}
}

func TestActuatorTimeout(t *testing.T) {
	g := newGate() // never released: only the timeout ends the call
	l := newLoop(t, autoscale.WithPolicy(scaleTo("a", 3)), autoscale.WithDefaultActuator(g),
		autoscale.WithActuation(autoscale.Actuation{Timeout: 20 * time.Millisecond, Attempts: 1}),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Safety: free}))
	d := step(t, l, t0).Decisions[0]
	flush(t, l)
	got, _ := l.Decision(d.ID)
	if !strings.Contains(got.Actuation.Err, context.DeadlineExceeded.Error()) {
		t.Fatalf("actuation = %+v, want a deadline error", got.Actuation)
	}
}

func TestCloseCancelsActuation(t *testing.T) {
	g := newGate()
	l, err := autoscale.NewLoop(autoscale.WithPolicy(scaleTo("a", 3)), autoscale.WithDefaultActuator(g),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Safety: free}))
	if err != nil {
		t.Fatal(err)
	}
	step(t, l, t0)
	<-g.entered
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := l.Step(context.Background(), t0); !errors.Is(err, autoscale.ErrClosed) {
		t.Fatalf("Step after Close: %v, want ErrClosed", err)
	}
	if err := l.Run(context.Background()); !errors.Is(err, autoscale.ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
}

func TestRunEndsWithContext(t *testing.T) {
	called := make(chan struct{}, 1)
	act := actuator.Func(func(ctx context.Context, req actuator.Request) error {
		select {
		case called <- struct{}{}:
		default:
		}
		return nil
	})
	l, err := autoscale.NewLoop(autoscale.WithPolicy(scaleTo("a", 3)), autoscale.WithDefaultActuator(act),
		autoscale.WithTick(autoscale.MinTick),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Safety: free}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("Run made no actuator call")
	}
	if err := l.Run(ctx); !errors.Is(err, autoscale.ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if _, err := l.Step(context.Background(), t0); !errors.Is(err, autoscale.ErrClosed) {
		t.Fatalf("Step after Run: %v, want ErrClosed", err)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	l := newLoop(t, autoscale.WithPolicy(scaleTo("a", 1)), autoscale.WithHistory(3), autoscale.WithDryRun(true),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Actuator: new(actuatortest.Recorder)}))
	var ids []string
	for i := range 5 {
		ids = append(ids, step(t, l, t0.Add(time.Duration(i)*time.Second)).Decisions[0].ID)
	}
	var got []string
	for _, d := range l.Decisions() {
		got = append(got, d.ID)
	}
	if diff := cmp.Diff(ids[2:], got); diff != "" {
		t.Fatalf("kept IDs (-want +got):\n%s", diff)
	}
}

// TestReaction: with a manual clock, a tenfold load step is answered by an actuator
// call on the first tick after the window sees it.
func TestReaction(t *testing.T) {
	clock := metrics.NewManualClock(t0)
	reg, err := metrics.NewRegistry(metrics.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	w := reg.Window(metrics.ScopeRoute, "checkout")
	policy, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{
		Source: autoscale.Source{Signal: autoscale.SignalRate}, Span: 5 * time.Second, TargetValue: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := new(actuatortest.Recorder)
	rec.SetReplicas(actuator.Target{Name: "checkout"}, 1)
	l := newLoop(t, autoscale.WithPolicy(policy), autoscale.WithRegistry(reg), autoscale.WithClock(clock),
		autoscale.WithTargets(autoscale.Target{Name: "checkout", Min: 1, Max: 50, Actuator: rec}))

	load := func(rps int) {
		for i := range rps {
			w.RecordAt(clock.Now().Add(time.Duration(i)*time.Second/time.Duration(rps)), metrics.Observation{Latency: 20 * time.Millisecond})
		}
		clock.Advance(time.Second)
	}
	for range 10 { // steady: 10 rps on one replica
		load(10)
		if d := step(t, l, clock.Now()).Decisions[0]; d.Applied {
			t.Fatalf("steady load scaled: %+v", d)
		}
	}
	load(100) // the step: the window now holds a second of 100 rps
	d := step(t, l, clock.Now()).Decisions[0]
	if !d.Applied || d.Desired <= 1 {
		t.Fatalf("first tick after the load step did not scale up: %+v", d)
	}
	flush(t, l)
	if r, ok := rec.Last(actuator.Target{Name: "checkout"}); !ok || r.Replicas != d.Desired {
		t.Fatalf("actuator got %+v, want %d replicas", r, d.Desired)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Key != "checkout" || d.Inputs[0].Snapshot.Rate < 20 {
		t.Fatalf("inputs not recorded: %+v", d.Inputs)
	}
}

func TestNoActuatorRepliesLeavesCurrentUnknown(t *testing.T) {
	var calls int
	act := actuator.Func(func(context.Context, actuator.Request) error { calls++; return nil })
	l := newLoop(t, autoscale.WithPolicy(scaleTo("a", 1000)), autoscale.WithDefaultActuator(act),
		autoscale.WithTargets(autoscale.Target{Name: "a", Min: 1, Max: 4}))
	d := step(t, l, t0).Decisions[0]
	if d.Current != -1 || d.Desired != 4 || d.Direction != autoscale.Up {
		t.Fatalf("decision = %+v", d)
	}
	flush(t, l)
	d = step(t, l, t0.Add(time.Second)).Decisions[0]
	if d.Current != 4 || d.Why != autoscale.WhyUnchanged || calls != 1 {
		t.Fatalf("after applying: decision = %+v, calls %d", d, calls)
	}
}

type nopActuator struct{}

func (nopActuator) Scale(context.Context, actuator.Request) error { return nil }

// BenchmarkStepGo100 is a Step over 100 targets with the Go target-tracking policy.
func BenchmarkStepGo100(b *testing.B) {
	p, err := autoscale.TargetTracking(autoscale.TargetTrackingConfig{TargetValue: 10})
	if err != nil {
		b.Fatal(err)
	}
	benchStep(b, p)
}

// fencer leads with a fencing token.
type fencer struct{ term uint64 }

func (fencer) IsLeader() bool { return true }
func (f fencer) Term() uint64 { return f.term }

var _ autoscale.Fencer = fencer{}

// TestRequestsCarryASequence: each request names the loop's stream, numbers
// its decisions in order, and carries the elector's fencing token; another
// loop has another stream.
func TestRequestsCarryASequence(t *testing.T) {
	var seqs [][]actuator.Sequence
	for range 2 {
		rec := new(actuatortest.Recorder)
		var n int
		l := newLoop(t, autoscale.WithElector(fencer{term: 7}),
			autoscale.WithPolicy(autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
				n++
				return []autoscale.Action{autoscale.Scale{Target: "checkout", Replicas: n}}, nil
			})),
			autoscale.WithTargets(autoscale.Target{Name: "checkout", Max: 10, Actuator: rec, Safety: free}))
		var got []actuator.Sequence
		for i := range 3 {
			tk := step(t, l, t0.Add(time.Duration(i)*time.Second))
			if tk.Term != 7 {
				t.Errorf("tick term = %d, want 7", tk.Term)
			}
			flush(t, l)
		}
		for _, r := range rec.Requests() {
			got = append(got, r.Seq)
			if !strings.HasSuffix(r.DecisionID, fmt.Sprintf("-%d", r.Seq.N)) || !strings.HasPrefix(r.DecisionID, r.Seq.Stream+"-") {
				t.Errorf("decision %s has sequence %+v", r.DecisionID, r.Seq)
			}
		}
		if len(got) != 3 {
			t.Fatalf("%d requests, want 3", len(got))
		}
		for i, s := range got {
			if s.Term != 7 || s.Stream == "" || s.Stream != got[0].Stream || s.N != uint64(i+1) {
				t.Errorf("request %d: sequence %+v, want term 7, stream %q, number %d", i, s, got[0].Stream, i+1)
			}
		}
		seqs = append(seqs, got)
	}
	if seqs[0][0].Stream == seqs[1][0].Stream {
		t.Errorf("two loops share the stream %q", seqs[0][0].Stream)
	}
}

// TestRunTicksOnTheClock drives Run with a manual clock: a step at the start, one per
// tick advanced, none before the tick is due, and a step that finds the clock far ahead
// skips the ticks it missed.
func TestRunTicksOnTheClock(t *testing.T) {
	clk := metrics.NewManualClock(t0)
	steps := make(chan time.Time, 10)
	l, err := autoscale.NewLoop(autoscale.WithPolicy(scaleTo("a", 3)), autoscale.WithDefaultActuator(new(actuatortest.Recorder)),
		autoscale.WithClock(clk), autoscale.WithTick(time.Second),
		autoscale.WithObserver(func(tk autoscale.Tick) { steps <- tk.Time }),
		autoscale.WithTargets(autoscale.Target{Name: "a", Max: 5, Safety: free}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	wantStep := func(want time.Time) {
		t.Helper()
		if got := <-steps; !got.Equal(want) {
			t.Fatalf("step at %v, want %v", got, want)
		}
		if err := clk.WaitTimers(ctx, 1); err != nil { // Run waits for the next tick
			t.Fatal(err)
		}
	}
	wantStep(t0)
	clk.Advance(999 * time.Millisecond)
	select {
	case at := <-steps:
		t.Fatalf("step at %v before the tick", at)
	default:
	}
	clk.Advance(time.Millisecond)
	wantStep(t0.Add(time.Second))
	clk.Advance(3500 * time.Millisecond) // the clock jumps: one step, then the next whole tick
	wantStep(t0.Add(4500 * time.Millisecond))
	if at, _ := clk.NextTimer(); !at.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("next tick at %v, want %v", at, t0.Add(5*time.Second))
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
}
