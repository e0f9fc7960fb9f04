package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	"github.com/google/go-cmp/cmp"
)

func newConsumer(t *testing.T, a actuator.Actuator, opts ...queue.ConsumerOption) *queue.Consumer {
	t.Helper()
	c, err := queue.NewConsumer(a, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConsumerSequences(t *testing.T) {
	boom := errors.New("boom")
	type msg struct {
		data    []byte
		failing error // actuator error while handling this message
		wantErr bool  // Handle asks for redelivery
	}
	ev := func(id string, replicas int, at time.Duration) []byte {
		return encode(t, request(id, replicas, t0.Add(at)))
	}
	tests := []struct {
		name         string
		opts         []queue.ConsumerOption
		msgs         []msg
		wantApplied  []string // decision IDs the actuator saw succeed, in order
		wantReplicas int
		wantStats    queue.Stats
	}{
		{
			name:         "in order",
			msgs:         []msg{{data: ev("a", 3, 0)}, {data: ev("b", 4, time.Second)}},
			wantApplied:  []string{"a", "b"},
			wantReplicas: 4,
			wantStats:    queue.Stats{Applied: 2},
		},
		{
			name:         "duplicate delivery",
			msgs:         []msg{{data: ev("a", 3, 0)}, {data: ev("a", 3, 0)}, {data: ev("a", 3, 0)}},
			wantApplied:  []string{"a"},
			wantReplicas: 3,
			wantStats:    queue.Stats{Applied: 1, Duplicates: 2},
		},
		{
			name:         "out of order never moves backwards",
			msgs:         []msg{{data: ev("new", 8, 2*time.Second)}, {data: ev("old", 2, time.Second)}},
			wantApplied:  []string{"new"},
			wantReplicas: 8,
			wantStats:    queue.Stats{Applied: 1, Stale: 1},
		},
		{
			// Without sequence numbers, the same time cannot be ordered.
			name:         "same time: the first applied stands",
			msgs:         []msg{{data: ev("a", 3, 0)}, {data: ev("b", 5, 0)}},
			wantApplied:  []string{"a"},
			wantReplicas: 3,
			wantStats:    queue.Stats{Applied: 1, Stale: 1},
		},
		{
			name:         "poison is skipped",
			msgs:         []msg{{data: []byte("garbage")}, {data: ev("a", 3, 0)}, {data: []byte(`{"specversion":"1.0"}`)}},
			wantApplied:  []string{"a"},
			wantReplicas: 3,
			wantStats:    queue.Stats{Applied: 1, Poison: 2},
		},
		{
			name: "failure then redelivery succeeds",
			msgs: []msg{
				{data: ev("a", 3, 0), failing: boom, wantErr: true},
				{data: ev("a", 3, 0)},
			},
			wantApplied:  []string{"a"},
			wantReplicas: 3,
			wantStats:    queue.Stats{Applied: 1, Failed: 1},
		},
		{
			name: "bounded attempts then give up",
			opts: []queue.ConsumerOption{queue.WithMaxAttempts(3)},
			msgs: []msg{
				{data: ev("a", 3, 0), failing: boom, wantErr: true},
				{data: ev("a", 3, 0), failing: boom, wantErr: true},
				{data: ev("a", 3, 0), failing: boom, wantErr: false}, // third failure: given up
				{data: ev("a", 3, 0)},                                // a redelivery is now a duplicate
				{data: ev("b", 6, time.Second)},
			},
			wantApplied:  []string{"b"},
			wantReplicas: 6,
			wantStats:    queue.Stats{Applied: 1, Failed: 3, GaveUp: 1, Duplicates: 1},
		},
		{
			name: "permanent failure gives up at once",
			msgs: []msg{
				{data: ev("a", 3, 0), failing: actuator.Permanent(boom)},
				{data: ev("a", 3, 0)},
			},
			wantStats: queue.Stats{Failed: 1, GaveUp: 1, Duplicates: 1},
		},
		{
			name: "a failed older decision redelivered after a newer one is stale",
			msgs: []msg{
				{data: ev("old", 3, 0), failing: boom, wantErr: true},
				{data: ev("new", 5, time.Second)},
				{data: ev("old", 3, 0)},
			},
			wantApplied:  []string{"new"},
			wantReplicas: 5,
			wantStats:    queue.Stats{Applied: 1, Failed: 1, Stale: 1},
		},
		{
			// Forgetting a's ID does not apply it twice: it is not newer
			// than the target's record.
			name: "seen set is bounded, and forgetting an ID applies nothing twice",
			opts: []queue.ConsumerOption{queue.WithSeenDecisions(1)},
			msgs: []msg{
				{data: ev("a", 3, 0)}, {data: ev("b", 4, time.Second)}, {data: ev("a", 3, 0)}, {data: ev("b", 4, time.Second)},
			},
			wantApplied:  []string{"a", "b"},
			wantReplicas: 4,
			wantStats:    queue.Stats{Applied: 2, Stale: 1, Duplicates: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &actuatortest.Recorder{}
			c := newConsumer(t, rec, tt.opts...)
			var applied []string
			for i, m := range tt.msgs {
				rec.SetErr(m.failing)
				before := len(rec.Requests())
				err := c.Handle(context.Background(), m.data)
				if (err != nil) != m.wantErr {
					t.Fatalf("message %d: Handle = %v, wantErr %v", i, err, m.wantErr)
				}
				if err != nil && !errors.Is(err, m.failing) {
					t.Errorf("message %d: Handle = %v, want it to wrap %v", i, err, m.failing)
				}
				if reqs := rec.Requests(); len(reqs) > before && m.failing == nil {
					applied = append(applied, reqs[len(reqs)-1].DecisionID)
				}
			}
			if diff := cmp.Diff(tt.wantApplied, applied); diff != "" {
				t.Errorf("applied (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStats, c.Stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			n, err := rec.Replicas(context.Background(), actuator.Target{Name: "checkout", Namespace: "shop"})
			if tt.wantReplicas == 0 {
				if err == nil {
					t.Errorf("target was scaled to %d, want untouched", n)
				}
			} else if n != tt.wantReplicas {
				t.Errorf("replicas = %d (%v), want %d", n, err, tt.wantReplicas)
			}
		})
	}
}

func TestConsumerShutdownDoesNotCountAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := actuator.Func(func(ctx context.Context, _ actuator.Request) error {
		cancel()
		return ctx.Err()
	})
	c := newConsumer(t, a, queue.WithMaxAttempts(1))
	if err := c.Handle(ctx, encode(t, request("a", 3, t0))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Handle = %v, want context.Canceled (redeliver)", err)
	}
	if s := c.Stats(); s.GaveUp != 0 {
		t.Errorf("stats = %+v; a shutdown must not give up the event", s)
	}
}

// ordered fails the test if two calls for one target overlap.
type ordered struct {
	mu     sync.Mutex
	active map[string]bool
	t      *testing.T
	actuatortest.Recorder
}

func (o *ordered) Scale(ctx context.Context, req actuator.Request) error {
	key := req.Target.String()
	o.mu.Lock()
	if o.active[key] {
		o.t.Errorf("concurrent Scale for %s", key)
	}
	o.active[key] = true
	o.mu.Unlock()
	err := o.Recorder.Scale(ctx, req)
	o.mu.Lock()
	o.active[key] = false
	o.mu.Unlock()
	return err
}

func TestConsumerConcurrentNeverMovesBackwards(t *testing.T) {
	o := &ordered{active: map[string]bool{}, t: t}
	c := newConsumer(t, o)
	const n = 200
	msgs := make([][]byte, n)
	for i := range n {
		req := request(fmt.Sprintf("d-%d", i), i, t0.Add(time.Duration(i)*time.Millisecond))
		req.Target.Name = fmt.Sprintf("t%d", i%3)
		msgs[i] = encode(t, req)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			// Each worker handles every message, in a different order: lots
			// of duplicates and reordering.
			for i := range n {
				j := (i*7 + w*31) % n
				if w%2 == 1 {
					j = n - 1 - j
				}
				if err := c.Handle(context.Background(), msgs[j]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// Per target, the applied replicas (= decision index) only grow.
	last := map[string]int{}
	for _, r := range o.Requests() {
		if r.Replicas < last[r.Target.Name] {
			t.Fatalf("%s moved back from %d to %d", r.Target.Name, last[r.Target.Name], r.Replicas)
		}
		last[r.Target.Name] = r.Replicas
	}
	s := c.Stats()
	if s.Applied+s.Duplicates+s.Stale != 4*n || s.Applied > n {
		t.Errorf("stats = %+v; want applied+duplicates+stale = %d and applied <= %d", s, 4*n, n)
	}
	for i := range 3 {
		name := fmt.Sprintf("t%d", i)
		if got, _ := o.Replicas(context.Background(), actuator.Target{Name: name, Namespace: "shop"}); got < n-3 {
			t.Errorf("%s ended at %d, want the newest decision (>= %d)", name, got, n-3)
		}
	}
}

func TestNewConsumerErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		a    actuator.Actuator
		opts []queue.ConsumerOption
	}{
		{"nil actuator", nil, nil},
		{"zero seen", &actuatortest.Recorder{}, []queue.ConsumerOption{queue.WithSeenDecisions(0)}},
		{"zero targets", &actuatortest.Recorder{}, []queue.ConsumerOption{queue.WithMaxTargets(0)}},
		{"zero attempts", &actuatortest.Recorder{}, []queue.ConsumerOption{queue.WithMaxAttempts(0)}},
		{"nil clock", &actuatortest.Recorder{}, []queue.ConsumerOption{queue.WithClock(nil)}},
		{"nil logger", &actuatortest.Recorder{}, []queue.ConsumerOption{queue.WithLogger(nil)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := queue.NewConsumer(tt.a, tt.opts...); !errors.Is(err, queue.ErrInvalidConfig) {
				t.Errorf("NewConsumer = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestActuatorPublishes(t *testing.T) {
	var got []queue.Event
	pubErr := error(nil)
	p := queue.PublisherFunc(func(ctx context.Context, e queue.Event) error {
		got = append(got, e)
		return pubErr
	})
	a := queue.NewActuator(p, "/gw")
	req := request("d-1", 5, t0)
	if err := a.Scale(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "d-1" || got[0].Key != "shop/checkout" {
		t.Fatalf("published %+v", got)
	}
	back, err := queue.Decode(got[0].Data)
	if err != nil || !cmp.Equal(back, req) {
		t.Errorf("published data decodes to %+v, %v", back, err)
	}

	pubErr = errors.New("broker down")
	err = a.Scale(context.Background(), req)
	if !errors.Is(err, pubErr) || actuator.IsPermanent(err) {
		t.Errorf("Scale with failing publisher = %v, want a retryable error", err)
	}
	err = a.Scale(context.Background(), actuator.Request{})
	if !errors.Is(err, actuator.ErrInvalidRequest) || !actuator.IsPermanent(err) || len(got) != 2 {
		t.Errorf("Scale(invalid) = %v after %d publishes", err, len(got))
	}
	if err := queue.NewActuator(nil, "/gw").Scale(context.Background(), req); !actuator.IsPermanent(err) {
		t.Errorf("nil publisher: %v", err)
	}
}
