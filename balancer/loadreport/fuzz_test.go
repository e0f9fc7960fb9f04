package loadreport_test

import (
	"math"
	"testing"

	"github.com/autoscalelua/autoscalelua/balancer/loadreport"
)

// FuzzParse feeds any bytes to the presets' and a custom mapping's parsers: none may
// panic, and every report they accept is within the documented bounds.
func FuzzParse(f *testing.F) {
	f.Add(readPage(f, "vllm.txt"))
	f.Add(readPage(f, "sglang.txt"))
	f.Add([]byte("depth 2\ndepth{x=\"y\"} 3\n"))
	f.Add([]byte("# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting NaN\n"))
	f.Add([]byte("vllm:kv_cache_usage_perc{model_name=\"a\\\"b\"} 1e-300 1700000000000\n"))
	mappings := []loadreport.Mapping{
		loadreport.VLLM(), loadreport.SGLang(),
		{Rules: []loadreport.Rule{{Field: loadreport.Queue, Metric: "depth", Labels: map[string]string{"x": ""}}, {Field: loadreport.RPS, Metric: "depth", Agg: loadreport.Max}}},
	}
	f.Fuzz(func(t *testing.T, page []byte) {
		for _, m := range mappings {
			r, err := m.Parse(page)
			if err != nil {
				continue
			}
			ok := func(v, bound float64) bool { return !math.IsNaN(v) && v >= 0 && v <= bound }
			if !ok(r.Utilization, loadreport.MaxUtilization) || !ok(r.KVCache, loadreport.MaxKVCache) || !ok(r.RPS, loadreport.MaxRPS) ||
				!ok(float64(r.InFlight), loadreport.MaxCount) || !ok(float64(r.Queue), loadreport.MaxCount) {
				t.Fatalf("accepted an out-of-bounds report %+v from %q", r, page)
			}
		}
	})
}
