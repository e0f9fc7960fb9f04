// Package queue publishes scale decisions to a message broker as CloudEvents,
// and turns them back into actuator calls on the other side.
//
// The producer side is [NewActuator]: each decision is encoded with [Encode]
// (CloudEvents 1.0, JSON structured format, type [EventType], id = decision
// ID) and handed to a [Publisher]. A failed publish is an error the scaling
// loop retries, so nothing is silently lost.
//
// The consumer side is [Consumer], the core of a dedicated scaling
// controller: it decodes each message strictly ([Decode]), skips poison
// messages, duplicates and out-of-order stale decisions, and applies the rest
// to any [actuator.Actuator]. It orders a target's decisions by the leader's
// fencing token and the loop's decision number ([actuator.Sequence], carried
// in CloudEvents extension attributes that older consumers ignore), and by
// time, bounded by its own clock, only where those cannot order them; it
// never forgets the decision last applied to a target, so none is applied
// twice (see [Consumer]). It knows nothing of brokers; the adapters in
// the sub-packages (nats, kafka) feed it through [Handler] and acknowledge,
// redeliver or commit according to what Handle returns.
//
// Example, with the NATS JetStream adapter:
//
//	// In the gateway:
//	pub, err := nats.NewPublisher(nc, "autoscale.decisions")
//	act := queue.NewActuator(pub, "/gateway/eu-1") // give it to the scaling loop, which retries
//
//	// In the scaling controller:
//	c, err := queue.NewConsumer(kubernetesActuator)
//	sub, err := nats.NewSubscriber(nc, "DECISIONS", "controller", c)
//	err = sub.Run(ctx)
package queue
