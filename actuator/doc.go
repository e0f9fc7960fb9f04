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
// An actuator makes one attempt per call. Its errors are retryable unless marked
// with [Permanent], and may carry the other side's requested wait ([RetryAfter]);
// the scaling loop (autoscale) is the one retrier and honours both, with
// exponential back-off and full jitter ([Backoff]) between attempts, so do not
// wrap an actuator in a retrier of your own: its attempts would multiply the
// loop's. [FanOut] sends one decision to several actuators, [Log] is a dry-run actuator that logs and remembers what
// it was asked, and [Func] adapts a plain function. Concrete actuators live in
// sub-packages (webhook, queue) so that a user links only what they use; the
// actuatortest sub-package has a recording fake for tests.
//
// Example:
//
//	log := actuator.NewLog(slog.Default())
//	a := actuator.FanOut(log, myWebhook)
//	err := a.Scale(ctx, actuator.Request{
//		Target:     actuator.Target{Name: "checkout"},
//		Replicas:   5,
//		Previous:   3,
//		Reason:     "p99 above 250ms for 3 ticks",
//		DecisionID: "d-42",
//		Time:       time.Now(),
//	})
package actuator
