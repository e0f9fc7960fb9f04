// Package wire is the JSON body of a scale request, shared by the webhook
// and queue actuators: one encoder and one strict decoder, so the two
// transports cannot drift apart.
//
// The body (version 1) is
//
//	{"version":"v1","target":{"name":"checkout","namespace":"shop","kind":"deployments.apps"},
//	 "replicas":5,"previous":3,"reason":"...","decision_id":"d-42","time":"2025-03-01T12:00:00.5Z"}
//
// The webhook package sends it as the HTTP body; the queue package carries it
// as the data of a CloudEvent. Each wraps the errors of [Unmarshal] in its own
// sentinel (webhook.ErrMalformed, queue.ErrPoison).
//
// Example:
//
//	b, err := wire.Marshal(req) // req already validated by the caller
//	...
//	req, err := wire.Unmarshal(b)
//	if err != nil {
//		return fmt.Errorf("%w: %w", ErrMalformed, err)
//	}
package wire
