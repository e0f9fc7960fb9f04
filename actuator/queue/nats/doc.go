// Package nats carries scale events over NATS JetStream: a [Publisher] for
// the gateway side and a [Subscriber] that feeds a [queue.Consumer] on the
// scaling controller's side.
//
// Delivery guarantee: [Publisher.Publish] returns nil only when JetStream has
// stored the event (a stream with file storage keeps it across server
// restarts). While the connection is down, a publish waits, buffered by the
// NATS client, until the connection comes back or ctx ends; in the second
// case it returns an error and the caller (the scaling loop, the module's
// one retrier) publishes again. The event may then have been stored
// twice; JetStream drops the second copy inside the stream's duplicate
// window because the decision ID is sent as Nats-Msg-Id, and the consumer
// skips decision IDs it already applied. No event is silently lost.
//
// The [Subscriber] uses a durable pull consumer with explicit acks: a message
// is acknowledged when the handler returns nil (applied, duplicate, stale,
// poison or given up) and negatively acknowledged with a delay when it
// returns an error, up to MaxDeliver deliveries.
//
// Example:
//
//	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
//	js, err := jetstream.New(nc)
//	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
//		Name: "DECISIONS", Subjects: []string{"autoscale.decisions"}, Storage: jetstream.FileStorage})
//
//	pub, err := natsq.NewPublisher(nc, "autoscale.decisions")
//	act := queue.NewActuator(pub, "/gateway/eu-1") // give it to the scaling loop, which retries
//
//	c, err := queue.NewConsumer(kubernetesActuator)
//	sub, err := natsq.NewSubscriber(nc, "DECISIONS", "scaler", c)
//	go sub.Run(ctx) // returns when ctx ends
package nats
