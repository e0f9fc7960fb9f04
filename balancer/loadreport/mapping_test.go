package loadreport_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/autoscalelua/autoscalelua/balancer"
	"github.com/autoscalelua/autoscalelua/balancer/loadreport"
	"github.com/google/go-cmp/cmp"
)

func readPage(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePresets(t *testing.T) {
	tests := []struct {
		name string
		page string
		m    loadreport.Mapping
		want balancer.LoadReport
	}{
		// Two engines: 12+9 running, 3+4 waiting, the fuller cache; requests wait, so
		// the derived utilization is 1.
		{"vllm", "vllm.txt", loadreport.VLLM(), balancer.LoadReport{Utilization: 1, InFlight: 21, Queue: 7, KVCache: 0.7106}},
		{"vllm one model", "vllm.txt", loadreport.VLLM().WithLabels("model_name", "meta-llama/Llama-3.1-8B-Instruct").WithLabels("engine", "1"),
			balancer.LoadReport{Utilization: 1, InFlight: 9, Queue: 4, KVCache: 0.7106}},
		{"sglang", "sglang.txt", loadreport.SGLang(), balancer.LoadReport{Utilization: 1, InFlight: 310, Queue: 26, KVCache: 0.81}},
		{"sglang idle rank", "sglang.txt", loadreport.SGLang().WithLabels("dp_rank", "1"), balancer.LoadReport{Utilization: 0.81, InFlight: 148, Queue: 0, KVCache: 0.81}},
		{"custom", "vllm.txt", loadreport.Mapping{Rules: []loadreport.Rule{
			{Field: loadreport.Queue, Metric: "vllm:num_requests_waiting", Labels: map[string]string{"engine": "0"}},
			{Field: loadreport.Utilization, Metric: "vllm:kv_cache_usage_perc", Agg: loadreport.Max},
			{Field: loadreport.RPS, Metric: "vllm:num_preemptions_total"}, // a counter read as it is
			{Field: loadreport.InFlight, Metric: "python_gc_objects_collected_total", Labels: map[string]string{"generation": "2"}},
		}}, balancer.LoadReport{Utilization: 0.7106, InFlight: 1208, Queue: 3, RPS: 39}},
		{"untyped", "", loadreport.Mapping{Rules: []loadreport.Rule{{Field: loadreport.Queue, Metric: "depth"}}},
			balancer.LoadReport{Utilization: 1, Queue: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := []byte("depth 2\ndepth{x=\"y\"} 3\n")
			if tt.page != "" {
				page = readPage(t, tt.page)
			}
			got, err := tt.m.Parse(page)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("report (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseFallsBackToTheOlderKVCacheName(t *testing.T) {
	page := "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name=\"a\"} 0.4\n"
	got, err := loadreport.VLLM().Parse([]byte(page))
	if err != nil || got.KVCache != 0.4 || got.Utilization != 0.4 {
		t.Fatalf("Parse = %+v, %v; want kv_cache 0.4 from gpu_cache_usage_perc", got, err)
	}
}

func TestParseBadInput(t *testing.T) {
	gauge := func(name, v string) string {
		return fmt.Sprintf("# TYPE %s gauge\n%s{model_name=\"a\"} %s\n", name, name, v)
	}
	tests := []struct {
		name, page string
		want       error
	}{
		{"malformed", "vllm:num_requests_waiting{model_name=\"a\" 3\n", loadreport.ErrParse},
		{"not text", "\x00\x01\x02 binary", loadreport.ErrParse},
		{"html", "<html><body>Not Found</body></html>", loadreport.ErrParse},
		{"two types", "# TYPE x gauge\n# TYPE x counter\nx 1\n", loadreport.ErrParse},
		{"empty", "", loadreport.ErrNoMetrics},
		{"other metrics", gauge("go_goroutines", "12"), loadreport.ErrNoMetrics},
		{"NaN", gauge("vllm:num_requests_waiting", "NaN"), loadreport.ErrInvalidValue},
		{"negative", gauge("vllm:num_requests_running", "-1"), loadreport.ErrInvalidValue},
		{"infinite", gauge("vllm:kv_cache_usage_perc", "+Inf"), loadreport.ErrInvalidValue},
		{"absurd kv cache", gauge("vllm:kv_cache_usage_perc", "87"), loadreport.ErrInvalidValue},
		{"absurd queue", gauge("vllm:num_requests_waiting", "2e9"), loadreport.ErrInvalidValue},
		{"sum past the bound", "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{e=\"0\"} 6e8\nvllm:num_requests_waiting{e=\"1\"} 6e8\n", loadreport.ErrInvalidValue},
		{"overflowing sum", "vllm:num_requests_waiting{e=\"0\"} 1.7e308\nvllm:num_requests_waiting{e=\"1\"} 1.7e308\n", loadreport.ErrInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadreport.VLLM().Parse([]byte(tt.page))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %+v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestMappingValidate(t *testing.T) {
	err := loadreport.Mapping{Rules: []loadreport.Rule{{Field: 0, Metric: " "}, {Field: loadreport.KVCache, Metric: "x", Agg: 7}}}.Validate()
	if !errors.Is(err, loadreport.ErrInvalidConfig) || !errors.Is(err, balancer.ErrInvalidConfig) {
		t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"unknown field Field(0)", "empty metric name", "unknown aggregation 7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, missing %q", err, want)
		}
	}
	if err := (loadreport.Mapping{}).Validate(); err == nil {
		t.Error("an empty mapping is valid")
	}
	if err := loadreport.VLLM().Validate(); err != nil {
		t.Error(err)
	}
}

func TestWithLabelsCopies(t *testing.T) {
	base := loadreport.Mapping{Rules: []loadreport.Rule{{Field: loadreport.Queue, Metric: "q", Labels: map[string]string{"a": "1"}}}}
	m := base.WithLabels("b", "2")
	if len(base.Rules[0].Labels) != 1 || len(m.Rules[0].Labels) != 2 {
		t.Fatalf("WithLabels changed its receiver: %v, %v", base.Rules[0].Labels, m.Rules[0].Labels)
	}
}

// BenchmarkParse parses the committed vLLM page (about 10 KiB, 75 series) into a
// report: what one scrape costs besides the HTTP request.
func BenchmarkParse(b *testing.B) {
	page := readPage(b, "vllm.txt")
	m := loadreport.VLLM()
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	// CPU time per op beside the wall time, which on a shared machine says more
	// about the neighbours (it includes the parser's garbage collection).
	cpu0, cpuOK := processCPU()
	defer func() {
		if cpu1, ok := processCPU(); ok && cpuOK && b.N > 0 {
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
		}
	}()
	for b.Loop() {
		if _, err := m.Parse(page); err != nil {
			b.Fatal(err)
		}
	}
}

func nan() float64         { return math.NaN() }
func inf(sign int) float64 { return math.Inf(sign) }
