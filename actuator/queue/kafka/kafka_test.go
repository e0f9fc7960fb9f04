package kafka_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	"github.com/autoscalelua/autoscalelua/actuator/queue/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const topic = "autoscale-decisions"

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func request(id string, replicas int, at time.Duration) actuator.Request {
	return actuator.Request{
		Target: actuator.Target{Name: "checkout"}, Replicas: replicas, Previous: -1,
		Reason: "test", DecisionID: id, Time: t0.Add(at),
	}
}

func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newClient(t *testing.T, c *kfake.Cluster) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
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

func runSubscriber(t *testing.T, sub *kafka.Subscriber) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// failProduce makes the cluster answer every produce request with a
// retriable error while failing is set, and counts the requests it failed.
func failProduce(c *kfake.Cluster, failing *atomic.Bool, failed *atomic.Int32) {
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		failed.Add(1)
		return resp, nil, true
	})
}

func TestNoEventLostWhileProduceFails(t *testing.T) {
	c := newCluster(t)
	var failing atomic.Bool
	var failed atomic.Int32
	failProduce(c, &failing, &failed)
	pub, err := kafka.NewPublisher(newClient(t, c), topic)
	if err != nil {
		t.Fatal(err)
	}
	act := queue.NewActuator(pub, "/test")
	ctx := context.Background()
	if err := act.Scale(ctx, request("a", 2, 0)); err != nil {
		t.Fatalf("publish while healthy: %v", err)
	}

	failing.Store(true)
	// 1. A publish whose deadline ends while the brokers fail returns an
	//    error: the caller knows and retries later.
	shortCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = act.Scale(shortCtx, request("b", 3, time.Second))
	cancel()
	if err == nil || actuator.IsPermanent(err) {
		t.Fatalf("publish while failing = %v, want a retryable error", err)
	}

	// 2. A publish with a longer deadline keeps being retried by the client
	//    and succeeds once the brokers recover.
	before := failed.Load()
	cDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cDone <- act.Scale(ctx, request("c", 4, 2*time.Second))
	}()
	waitFor(t, "the publish to be refused", func() bool { return failed.Load() > before })
	select {
	case err := <-cDone:
		t.Fatalf("publish returned %v while produce fails", err)
	default:
	}
	failing.Store(false)
	if err := <-cDone; err != nil {
		t.Fatalf("publish after recovery = %v, want nil", err)
	}
	// The caller of 1. retries.
	if err := act.Scale(ctx, request("b", 3, time.Second)); err != nil {
		t.Fatalf("retried publish = %v", err)
	}

	rec := &actuatortest.Recorder{}
	cons, err := queue.NewConsumer(rec)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := kafka.NewSubscriber(cons, topic, "scaler", kafka.WithClientOptions(kgo.SeedBrokers(c.ListenAddrs()...)))
	if err != nil {
		t.Fatal(err)
	}
	runSubscriber(t, sub)
	waitFor(t, "three decisions settled", func() bool { s := cons.Stats(); return s.Applied+s.Stale+s.Duplicates >= 3 })
	var ids []string
	for _, r := range rec.Requests() {
		ids = append(ids, r.DecisionID)
	}
	if !slices.Contains(ids, "a") || !slices.Contains(ids, "c") {
		t.Errorf("applied %v, want a and c", ids)
	}
	// b was written after c (its first publish failed), so it must not move
	// the target back.
	if last, _ := rec.Last(actuator.Target{Name: "checkout"}); last.DecisionID != "c" {
		t.Errorf("last applied = %q, want c; applied %v", last.DecisionID, ids)
	}
	if s := cons.Stats(); s.Stale+s.Duplicates < 1 || s.Poison != 0 {
		t.Errorf("stats = %+v, want b skipped as stale", s)
	}
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

func TestSubscriberRetriesSkipsPoisonAndCommits(t *testing.T) {
	c := newCluster(t)
	pub, err := kafka.NewPublisher(newClient(t, c), topic)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := pub.Publish(ctx, queue.Event{ID: "junk", Key: "checkout", Data: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}
	act := queue.NewActuator(pub, "/test")
	for i, id := range []string{"a", "b"} {
		if err := act.Scale(ctx, request(id, i+1, time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}

	f := &flakyOnce{seen: map[string]bool{}}
	cons, err := queue.NewConsumer(f)
	if err != nil {
		t.Fatal(err)
	}
	opts := []kafka.SubscriberOption{
		kafka.WithClientOptions(kgo.SeedBrokers(c.ListenAddrs()...)),
		kafka.WithRetryBackoff(time.Millisecond, 10*time.Millisecond),
	}
	sub, err := kafka.NewSubscriber(cons, topic, "scaler", opts...)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSubscriber(t, sub)
	waitFor(t, "a and b applied", func() bool { return cons.Stats().Applied == 2 })
	stop()
	want := queue.Stats{Applied: 2, Poison: 1, Failed: 2}
	if s := cons.Stats(); s != want {
		t.Errorf("stats = %+v, want %+v", s, want)
	}
	if last, _ := f.Last(actuator.Target{Name: "checkout"}); last.DecisionID != "b" {
		t.Errorf("last = %q, want b (records of one target in order)", last.DecisionID)
	}

	// A new controller in the same group starts after the committed offsets.
	if err := act.Scale(ctx, request("c", 3, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	rec := &actuatortest.Recorder{}
	cons2, err := queue.NewConsumer(rec)
	if err != nil {
		t.Fatal(err)
	}
	sub2, err := kafka.NewSubscriber(cons2, topic, "scaler", opts...)
	if err != nil {
		t.Fatal(err)
	}
	runSubscriber(t, sub2)
	waitFor(t, "c applied", func() bool { return cons2.Stats().Applied == 1 })
	if reqs := rec.Requests(); len(reqs) != 1 || reqs[0].DecisionID != "c" {
		t.Errorf("second controller handled %v, want only c", reqs)
	}
	if s := cons2.Stats(); s.Poison != 0 {
		t.Errorf("second controller saw the committed poison message again: %+v", s)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := kafka.NewPublisher(nil, ""); !errors.Is(err, kafka.ErrInvalidConfig) {
		t.Errorf("NewPublisher = %v", err)
	}
	if _, err := kafka.NewSubscriber(nil, "", ""); !errors.Is(err, kafka.ErrInvalidConfig) {
		t.Errorf("NewSubscriber = %v", err)
	}
}
