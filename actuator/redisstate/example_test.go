package redisstate_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/actuator"
	"github.com/autoscalelua/autoscalelua/actuator/redisstate"
)

// A fenced actuator refuses to write while its elector does not lead.
func Example() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}) // no Redis here
	defer client.Close()
	elector, _ := redisstate.NewElector(client, redisstate.ElectorConfig{Key: "shop:leader"})
	act, _ := redisstate.NewActuator(client, redisstate.ActuatorConfig{}, redisstate.WithFence(elector))
	// go elector.Run(ctx); autoscale.WithElector(elector), autoscale.WithDefaultActuator(act)

	err := act.Scale(context.Background(), actuator.Request{
		Target: actuator.Target{Name: "checkout"}, Replicas: 3, Previous: -1,
		DecisionID: "d1", Time: time.Now(),
	})
	fmt.Println(elector.IsLeader(), errors.Is(err, redisstate.ErrNotLeader))
	// Output: false true
}
