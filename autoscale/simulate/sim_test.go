package simulate_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
)

// fixed is a policy that asks for n replicas from the first tick.
func fixed(n int) simulate.Policy {
	return simulate.Policy{Name: "fixed", Safety: autoscale.Safety{ScaleUp: &autoscale.Rules{}, ScaleDown: &autoscale.Rules{}},
		New: func(e simulate.Env) (autoscale.Policy, func() error, error) {
			return autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
				return []autoscale.Action{autoscale.Scale{Target: e.Target, Replicas: n}}, nil
			}), nil, nil
		}}
}

func mustShipped(t testing.TB, name string) simulate.Policy {
	t.Helper()
	p, err := simulate.Shipped(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t testing.TB, sc simulate.Scenario, p simulate.Policy, seed uint64) *simulate.Result {
	t.Helper()
	res, err := simulate.Run(context.Background(), simulate.Config{Scenario: sc, Policy: p, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func csvOf(t testing.TB, r *simulate.Result) string {
	var b bytes.Buffer
	if err := r.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestSameSeedSameResult(t *testing.T) {
	sc, _ := simulate.ScenarioByName("multi-tenant")
	sc.Duration = 5 * time.Minute
	if raceEnabled {
		sc = lighter(sc)
	}
	sc.Service.CrashEvery = 2 * time.Minute
	sc.Service.FailureRate = 0.001
	for _, name := range []string{"adaptive", "kpa", "kpa_go"} {
		t.Run(name, func(t *testing.T) {
			a := run(t, sc, mustShipped(t, name), 42)
			b := run(t, sc, mustShipped(t, name), 42)
			if a.Summary.String() != b.Summary.String() {
				t.Fatalf("summaries differ:\n%s\n%s", a.Summary, b.Summary)
			}
			if csvOf(t, a) != csvOf(t, b) {
				t.Fatal("timelines differ")
			}
			c := run(t, sc, mustShipped(t, name), 43)
			if c.Summary.String() == a.Summary.String() {
				t.Fatal("another seed gave the same summary")
			}
		})
	}
}

func TestLuaAndGoTwinsAgree(t *testing.T) {
	sc, _ := simulate.ScenarioByName("step")
	sc.Duration = 10 * time.Minute
	if raceEnabled {
		sc = lighter(sc)
	}
	for _, pair := range [][2]string{{"kpa", "kpa_go"}, {"target_tracking", "target_tracking_go"}} {
		t.Run(pair[0], func(t *testing.T) {
			a, b := run(t, sc, mustShipped(t, pair[0]), 1), run(t, sc, mustShipped(t, pair[1]), 1)
			if diff := cmp.Diff(a.Scales, b.Scales); diff != "" {
				t.Fatalf("lua (-) and go (+) scaled differently:\n%s", diff)
			}
		})
	}
}

func TestArrivalsFollowTheProfile(t *testing.T) {
	tests := []struct {
		name    string
		profile simulate.Profile
		want    float64 // expected requests over 200 s
	}{
		{"constant", simulate.Constant(50), 10000},
		{"step", simulate.Step{From: 10, To: 90, At: 100 * time.Second}, 10000},
		{"ramp", simulate.Ramp{From: 0, To: 100, Start: 0, Length: 200 * time.Second}, 9950},
		{"mix", simulate.Mix{{Name: "a", Profile: simulate.Constant(20)}, {Name: "b", Profile: simulate.Constant(30)}}, 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := simulate.Scenario{Name: tt.name, Duration: 200 * time.Second, Traffic: tt.profile,
				Service: simulate.Service{Replicas: 20, Max: 20}}
			got := float64(run(t, sc, fixed(20), 7).Summary.Requests)
			if math.Abs(got-tt.want) > 5*math.Sqrt(tt.want) {
				t.Fatalf("%v requests, want %v ± 5σ", got, tt.want)
			}
		})
	}
}

func TestProfiles(t *testing.T) {
	b, err := simulate.NewBursty(100, 4, time.Minute, 10*time.Second, 20*time.Second, time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	bursts := b.Bursts()
	if len(bursts) < 20 || len(bursts) > 100 {
		t.Fatalf("%d bursts in an hour, want about 50", len(bursts))
	}
	mid := (bursts[0][0] + bursts[0][1]) / 2
	tests := []struct {
		name string
		p    simulate.Profile
		t    time.Duration
		want float64
	}{
		{"constant", simulate.Constant(7), time.Hour, 7},
		{"step before", simulate.Step{From: 1, To: 2, At: time.Minute}, time.Minute - 1, 1},
		{"step at", simulate.Step{From: 1, To: 2, At: time.Minute}, time.Minute, 2},
		{"ramp middle", simulate.Ramp{From: 10, To: 30, Start: time.Minute, Length: time.Minute}, 90 * time.Second, 20},
		{"ramp after", simulate.Ramp{From: 10, To: 30, Start: time.Minute, Length: time.Minute}, time.Hour, 30},
		{"flash base", simulate.FlashSale{Base: 100, Peak: 15, Start: time.Minute, Rise: time.Minute, Hold: time.Minute, Fall: time.Minute}, 0, 100},
		{"flash peak", simulate.FlashSale{Base: 100, Peak: 15, Start: time.Minute, Rise: time.Minute, Hold: time.Minute, Fall: time.Minute}, 150 * time.Second, 1500},
		{"flash after", simulate.FlashSale{Base: 100, Peak: 15, Start: time.Minute, Rise: time.Minute, Hold: time.Minute, Fall: time.Minute}, time.Hour, 100},
		{"diurnal trough", simulate.Diurnal{Min: 10, Max: 50}, 0, 10},
		{"diurnal peak", simulate.Diurnal{Min: 10, Max: 50}, 12 * time.Hour, 50},
		{"burst", b, mid, 400},
		{"between bursts", b, bursts[0][0] - time.Second, 100},
		{"sum", simulate.Sum{simulate.Constant(1), simulate.Constant(2)}, 0, 3},
		{"scaled", simulate.Scaled{Profile: simulate.Constant(10), Factor: 0.5}, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Rate(tt.t); math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("Rate(%v) = %v, want %v", tt.t, got, tt.want)
			}
		})
	}
}

func TestReadTrace(t *testing.T) {
	tests := []struct {
		name     string
		csv      string
		requests int
		length   time.Duration
		err      bool
	}{
		{"timestamps", "timestamp\n1700000000.1\n1700000000.5\n1700000002.25\n", 3, 3 * time.Second, false},
		{"offsets with comments", "# recorded\n0.5\n\n0.7\n", 2, time.Second, false},
		{"counts", "second,count\n0,10\n1,20\n3,5\n", 35, 4 * time.Second, false},
		{"unix counts", "1700000000,4\n1700000001,6\n", 10, 2 * time.Second, false},
		{"decreasing timestamps", "2\n1\n", 0, 0, true},
		{"repeated second", "0,1\n0,2\n", 0, 0, true},
		{"fractional count", "0,1.5\n", 0, 0, true},
		{"negative count", "0,-1\n", 0, 0, true},
		{"three columns", "0,1,2\n", 0, 0, true},
		{"mixed columns", "0,1\n2\n", 0, 0, true},
		{"not a number", "0\nx\n", 0, 0, true},
		{"empty", "timestamp\n", 0, 0, true},
		{"nan", "NaN\n", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := simulate.ReadTrace(strings.NewReader(tt.csv))
			if tt.err {
				if !errors.Is(err, simulate.ErrInvalidTrace) {
					t.Fatalf("err = %v, want ErrInvalidTrace", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.Requests() != tt.requests || tr.Length() != tt.length {
				t.Fatalf("%d requests over %v, want %d over %v", tr.Requests(), tr.Length(), tt.requests, tt.length)
			}
		})
	}
}

func TestTraceReplay(t *testing.T) {
	for _, csv := range []string{"0.1\n0.2\n0.3\n5.5\n5.6\n9.9\n", "second,count\n0,30\n1,0\n2,45\n9,7\n"} {
		tr, err := simulate.ReadTrace(strings.NewReader(csv))
		if err != nil {
			t.Fatal(err)
		}
		res := run(t, simulate.TraceScenario("trace", tr), fixed(1), 1)
		if got := res.Summary.Requests; got != uint64(tr.Requests()) {
			t.Fatalf("replayed %d requests, the trace has %d", got, tr.Requests())
		}
		for i, s := range res.Timeline {
			if float64(s.Arrivals) != tr.Rate(time.Duration(i)*time.Second) {
				t.Fatalf("second %d: %d arrivals, the trace has %v", i, s.Arrivals, tr.Rate(time.Duration(i)*time.Second))
			}
		}
	}
}

func TestColdStartAndCost(t *testing.T) {
	sc := simulate.Scenario{Name: "cold", Duration: 60 * time.Second, Traffic: simulate.Constant(10),
		Service: simulate.Service{Replicas: 1, Max: 10, ColdStart: 20 * time.Second, ScaleDownDelay: 5 * time.Second}}
	res := run(t, sc, fixed(4), 1)
	// The first tick is at 1 s (less a millisecond); the three new replicas serve 20 s later.
	for _, s := range res.Timeline {
		wantReady := 4
		if s.T < 20*time.Second {
			wantReady = 1
		}
		if s.T > 0 && (s.Ready != wantReady || s.Replicas != 4) {
			t.Fatalf("at %v: %d ready of %d, want %d of 4", s.T, s.Ready, s.Replicas, wantReady)
		}
	}
	// 1 replica for ~1 s, then 4 (starting replicas are billed).
	if got, want := res.Summary.ReplicaSeconds, 1+59*4.0; math.Abs(got-want) > 0.01 {
		t.Fatalf("replica-seconds %v, want %v", got, want)
	}
	if res.Summary.ScaleEvents != 1 || res.Summary.Flaps != 0 {
		t.Fatalf("%d scale events, %d flaps", res.Summary.ScaleEvents, res.Summary.Flaps)
	}
}

func TestOverloadQueuesThenTimesOut(t *testing.T) {
	// One replica serving 10 at 100 ms: 100 rps. 300 rps arrive.
	sc := simulate.Scenario{Name: "overload", Duration: 2 * time.Minute, Traffic: simulate.Constant(300),
		Service: simulate.Service{Replicas: 1, Max: 1, Timeout: 10 * time.Second, ServiceTime: simulate.Fixed(100 * time.Millisecond)}}
	s := run(t, sc, fixed(1), 1).Summary
	if served := float64(s.Served) / sc.Duration.Seconds(); math.Abs(served-100) > 2 {
		t.Fatalf("served %v rps, want the capacity, 100", served)
	}
	if s.Failed == 0 || s.Max < 10*time.Second || s.Max > 10*time.Second+200*time.Millisecond {
		t.Fatalf("failed %d, max latency %v: want timeouts at 10 s", s.Failed, s.Max)
	}
	// A queue depth turns the excess away at once instead.
	sc.Service.QueueDepth = 5
	s = run(t, sc, fixed(1), 1).Summary
	if s.Failed < uint64(150*sc.Duration.Seconds()) || s.Max > time.Second {
		t.Fatalf("failed %d, max %v: want fast 503s", s.Failed, s.Max)
	}
}

func TestScaleToZeroBuffersUntilAReplicaServes(t *testing.T) {
	sc := simulate.Scenario{Name: "zero", Duration: 3 * time.Minute,
		Traffic: simulate.Step{From: 0, To: 20, At: time.Minute},
		Service: simulate.Service{InitialZero: true, Max: 10, ColdStart: 5 * time.Second}}
	res := run(t, sc, mustShipped(t, "adaptive"), 1)
	s := res.Summary
	if s.Requests == 0 || s.Failed != 0 || s.Served+5 < s.Requests { // a few are in flight at the end
		t.Fatalf("requests %d served %d failed %d: want every request served", s.Requests, s.Served, s.Failed)
	}
	if res.Timeline[30].Replicas != 0 || res.Timeline[150].Ready == 0 {
		t.Fatalf("replicas %d at 30 s and %d ready at 150 s", res.Timeline[30].Replicas, res.Timeline[150].Ready)
	}
	// The first requests waited for the cold start.
	if s.Max < 5*time.Second {
		t.Fatalf("max latency %v, want at least the cold start", s.Max)
	}
}

func TestCrashesFailRequests(t *testing.T) {
	sc := simulate.Scenario{Name: "crash", Duration: 10 * time.Minute, Traffic: simulate.Constant(200),
		Service: simulate.Service{Replicas: 4, Max: 4, CrashEvery: time.Minute}}
	s := run(t, sc, fixed(4), 1).Summary
	if s.Failed == 0 {
		t.Fatal("no failure with crashes every minute")
	}
	sc.Service.CrashEvery = 0
	if s := run(t, sc, fixed(4), 1).Summary; s.Failed != 0 {
		t.Fatalf("%d failures without crashes", s.Failed)
	}
}

func TestShedAndThrottleGoThroughAdmission(t *testing.T) {
	policy := simulate.Policy{Name: "shed", New: func(e simulate.Env) (autoscale.Policy, func() error, error) {
		return autoscale.PolicyFunc(func(_ context.Context, in *autoscale.Input) ([]autoscale.Action, error) {
			return []autoscale.Action{
				autoscale.Shed{Route: e.Route, Fraction: 0.5},
				autoscale.Throttle{Tenant: "b", RPS: 0, Burst: 1},
			}, nil
		}), nil, nil
	}}
	sc := simulate.Scenario{Name: "shed", Duration: 2 * time.Minute,
		Traffic: simulate.Mix{{Name: "a", Profile: simulate.Constant(100)}, {Name: "b", Profile: simulate.Constant(100)}},
		Service: simulate.Service{Replicas: 5, Max: 5}}
	s := run(t, sc, policy, 1).Summary
	// After the first tick: a's half shed, b's half that passes shedding throttled.
	want := 0.75 * float64(s.Requests)
	if got := float64(s.Shed); math.Abs(got-want) > 0.03*want {
		t.Fatalf("shed %v of %d, want about %v", got, s.Requests, want)
	}
}

func TestFlaps(t *testing.T) {
	ev := func(at, from, to int) simulate.ScaleEvent {
		return simulate.ScaleEvent{At: time.Duration(at) * time.Second, From: from, To: to}
	}
	tests := []struct {
		name   string
		events []simulate.ScaleEvent
		want   int
	}{
		{"none", nil, 0},
		{"same direction", []simulate.ScaleEvent{ev(0, 1, 2), ev(10, 2, 3), ev(20, 3, 4)}, 0},
		{"up then down", []simulate.ScaleEvent{ev(0, 1, 2), ev(60, 2, 1)}, 1},
		{"down then up", []simulate.ScaleEvent{ev(0, 3, 2), ev(120, 2, 3)}, 1},
		{"outside the window", []simulate.ScaleEvent{ev(0, 1, 2), ev(121, 2, 1)}, 0},
		{"oscillation", []simulate.ScaleEvent{ev(0, 1, 2), ev(10, 2, 1), ev(20, 1, 2), ev(30, 2, 1)}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := simulate.Flaps(tt.events, 120*time.Second); got != tt.want {
				t.Fatalf("Flaps = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestReactionToAStep(t *testing.T) {
	sc, _ := simulate.ScenarioByName("step")
	sc.Duration = 10 * time.Minute
	s := run(t, sc, mustShipped(t, "adaptive"), 1).Summary
	if len(s.Reactions) != 1 || !s.Reactions[0].Up {
		t.Fatalf("reactions %+v, want one rise", s.Reactions)
	}
	r := s.Reactions[0]
	// Detected within the 10 s mean, covered after a cold start (10 s) and a few ticks.
	if r.At < 5*time.Minute || r.At > 5*time.Minute+10*time.Second || r.After < 10*time.Second || r.After > 30*time.Second {
		t.Fatalf("reaction %+v", r)
	}
}

func TestInvalidConfig(t *testing.T) {
	good := simulate.Scenario{Name: "x", Duration: time.Minute, Traffic: simulate.Constant(1)}
	tests := []struct {
		name string
		cfg  simulate.Config
	}{
		{"no scenario name", simulate.Config{Scenario: simulate.Scenario{Duration: time.Minute, Traffic: simulate.Constant(1)}, Policy: fixed(1)}},
		{"no traffic", simulate.Config{Scenario: simulate.Scenario{Name: "x", Duration: time.Minute}, Policy: fixed(1)}},
		{"short", simulate.Config{Scenario: simulate.Scenario{Name: "x", Duration: time.Millisecond, Traffic: simulate.Constant(1)}, Policy: fixed(1)}},
		{"min above max", simulate.Config{Scenario: simulate.Scenario{Name: "x", Duration: time.Minute, Traffic: simulate.Constant(1), Service: simulate.Service{Min: 5, Max: 2}}, Policy: fixed(1)}},
		{"bad failure rate", simulate.Config{Scenario: simulate.Scenario{Name: "x", Duration: time.Minute, Traffic: simulate.Constant(1), Service: simulate.Service{FailureRate: 2}}, Policy: fixed(1)}},
		{"empty mix", simulate.Config{Scenario: simulate.Scenario{Name: "x", Duration: time.Minute, Traffic: simulate.Mix{}}, Policy: fixed(1)}},
		{"no policy", simulate.Config{Scenario: good}},
		{"tick too short", simulate.Config{Scenario: good, Policy: simulate.Policy{Name: "p", Tick: time.Millisecond, New: fixed(1).New}}},
		{"negative flap window", simulate.Config{Scenario: good, Policy: fixed(1), FlapWindow: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := simulate.Run(context.Background(), tt.cfg); !errors.Is(err, simulate.ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := simulate.Shipped("nope"); !errors.Is(err, simulate.ErrUnknownPolicy) {
		t.Fatalf("Shipped(nope) = %v", err)
	}
	if _, err := simulate.NewBursty(1, 0.5, time.Second, time.Second, time.Second, time.Minute, 1); !errors.Is(err, simulate.ErrInvalidConfig) {
		t.Fatalf("NewBursty with factor 0.5: %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sc := simulate.Scenario{Name: "x", Duration: time.Minute, Traffic: simulate.Constant(1)}
	if _, err := simulate.Run(ctx, simulate.Config{Scenario: sc, Policy: fixed(1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
