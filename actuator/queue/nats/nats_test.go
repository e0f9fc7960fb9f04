package nats_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	natsq "github.com/autoscalelua/autoscalelua/actuator/queue/nats"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	stream  = "DECISIONS"
	subject = "autoscale.decisions"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func request(id string, replicas int, at time.Duration) actuator.Request {
	return actuator.Request{
		Target: actuator.Target{Name: "checkout"}, Replicas: replicas, Previous: -1,
		Reason: "test", DecisionID: id, Time: t0.Add(at),
	}
}

// startServer starts an in-process NATS server with JetStream storing in
// dir, on port (-1 for a random one).
func startServer(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func connect(t *testing.T, url string) *natsgo.Conn {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.MaxReconnects(-1), natsgo.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func createStream(t *testing.T, nc *natsgo.Conn) jetstream.Stream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{
		Name: stream, Subjects: []string{subject}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor polls cond (an observable state, not a duration) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runSubscriber runs sub until the test ends.
func runSubscriber(t *testing.T, sub *natsq.Subscriber) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

func decisionIDs(reqs []actuator.Request) []string {
	var ids []string
	for _, r := range reqs {
		ids = append(ids, r.DecisionID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

func TestNoEventLostAcrossServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, -1, dir)
	port := srv.Addr().(*net.TCPAddr).Port
	nc := connect(t, srv.ClientURL())
	createStream(t, nc)
	pub, err := natsq.NewPublisher(nc, subject)
	if err != nil {
		t.Fatal(err)
	}
	act := queue.NewActuator(pub, "/test")
	ctx := context.Background()

	if err := act.Scale(ctx, request("a", 2, 0)); err != nil {
		t.Fatalf("publish while up: %v", err)
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "the client to notice", func() bool { return nc.Status() == natsgo.RECONNECTING })

	// 1. A publish whose deadline ends during the outage returns an error:
	//    the caller knows and retries later.
	shortCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = act.Scale(shortCtx, request("b", 3, time.Second))
	cancel()
	if err == nil || actuator.IsPermanent(err) {
		t.Fatalf("publish during outage = %v, want a retryable error", err)
	}
	buffered, _ := nc.Buffered()

	// 2. A publish with a longer deadline waits and succeeds after the
	//    reconnect.
	cDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cDone <- act.Scale(ctx, request("c", 4, 2*time.Second))
	}()
	waitFor(t, "the publish to be buffered while down", func() bool {
		n, _ := nc.Buffered()
		return n > buffered
	})
	select {
	case err := <-cDone:
		t.Fatalf("publish returned %v while the server was down", err)
	default:
	}

	srv2 := startServer(t, port, dir)
	if err := <-cDone; err != nil {
		t.Fatalf("publish across the restart = %v, want nil", err)
	}
	// The caller of 1. retries, as the scaling loop would (the same decision, so the
	// same Nats-Msg-Id).
	waitFor(t, "the retried publish to succeed", func() bool {
		return act.Scale(ctx, request("b", 3, time.Second)) == nil
	})

	// The stream kept a, and holds b once and c once.
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("stream holds %d messages, want 3 (a, b once, c)", info.State.Msgs)
	}

	// The controller applies all three; the newest decision wins.
	rec := &actuatortest.Recorder{}
	c, err := queue.NewConsumer(rec)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := natsq.NewSubscriber(nc, stream, "scaler", c, natsq.WithFetchWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	runSubscriber(t, sub)
	waitFor(t, "three decisions applied", func() bool { return c.Stats().Applied+c.Stats().Stale == 3 })
	// b was stored either from the client's reconnect buffer (before c) and
	// applied, or only by the retry (after c) and then skipped as older than
	// c. Never lost, never applied over c.
	ids := decisionIDs(rec.Requests())
	if !slices.Contains(ids, "a") || !slices.Contains(ids, "c") {
		t.Errorf("applied %v, want a and c", ids)
	}
	if s := c.Stats(); slices.Contains(ids, "b") == (s.Stale == 1) {
		t.Errorf("applied %v with stats %+v: b must be applied or stale, not both or neither", ids, s)
	}
	if last, _ := rec.Last(actuator.Target{Name: "checkout"}); last.DecisionID != "c" {
		t.Errorf("last applied = %q, want c", last.DecisionID)
	}
	if n, _ := rec.Replicas(ctx, actuator.Target{Name: "checkout"}); n != 4 {
		t.Errorf("replicas = %d, want 4 (decision c)", n)
	}
	_ = srv2
}

// flakyOnce fails the first call for each decision.
type flakyOnce struct {
	actuatortest.Recorder
	mu   sync.Mutex
	seen map[string]bool
}

func (f *flakyOnce) Scale(ctx context.Context, req actuator.Request) error {
	f.mu.Lock()
	first := !f.seen[req.DecisionID]
	f.seen[req.DecisionID] = true
	f.mu.Unlock()
	if first {
		return errors.New("apiserver unavailable")
	}
	return f.Recorder.Scale(ctx, req)
}

func TestSubscriberRedeliversAndSkipsPoison(t *testing.T) {
	srv := startServer(t, -1, t.TempDir())
	nc := connect(t, srv.ClientURL())
	createStream(t, nc)
	pub, err := natsq.NewPublisher(nc, subject)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := pub.Publish(ctx, queue.Event{ID: "junk", Key: "x", Data: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}
	act := queue.NewActuator(pub, "/test")
	for i, id := range []string{"a", "b"} {
		if err := act.Scale(ctx, request(id, i+1, time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}

	f := &flakyOnce{seen: map[string]bool{}}
	c, err := queue.NewConsumer(f)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := natsq.NewSubscriber(nc, stream, "scaler", c,
		natsq.WithFetchWait(200*time.Millisecond), natsq.WithNakDelay(50*time.Millisecond),
		natsq.WithFilterSubject(subject))
	if err != nil {
		t.Fatal(err)
	}
	runSubscriber(t, sub)
	waitFor(t, "both decisions settled", func() bool {
		s := c.Stats()
		return s.Applied+s.Stale == 2
	})
	s := c.Stats()
	if s.Poison != 1 || s.Failed < 1 {
		t.Errorf("stats = %+v, want 1 poison and at least 1 failure", s)
	}
	if s.Failed != 2 || s.Applied+s.Stale != 2 {
		t.Errorf("stats = %+v, want 2 failures (one per decision) and both decisions settled", s)
	}
	if last, _ := f.Last(actuator.Target{Name: "checkout"}); last.DecisionID != "b" {
		t.Errorf("last applied = %q, want b", last.DecisionID)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := natsq.NewPublisher(nil, ""); !errors.Is(err, natsq.ErrInvalidConfig) {
		t.Errorf("NewPublisher = %v", err)
	}
	if _, err := natsq.NewSubscriber(nil, "", "", nil); !errors.Is(err, natsq.ErrInvalidConfig) {
		t.Errorf("NewSubscriber = %v", err)
	}
}

// TestOrderThroughJetStream sends, through a real JetStream stream,
// decisions whose sequence (in CloudEvents extension attributes) and times
// disagree, and one dated 30 s ahead of the consumer's clock: the consumer
// orders by the sequence, and the fast event holds the target back for the
// skew only.
func TestOrderThroughJetStream(t *testing.T) {
	srv := startServer(t, -1, t.TempDir())
	nc := connect(t, srv.ClientURL())
	createStream(t, nc)
	pub, err := natsq.NewPublisher(nc, subject)
	if err != nil {
		t.Fatal(err)
	}
	act := queue.NewActuator(pub, "/test")
	now := t0.Add(time.Hour)
	clock := metrics.NewManualClock(now)
	rec := &actuatortest.Recorder{}
	c, err := queue.NewConsumer(rec, queue.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := natsq.NewSubscriber(nc, stream, "scaler", c, natsq.WithFetchWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	runSubscriber(t, sub)
	ctx := context.Background()
	send := func(id string, replicas int, at time.Time, seq actuator.Sequence) {
		t.Helper()
		req := request(id, replicas, 0)
		req.Time, req.Seq = at, seq
		if err := act.Scale(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	settled := func(n uint64) func() bool {
		return func() bool { s := c.Stats(); return s.Applied+s.Stale+s.Duplicates == n }
	}

	// One loop's decisions 2, 1 and 3, its clock stepping back between them.
	send("n2", 5, now, actuator.Sequence{Stream: "loop-a", N: 2})
	send("n1", 3, now.Add(time.Second), actuator.Sequence{Stream: "loop-a", N: 1})
	send("n3", 7, now.Add(-time.Minute), actuator.Sequence{Stream: "loop-a", N: 3})
	waitFor(t, "three decisions settled", settled(3))

	// A producer 30 s fast, without a sequence, then a real one 3 s later.
	send("fast", 9, now.Add(30*time.Second), actuator.Sequence{})
	waitFor(t, "the fast decision settled", settled(4))
	now = clock.Advance(3 * time.Second)
	send("real", 4, now, actuator.Sequence{})
	waitFor(t, "the real decision settled", settled(5))

	if diff := cmp.Diff(queue.Stats{Applied: 4, Stale: 1, Future: 1}, c.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	var ids []string
	for _, r := range rec.Requests() {
		ids = append(ids, r.DecisionID)
	}
	if diff := cmp.Diff([]string{"n2", "n3", "fast", "real"}, ids); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}
