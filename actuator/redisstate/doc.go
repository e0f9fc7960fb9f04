// Package redisstate keeps the scaling loop's state in Redis for gateways that do not
// run on Kubernetes: a leader elector on a Redis lock with fencing tokens ([Elector],
// an autoscale.Elector), an actuator that writes each desired count to a key per target
// and to a capped stream ([Actuator], the "shared configuration store" a fleet reads
// its size from), and a consumer that applies those decisions with another actuator
// ([Consumer], idempotent and never backwards).
//
// Fencing: the [Actuator], given the elector with [WithFence], sends the elector's
// token with every write, and the write's script refuses a token older than the lock's
// counter. A leader that was paused past its lease, and whose call reaches Redis after
// another replica took over, is refused with [ErrStaleToken], marked permanent so the
// loop does not retry it.
//
// Calls are bounded by their contexts (the elector's by RenewDeadline), which go-redis
// applies to the network only when the client's Options.ContextTimeoutEnabled is set:
// set it.
//
//	elector, _ := redisstate.NewElector(client, redisstate.ElectorConfig{Key: "shop:leader"})
//	act, _ := redisstate.NewActuator(client, redisstate.ActuatorConfig{}, redisstate.WithFence(elector))
//	go elector.Run(ctx)
//	loop, _ := autoscale.NewLoop(autoscale.WithElector(elector), autoscale.WithDefaultActuator(act), ...)
package redisstate
