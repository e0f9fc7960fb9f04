// Package kafka carries scale events over Apache Kafka with franz-go: a
// [Publisher] for the gateway side and a [Subscriber] that feeds a
// [queue.Consumer] in a consumer group on the scaling controller's side.
//
// Delivery guarantee: [Publisher.Publish] returns nil only when the brokers
// acknowledged the record (with franz-go's defaults: idempotent producer,
// acks from all in-sync replicas). While brokers fail, franz-go retries
// internally until the record is written or ctx ends; in the second case the
// caller gets an error and publishes again. The record key is the target, so
// the decisions for one target land in one partition, in order.
//
// The [Subscriber] commits a record's offset only after the handler returned
// nil for it (applied, duplicate, stale, poison or given up). A handler error
// is retried in place with back-off — the [queue.Consumer] bounds how many
// times — so one partition waits rather than skipping ahead. Records handled
// but not yet committed when the subscriber stops are delivered again; the
// consumer deduplicates them.
//
// Example:
//
//	cl, err := kgo.NewClient(kgo.SeedBrokers("kafka:9092"))
//	pub, err := kafka.NewPublisher(cl, "autoscale-decisions")
//	act := queue.NewActuator(pub, "/gateway/eu-1") // give it to the scaling loop, which retries
//
//	c, err := queue.NewConsumer(kubernetesActuator)
//	sub, err := kafka.NewSubscriber(c, "autoscale-decisions", "scaler",
//		kafka.WithClientOptions(kgo.SeedBrokers("kafka:9092")))
//	err = sub.Run(ctx) // returns when ctx ends
package kafka
