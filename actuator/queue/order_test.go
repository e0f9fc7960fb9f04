package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/actuatortest"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
)

// event is one decision for the checkout target, as some producer sent it.
type event struct {
	id       string
	replicas int
	at       time.Duration // the decision's time, from t0
	seq      actuator.Sequence
	arrive   time.Duration // when it reaches the consumer, by its clock, from t0
}

// TestConsumerOrder delivers decisions of producers whose clocks disagree,
// late and out of order, and checks which the consumer applies.
func TestConsumerOrder(t *testing.T) {
	s := func(term uint64, stream string, n uint64) actuator.Sequence {
		return actuator.Sequence{Term: term, Stream: stream, N: n}
	}
	tests := []struct {
		name         string
		events       []event
		wantApplied  []string
		wantReplicas int
		wantStats    queue.Stats
	}{
		{
			// The reviewed hole: one event dated 30 s ahead froze the
			// target for 30 s. Its time is taken as the consumer's clock
			// plus the 2 s skew, so decisions 3 s later apply.
			name: "a producer 30 s fast holds the others back for the skew only",
			events: []event{
				{id: "fast", replicas: 9, at: 30 * time.Second, arrive: 0},
				{id: "real-1", replicas: 4, at: time.Second, arrive: time.Second},
				{id: "real-3", replicas: 5, at: 3 * time.Second, arrive: 3 * time.Second},
				{id: "real-4", replicas: 6, at: 4 * time.Second, arrive: 4 * time.Second},
			},
			wantApplied:  []string{"fast", "real-3", "real-4"},
			wantReplicas: 6,
			wantStats:    queue.Stats{Applied: 3, Stale: 1, Future: 1},
		},
		{
			name: "one stream: the decision number orders, whatever the times",
			events: []event{
				{id: "n2", replicas: 5, at: 0, seq: s(0, "loop-a", 2)},
				{id: "n1", replicas: 3, at: time.Second, seq: s(0, "loop-a", 1)}, // its clock stepped back
				{id: "n3", replicas: 7, at: -time.Hour, seq: s(0, "loop-a", 3)},
			},
			wantApplied:  []string{"n2", "n3"},
			wantReplicas: 7,
			wantStats:    queue.Stats{Applied: 2, Stale: 1},
		},
		{
			// A new leader with a slow clock: its term wins over the old
			// leader's later-dated decisions.
			name: "a higher term wins over later times",
			events: []event{
				{id: "old-leader", replicas: 8, at: 20 * time.Second, seq: s(4, "loop-a", 90), arrive: time.Minute},
				{id: "new-leader", replicas: 3, at: 5 * time.Second, seq: s(5, "loop-b", 1), arrive: time.Minute},
				{id: "old-leader-late", replicas: 9, at: 21 * time.Second, seq: s(4, "loop-a", 91), arrive: time.Minute},
				{id: "new-leader-2", replicas: 4, at: 6 * time.Second, seq: s(5, "loop-b", 2), arrive: time.Minute},
			},
			wantApplied:  []string{"old-leader", "new-leader", "new-leader-2"},
			wantReplicas: 4,
			wantStats:    queue.Stats{Applied: 3, Stale: 1},
		},
		{
			// A restarted loop starts a new stream at 1; without terms,
			// time orders it against the old one.
			name: "a restarted loop: a new stream, ordered by time",
			events: []event{
				{id: "before", replicas: 6, at: 0, seq: s(0, "loop-a", 500)},
				{id: "after", replicas: 2, at: time.Minute, seq: s(0, "loop-b", 1), arrive: time.Minute},
				{id: "before-late", replicas: 7, at: time.Second, seq: s(0, "loop-a", 501), arrive: time.Minute},
			},
			wantApplied:  []string{"before", "after"},
			wantReplicas: 2,
			wantStats:    queue.Stats{Applied: 2, Stale: 1},
		},
		{
			name: "an old producer without numbers, after a numbered one: by time",
			events: []event{
				{id: "numbered", replicas: 6, at: 0, seq: s(3, "loop-a", 7)},
				{id: "plain-old", replicas: 2, at: -time.Second},
				{id: "plain-new", replicas: 3, at: time.Second},
			},
			wantApplied:  []string{"numbered", "plain-new"},
			wantReplicas: 3,
			wantStats:    queue.Stats{Applied: 2, Stale: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := metrics.NewManualClock(t0)
			rec := &actuatortest.Recorder{}
			c := newConsumer(t, rec, queue.WithClock(clk))
			var applied []string
			for _, e := range tt.events {
				clk.Set(t0.Add(e.arrive))
				req := request(e.id, e.replicas, t0.Add(e.at))
				req.Seq = e.seq
				before := len(rec.Requests())
				if err := c.Handle(context.Background(), encode(t, req)); err != nil {
					t.Fatalf("Handle(%s) = %v", e.id, err)
				}
				if reqs := rec.Requests(); len(reqs) > before {
					applied = append(applied, reqs[len(reqs)-1].DecisionID)
				}
			}
			if diff := cmp.Diff(tt.wantApplied, applied); diff != "" {
				t.Errorf("applied (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStats, c.Stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			if n, _ := rec.Replicas(context.Background(), actuator.Target{Name: "checkout", Namespace: "shop"}); n != tt.wantReplicas {
				t.Errorf("replicas = %d, want %d", n, tt.wantReplicas)
			}
		})
	}
}

// TestConsumerNeverForgetsATarget fills the target table: an event for a
// new target is refused, and the remembered target's record still stops
// its old decisions, where an LRU would have forgotten it and applied a
// redelivered old decision again.
func TestConsumerNeverForgetsATarget(t *testing.T) {
	rec := &actuatortest.Recorder{}
	c := newConsumer(t, rec, queue.WithMaxTargets(1), queue.WithSeenDecisions(1))
	other := request("o-1", 5, t0.Add(time.Second))
	other.Target = actuator.Target{Name: "search"}
	msgs := [][]byte{
		encode(t, request("a-1", 3, t0)),
		encode(t, request("a-2", 4, t0.Add(time.Second))),
		encode(t, other),                 // refused: one target is remembered already
		encode(t, request("a-1", 3, t0)), // redelivered, its ID forgotten: still stale
	}
	for i, m := range msgs {
		if err := c.Handle(context.Background(), m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(queue.Stats{Applied: 2, Stale: 1, Refused: 1}, c.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	var ids []string
	for _, r := range rec.Requests() {
		ids = append(ids, r.DecisionID)
	}
	if diff := cmp.Diff([]string{"a-1", "a-2"}, ids); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

// TestSequenceRoundTrip: the sequence travels in extension attributes and
// comes back; an event without them decodes with the zero sequence.
func TestSequenceRoundTrip(t *testing.T) {
	for _, seq := range []actuator.Sequence{{}, {Term: 7, Stream: "3f9a1c2e", N: 1042}, {Stream: "s", N: 1}, {Term: 1}} {
		t.Run(fmt.Sprint(seq), func(t *testing.T) {
			req := request("d-1", 3, t0)
			req.Seq = seq
			got, err := queue.Decode(encode(t, req))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(req, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}
