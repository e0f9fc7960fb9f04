package queue_test

import (
	"context"
	"fmt"
	"time"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/queue"
)

func ExampleConsumer() {
	// A channel stands in for the broker.
	ch := make(chan queue.Event, 10)
	pub := queue.PublisherFunc(func(ctx context.Context, e queue.Event) error {
		ch <- e
		return nil
	})
	producer := queue.NewActuator(pub, "/gateway/eu-1")

	apply := actuator.Func(func(_ context.Context, req actuator.Request) error {
		fmt.Printf("scale %s to %d\n", req.Target, req.Replicas)
		return nil
	})
	c, err := queue.NewConsumer(apply)
	if err != nil {
		fmt.Println(err)
		return
	}

	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	target := actuator.Target{Name: "checkout"}
	for _, r := range []actuator.Request{
		{Target: target, Replicas: 4, Previous: 3, DecisionID: "d-1", Time: t0},
		{Target: target, Replicas: 6, Previous: 4, DecisionID: "d-2", Time: t0.Add(time.Second)},
	} {
		if err := producer.Scale(context.Background(), r); err != nil {
			fmt.Println(err)
		}
	}
	close(ch)
	var events []queue.Event
	for e := range ch {
		events = append(events, e)
	}
	// The broker redelivers d-1 after d-2, and then a message that is not an event.
	for _, data := range [][]byte{events[0].Data, events[1].Data, events[0].Data, []byte("junk")} {
		if err := c.Handle(context.Background(), data); err != nil {
			fmt.Println("redeliver:", err)
		}
	}
	fmt.Printf("%+v\n", c.Stats())
	// Output:
	// scale checkout to 4
	// scale checkout to 6
	// {Applied:2 Duplicates:1 Stale:0 Poison:1 Failed:0 GaveUp:0 Future:0 Refused:0}
}

func ExampleEncode() {
	b, err := queue.Encode(actuator.Request{
		Target: actuator.Target{Name: "checkout"}, Replicas: 5, Previous: 3, Reason: "busy",
		DecisionID: "d-42", Time: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}, "/gateway/eu-1")
	fmt.Println(string(b), err)
	// Output:
	// {"specversion":"1.0","id":"d-42","source":"/gateway/eu-1","type":"io.autoscalelua.scale.v1","subject":"checkout","datacontenttype":"application/json","time":"2025-03-01T12:00:00Z","data":{"version":"v1","target":{"name":"checkout"},"replicas":5,"previous":3,"reason":"busy","decision_id":"d-42","time":"2025-03-01T12:00:00Z"}} <nil>
}
