package redisstate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/internal/redistest"
	"github.com/autoscalelua/autoscalelua/metrics"
)

var t0 = time.Unix(20_000, 0)

func req(name string, n int, id string, at time.Time) actuator.Request {
	return actuator.Request{Target: actuator.Target{Name: name}, Replicas: n, Previous: -1, DecisionID: id, Time: at}
}

func TestConfigErrors(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err := NewElector(nil, ElectorConfig{LeaseDuration: time.Second, RenewDeadline: 2 * time.Second}, WithElectorClock(nil))
	for _, w := range []string{"nil redis client", "lock key is required", "renew deadline 2s", "nil clock"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("elector error %v does not say %q", err, w)
		}
	}
	if _, err := NewActuator(nil, ActuatorConfig{MaxLen: -1}, WithFence(nil)); !errors.Is(err, ErrInvalidConfig) ||
		!strings.Contains(err.Error(), "nil elector") || !strings.Contains(err.Error(), "max length") {
		t.Errorf("actuator error %v", err)
	}
	if _, err := NewConsumer(c, nil, ConsumerConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("consumer without an actuator: %v", err)
	}
}

// TestFailover: two electors; the leader is paused past its lease; the other takes over
// within the lease; the old leader's late actuation is refused by its stale token, and
// its fence refuses new calls once its renew deadline has passed.
func TestFailover(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	cfg := ElectorConfig{Key: "gw:leader", LeaseDuration: 300 * time.Millisecond, RenewDeadline: 200 * time.Millisecond, RetryPeriod: 50 * time.Millisecond}
	clkA := metrics.NewManualClock(t0)
	cfg.Identity = "a"
	a, err := NewElector(srv.Client(), cfg, WithElectorClock(clkA))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Identity = "b"
	b, err := NewElector(srv.Client(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	actA, _ := NewActuator(srv.Client(), ActuatorConfig{}, WithFence(a))
	actB, _ := NewActuator(srv.Client(), ActuatorConfig{}, WithFence(b))

	if err := a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Step(ctx); err != nil {
		t.Fatal(err)
	}
	tokA, ok := a.Token()
	if !ok || b.IsLeader() {
		t.Fatalf("a leads: %v (token %d), b leads: %v; want a alone", ok, tokA, b.IsLeader())
	}
	if err := actA.Scale(ctx, req("api", 3, "d1", t0)); err != nil {
		t.Fatalf("the leader's actuation: %v", err)
	}
	if err := actB.Scale(ctx, req("api", 9, "x", t0)); !errors.Is(err, ErrNotLeader) || !actuator.IsPermanent(err) {
		t.Errorf("a follower's actuation: %v, want ErrNotLeader, permanent", err)
	}

	// a is paused: it neither renews nor knows. b tries every retry period.
	start := time.Now()
	for !b.IsLeader() {
		if time.Since(start) > 2*time.Second {
			t.Fatal("b did not take over")
		}
		time.Sleep(cfg.RetryPeriod) // b's retry period, against Redis's expiry clock
		b.Step(ctx)
	}
	took := time.Since(start)
	t.Logf("b took over after %v (lease %v)", took, cfg.LeaseDuration)
	if took > cfg.LeaseDuration+2*cfg.RetryPeriod+100*time.Millisecond {
		t.Errorf("b took over after %v, more than the lease plus a retry", took)
	}
	tokB, _ := b.Token()
	if tokB <= tokA {
		t.Errorf("b's token %d is not newer than a's %d", tokB, tokA)
	}
	if err := actB.Scale(ctx, req("api", 5, "d2", t0.Add(time.Second))); err != nil {
		t.Fatalf("the new leader's actuation: %v", err)
	}
	// a wakes up: its call, fenced with the token it took before the pause, arrives.
	err = actA.ScaleFenced(ctx, req("api", 1, "late", t0.Add(2*time.Second)), tokA)
	if !errors.Is(err, ErrStaleToken) || !actuator.IsPermanent(err) {
		t.Fatalf("the deposed leader's late actuation: %v, want ErrStaleToken, permanent", err)
	}
	if n, _ := actA.Replicas(ctx, actuator.Target{Name: "api"}); n != 5 {
		t.Errorf("replicas %d after the refused call, want the new leader's 5", n)
	}
	// a's own clock runs past its renew deadline: it no longer counts itself leader.
	clkA.Advance(cfg.RenewDeadline)
	if err := actA.Scale(ctx, req("api", 1, "later", t0.Add(3*time.Second))); !errors.Is(err, ErrNotLeader) {
		t.Errorf("a past its renew deadline: %v, want ErrNotLeader", err)
	}
	// And when it steps again, it sees b.
	a.Step(ctx)
	if a.IsLeader() {
		t.Error("a leads again while b holds the lock")
	}
}

// TestRunReleases: Run acquires, and at its end releases the lock so the other takes
// over at once.
func TestRunReleases(t *testing.T) {
	srv := redistest.Start(t)
	cfg := ElectorConfig{Key: "gw:leader", Identity: "a", LeaseDuration: time.Minute, RenewDeadline: 30 * time.Second, RetryPeriod: 10 * time.Millisecond}
	a, _ := NewElector(srv.Client(), cfg)
	cfg.Identity = "b"
	b, _ := NewElector(srv.Client(), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for !a.IsLeader() {
		time.Sleep(time.Millisecond) // waiting for a's first step
	}
	if err := a.Run(ctx); !errors.Is(err, ErrElectorRunning) {
		t.Errorf("a second Run: %v", err)
	}
	cancel()
	<-done
	b.Step(context.Background())
	if !b.IsLeader() {
		t.Error("b did not take the released lock at its first step")
	}
}

func TestActuator(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	act, err := NewActuator(c, ActuatorConfig{MaxLen: 3})
	if err != nil {
		t.Fatal(err)
	}
	api := actuator.Target{Name: "api"}
	if _, err := act.Replicas(ctx, api); !errors.Is(err, actuator.ErrUnknownTarget) {
		t.Errorf("replicas of an unknown target: %v", err)
	}
	steps := []struct {
		req  actuator.Request
		want int
	}{
		{req("api", 2, "d1", t0), 2},
		{req("api", 4, "d2", t0.Add(time.Second)), 4},
		{req("api", 4, "d2", t0.Add(time.Second)), 4},  // the same decision again
		{req("api", 1, "d0", t0.Add(-time.Second)), 4}, // older: never backwards
		{req("api", 6, "d3", t0.Add(2*time.Second)), 6},
		{req("api", 7, "d4", t0.Add(3*time.Second)), 7},
	}
	for i, s := range steps {
		if err := act.Scale(ctx, s.req); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if n, err := act.Replicas(ctx, api); err != nil || n != s.want {
			t.Errorf("step %d: replicas %d (%v), want %d", i, n, err, s.want)
		}
	}
	// Four decisions applied; the stream keeps the last three.
	if n, _ := c.XLen(ctx, act.Stream()).Result(); n != 3 {
		t.Errorf("stream length %d, want the cap 3", n)
	}
	if err := act.Scale(ctx, actuator.Request{}); !errors.Is(err, actuator.ErrInvalidRequest) || !actuator.IsPermanent(err) {
		t.Errorf("an invalid request: %v", err)
	}
	// Bad input: a wrong type under a target's key, a flushed script.
	c.Set(ctx, DefaultPrefix+":t:web", "x", 0)
	if err := act.Scale(ctx, req("web", 1, "w1", t0)); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || !actuator.IsPermanent(err) {
		t.Errorf("a wrong type under the key: %v", err)
	}
	c.ScriptFlush(ctx)
	if err := act.Scale(ctx, req("api", 8, "d5", t0.Add(4*time.Second))); err != nil {
		t.Errorf("after SCRIPT FLUSH: %v", err)
	}
}

// TestConsumer: a consumer starts from the targets' stored state, follows the stream,
// and a restarted one applies nothing twice and nothing older.
func TestConsumer(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	act, _ := NewActuator(c, ActuatorConfig{})
	for i := range 3 {
		act.Scale(ctx, req("api", i+1, fmt.Sprint("a", i), t0.Add(time.Duration(i)*time.Second)))
	}
	act.Scale(ctx, req("web", 2, "w0", t0))
	rec := new(actuatortest.Recorder)
	con, err := NewConsumer(c, rec, ConsumerConfig{Block: 50 * time.Millisecond, Retry: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := con.Sync(ctx); err != nil || n != 2 {
		t.Fatalf("sync: %d targets, %v; want 2", n, err)
	}
	act.Scale(ctx, req("api", 9, "a3", t0.Add(5*time.Second)))
	act.Scale(ctx, req("web", 1, "w1", t0.Add(5*time.Second)))
	if n, err := con.Poll(ctx, 0); err != nil || n != 2 {
		t.Fatalf("poll: %d, %v; want 2", n, err)
	}
	got := map[string][]int{}
	for _, r := range rec.Requests() {
		got[r.Target.Name] = append(got[r.Target.Name], r.Replicas)
	}
	if d := cmp.Diff(map[string][]int{"api": {3, 9}, "web": {2, 1}}, got); d != "" {
		t.Errorf("applied (-want +got):\n%s", d)
	}
	// Run follows the stream until its context ends.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- con.Run(rctx) }()
	act.Scale(ctx, req("api", 4, "a4", t0.Add(6*time.Second)))
	for {
		if r, ok := rec.Last(actuator.Target{Name: "api"}); ok && r.Replicas == 4 {
			break
		}
		time.Sleep(5 * time.Millisecond) // waiting for the running consumer
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	// The same consumer synced again (a restart of its reader) applies nothing new.
	before := len(rec.Requests())
	if _, err := con.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if after := len(rec.Requests()); after != before {
		t.Errorf("a re-sync applied %d decisions again", after-before)
	}
	if st := con.Stats(); st.Duplicates != 2 || st.Applied != 5 {
		t.Errorf("stats %+v, want 5 applied and the 2 re-synced as duplicates", st)
	}
}

// TestLoopFailover runs two loops, each gated by its own elector and actuating through
// a fenced actuator. The first leader's actuation is held up (its process paused)
// while the second takes over and actuates; when it arrives, Redis refuses it by the
// term the first loop put in the request.
func TestLoopFailover(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	cfg := ElectorConfig{Key: "gw:leader", LeaseDuration: 200 * time.Millisecond, RenewDeadline: 150 * time.Millisecond, RetryPeriod: 20 * time.Millisecond}
	newLoop := func(id string, want int, act actuator.Actuator) (*Elector, *autoscale.Loop) {
		c := cfg
		c.Identity = id
		e, err := NewElector(srv.Client(), c)
		if err != nil {
			t.Fatal(err)
		}
		fenced, err := NewActuator(srv.Client(), ActuatorConfig{}, WithFence(e))
		if err != nil {
			t.Fatal(err)
		}
		var use actuator.Actuator = fenced
		if pause := act; pause != nil {
			use = actuator.Func(func(ctx context.Context, r actuator.Request) error {
				pause.Scale(ctx, r)
				return fenced.Scale(ctx, r)
			})
		}
		l, err := autoscale.NewLoop(
			autoscale.WithPolicy(autoscale.PolicyFunc(func(context.Context, *autoscale.Input) ([]autoscale.Action, error) {
				return []autoscale.Action{autoscale.Scale{Target: "api", Replicas: want}}, nil
			})),
			autoscale.WithElector(e), autoscale.WithDefaultActuator(use),
			autoscale.WithActuation(autoscale.Actuation{Attempts: 1}),
			autoscale.WithTargets(autoscale.Target{Name: "api", Min: 1, Max: 10}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return e, l
	}
	release := make(chan struct{})
	paused := actuator.Func(func(context.Context, actuator.Request) error { <-release; return nil })
	a, loopA := newLoop("a", 3, paused)
	b, loopB := newLoop("b", 5, nil)

	a.Step(ctx)
	b.Step(ctx)
	tkA, err := loopA.Step(ctx, t0)
	if err != nil || !tkA.Leader || tkA.Term == 0 {
		t.Fatalf("a's tick: leader %v, term %d, %v", tkA.Leader, tkA.Term, err)
	}
	for !b.IsLeader() { // a is paused: only b steps
		time.Sleep(cfg.RetryPeriod)
		b.Step(ctx)
	}
	tkB, _ := loopB.Step(ctx, t0.Add(time.Second))
	loopB.Flush(ctx)
	if d, _ := loopB.Decision(tkB.Decisions[0].ID); d.Actuation.Err != "" || tkB.Term <= tkA.Term {
		t.Fatalf("b's actuation: %+v, term %d after a's %d", d.Actuation, tkB.Term, tkA.Term)
	}
	close(release) // a resumes; its call reaches Redis
	loopA.Flush(ctx)
	d, _ := loopA.Decision(tkA.Decisions[0].ID)
	if !strings.Contains(d.Actuation.Err, ErrStaleToken.Error()) || d.Actuation.Attempts != 1 {
		t.Errorf("a's late actuation: %+v, want refused for its stale token, not retried", d.Actuation)
	}
	act, _ := NewActuator(srv.Client(), ActuatorConfig{})
	if n, _ := act.Replicas(ctx, actuator.Target{Name: "api"}); n != 5 {
		t.Errorf("replicas %d, want the new leader's 5", n)
	}
}
