package loadreport_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/balancer/loadreport"
)

// A vLLM server's /metrics page becomes its backend's load report.
func ExampleScraper() {
	vllm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 0.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 14.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.42
`)
	}))
	defer vllm.Close()

	pool, _ := balancer.New()
	_ = pool.Update([]balancer.Endpoint{{ID: "gpu-0", URL: vllm.URL}})
	s, err := loadreport.New(pool, loadreport.WithMapping(loadreport.VLLM().WithLabels("model_name", "llama")))
	if err != nil {
		panic(err)
	}
	// Run(ctx) scrapes every second; one round here.
	if err := s.Scrape(context.Background()); err != nil {
		panic(err)
	}
	r, fresh := s.Load(pool.Backends()[0])
	fmt.Printf("in flight %d, queue %d, kv cache %.2f, utilization %.2f, fresh %v\n", r.InFlight, r.Queue, r.KVCache, r.Utilization, fresh)
	// Output: in flight 14, queue 0, kv cache 0.42, utilization 0.42, fresh true
}
