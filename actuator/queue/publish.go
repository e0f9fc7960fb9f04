package queue

import (
	"context"
	"fmt"

	"github.com/autoscalelua/autoscalelua/actuator"
)

// Event is one encoded scale decision, ready for a broker.
type Event struct {
	// ID is the decision ID. Brokers that deduplicate use it as the message
	// ID (for example Nats-Msg-Id in JetStream).
	ID string
	// Key is the target ([actuator.Target.String]). Brokers that partition
	// use it as the partition key, so the decisions for one target stay in
	// order.
	Key string
	// Data is the CloudEvents JSON event made by [Encode]; its media type is
	// [ContentType].
	Data []byte
}

// Publisher sends events to a broker. Publish returns nil only once the
// broker has accepted the event (durably, for brokers that persist); any
// other outcome is an error, so the caller retries and nothing is silently
// lost. An error may still mean the event arrives (the broker took it but the
// acknowledgement was lost); consumers deduplicate by decision ID.
// Implementations must be safe for concurrent use and respect ctx.
type Publisher interface {
	Publish(ctx context.Context, e Event) error
}

// PublisherFunc adapts a function to the [Publisher] interface.
type PublisherFunc func(ctx context.Context, e Event) error

// Publish calls f(ctx, e).
func (f PublisherFunc) Publish(ctx context.Context, e Event) error { return f(ctx, e) }

var _ Publisher = PublisherFunc(nil)

// NewActuator returns an [actuator.Actuator] whose Scale encodes the request
// with [Encode] (source names this producer) and publishes it with p. A
// failed publish returns a retryable error, which the scaling loop retries
// (the actuator makes one attempt per call); an invalid request
// returns a permanent error wrapping [actuator.ErrInvalidRequest]. The
// actuator is safe for concurrent use if p is.
func NewActuator(p Publisher, source string) actuator.Actuator {
	return &queueActuator{p: p, source: source}
}

type queueActuator struct {
	p      Publisher
	source string
}

func (a *queueActuator) Scale(ctx context.Context, req actuator.Request) error {
	if a.p == nil {
		return actuator.Permanent(fmt.Errorf("%w: nil queue.Publisher", actuator.ErrInvalidRequest))
	}
	data, err := Encode(req, a.source)
	if err != nil {
		return actuator.Permanent(err)
	}
	if err := a.p.Publish(ctx, Event{ID: req.DecisionID, Key: req.Target.String(), Data: data}); err != nil {
		return fmt.Errorf("queue: publish decision %s for %s: %w", req.DecisionID, req.Target, err)
	}
	return nil
}

// Handler handles one message's payload. A nil error means the message is
// done and the broker may forget it (acknowledge or commit); an error means
// it should be delivered again later. [*Consumer] is the Handler the broker
// adapters are meant for.
type Handler interface {
	Handle(ctx context.Context, data []byte) error
}

// HandlerFunc adapts a function to the [Handler] interface.
type HandlerFunc func(ctx context.Context, data []byte) error

// Handle calls f(ctx, data).
func (f HandlerFunc) Handle(ctx context.Context, data []byte) error { return f(ctx, data) }

var _ Handler = HandlerFunc(nil)
