// Package actuator is the extension point through which the scaling loop changes
// replica counts.
//
// A [Request] names a [Target] and the replica count the loop decided on; an
// [Actuator] applies it. Scale is "set replicas to n", never "add n", so an
// actuator can be called again with the same request (for example after a
// retry, or when a decision is delivered twice by a queue) without harm; the
// [Request.DecisionID] is the idempotency key that remote actuators forward.
//
// Optional abilities are separate interfaces: an actuator that can report the
// current replica count implements [ReplicaReader].
//
// Errors are retryable unless marked with [Permanent]; [Retry] retries the
// others with exponential back-off and full jitter, waiting longer when a
// failure carries the other side's requested wait ([RetryAfter]). [FanOut] sends one decision
// to several actuators, [Log] is a dry-run actuator that logs and remembers what
// it was asked, and [Func] adapts a plain function. Concrete actuators live in
// sub-packages (webhook, queue) so that a user links only what they use; the
// actuatortest sub-package has a recording fake for tests.
//
// The package imports one package of this module, metrics, for its [metrics.Clock]:
// the waits of [Retry] run on the same injected clock as the loop's, so tests advance
// a [metrics.ManualClock] instead of sleeping. metrics imports nothing of the module,
// so this adds no cycle and links nothing heavy.
//
// Example:
//
//	log := actuator.NewLog(slog.Default())
//	a, err := actuator.Retry(actuator.FanOut(log, myWebhook))
//	if err != nil {
//		return err
//	}
//	err = a.Scale(ctx, actuator.Request{
//		Target:     actuator.Target{Name: "checkout"},
//		Replicas:   5,
//		Previous:   3,
//		Reason:     "p99 above 250ms for 3 ticks",
//		DecisionID: "d-42",
//		Time:       time.Now(),
//	})
package actuator
