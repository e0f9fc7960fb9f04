package redisshare_test

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/autoscalelua/autoscalelua/metrics/redisshare"
)

// The leader decides on merged windows; without Redis, on its own, and the reader says
// so.
func Example() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}) // no Redis here
	defer client.Close()
	reg, _ := metrics.NewRegistry()
	cfg := redisshare.Config{Replica: "gw-1", Deadline: 100 * time.Millisecond}
	pub, _ := redisshare.NewPublisher(client, reg, cfg) // every replica: go pub.Run(ctx)
	merger, _ := redisshare.NewMerger(client, reg, cfg)
	_ = pub
	_ = autoscale.WithReader(merger.Reader) // the loop's option

	r := merger.Reader(time.Now())
	fmt.Println(r.(autoscale.SourceReader).Sources())
	// Output: [gw-1 (local fallback)]
}
