package redislimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoscalelua/autoscalelua/middleware"
	"github.com/autoscalelua/autoscalelua/middleware/redislimit"
)

// A limiter that cannot reach Redis still limits: it falls back to the tenant's local
// share, limit / Replicas, refilled by the limiter's clock.
func Example() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1}) // no Redis here
	defer client.Close()
	lim, err := redislimit.New(client, redislimit.Config{Replicas: 3, Refresh: time.Second})
	if err != nil {
		panic(err)
	}
	defer lim.Close()
	lim.SetLimit("acme", redislimit.Limit{Rate: 300, Burst: 300})
	adm, _ := middleware.NewAdmission(middleware.AdmissionConfig{}, middleware.WithTenantLimiter(lim))
	mw, err := middleware.New(middleware.WithAdmission(adm))
	if err != nil {
		panic(err)
	}
	_ = mw // wrap the gateway's handler with it

	ctx := context.Background()
	lim.Refresh(ctx) // Run(ctx) does this every Refresh in the background
	st := lim.Stats()
	fmt.Println("fallback:", st.Fallback, "replicas:", st.Replicas)
	// Output: fallback: true replicas: 3
}
